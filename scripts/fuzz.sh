#!/usr/bin/env bash
# fuzz.sh runs every fuzz target in the module for a short time each.
#
#   FUZZTIME=10s bash scripts/fuzz.sh   (what `make fuzz` does)
#
# Targets are discovered with `go test -list '^Fuzz' ./...`; each one is run
# alone (the go command fuzzes one target per package at a time) with
# -fuzz '^Name$'. A crasher is written under the package's testdata/fuzz/ by
# the go command; commit it so that it becomes a regression test.
set -euo pipefail

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}

cd "$(dirname "$0")/.."

# `go test -list` prints each package's matching names, then an "ok <pkg>"
# line for that package.
list=$("$GO" test -list '^Fuzz' ./...)
targets=$(printf '%s\n' "$list" | awk '
	/^Fuzz/ { names[n++] = $1; next }
	/^ok[ \t]/ { for (i = 0; i < n; i++) print $2, names[i]; n = 0 }
')

if [ -z "$targets" ]; then
	echo "fuzz: no fuzz targets found"
	exit 0
fi

count=$(printf '%s\n' "$targets" | wc -l)
echo "fuzz: $count target(s), $FUZZTIME each"

failed=()
while read -r pkg name; do
	echo "=== fuzz $pkg $name"
	if ! "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg"; then
		failed+=("$pkg $name")
	fi
done <<< "$targets"

if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: ${#failed[@]} of $count target(s) failed:"
	printf '  %s\n' "${failed[@]}"
	exit 1
fi
echo "fuzz: all $count target(s) passed"
