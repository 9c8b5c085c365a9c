# edgekv — make targets. `make run` and `make test` are all a newcomer needs.
# .ci/run calls `make test`. Every target is phony: the go command does its
# own caching.

GO ?= go
GOFMT ?= $(shell $(GO) env GOROOT)/bin/gofmt

# Build tags for test, race and vet; CI sets TAGS=invariants to turn on the
# expensive invariant checks (STYLE.md).
TAGS ?=
# Benchmarks: make bench BENCH=LocalSet COUNT=10 > new.txt, then benchstat.
BENCH ?= .
COUNT ?= 1
# Fuzzing: each fuzz target runs this long in `make fuzz`.
FUZZTIME ?= 10s
# Simulator: make sim SEED=42 OPS=2000
SEED ?= 1
OPS ?= 500
# Seeds the simulator runs under the race detector (it reads SIM_SEEDS).
RACE_SIM_SEEDS ?= 200

# Version stamped into binaries.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

# staticcheck, pinned: module version v0.8.2 is staticcheck 2026.2.2, which
# builds and runs with Go 1.26. (Staticcheck's year-based names such as
# 2025.1.1 are not module versions; the proxy serves v0.x.y.)
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

CROSS_TARGETS := linux/arm/7 linux/arm64 linux/amd64

.PHONY: bench-compare probe all help test race bench fuzz lint fmt-check vet staticcheck cross build run sim soak clean

all: test

help:
	@echo "make run        start the demo node (MQTT on 127.0.0.1:1883)"
	@echo "make test       go vet + all tests (what CI runs)"
	@echo "make race       all tests under the race detector (SIM_SEEDS=$(RACE_SIM_SEEDS))"
	@echo "make bench      benchmarks: BENCH=regexp COUNT=n"
	@echo "make fuzz       every fuzz target for FUZZTIME=$(FUZZTIME)"
	@echo "make lint       gofmt, go vet, staticcheck $(STATICCHECK_VERSION)"
	@echo "make cross      static linux arm v7 / arm64 / amd64 binaries in dist/"
	@echo "make build      bin/edgekv for this machine"
	@echo "make sim        run the simulator: SEED=n OPS=n"
	@echo "make soak       simulator soak: SOAK_SEEDS=20000 SOAK_OPS=1000"
	@echo "make probe      hostile-client probes against a node process, with their figures"
	@echo "make bench-compare  edgekv beside the echo floor, NATS KV and mosquitto (QUICK=1: small; ONLY=line)"
	@echo "make clean      remove bin/ and dist/"

test:
	$(GO) vet -tags='$(TAGS)' ./...
	$(GO) test -tags='$(TAGS)' -count=1 -timeout 25m ./...

race:
	SIM_SEEDS=$(RACE_SIM_SEEDS) $(GO) test -race -tags='$(TAGS)' -count=1 -timeout 45m ./...

bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count=$(COUNT) ./...

fuzz:
	GO='$(GO)' FUZZTIME='$(FUZZTIME)' bash scripts/fuzz.sh

lint: fmt-check vet staticcheck

fmt-check:
	@files=$$(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -not -path './dist/*' -not -path './bin/*' | xargs $(GOFMT) -l); \
	if [ -n "$$files" ]; then echo "gofmt: these files need formatting (run gofmt -w):"; echo "$$files"; exit 1; fi; \
	echo "gofmt: ok"

vet:
	$(GO) vet -tags='$(TAGS)' ./...

staticcheck:
	$(GO) run $(STATICCHECK) -tags='$(TAGS)' ./...

cross:
	@mkdir -p dist
	@set -e; for t in $(CROSS_TARGETS); do \
		os=$${t%%/*}; rest=$${t#*/}; arch=$${rest%%/*}; goarm=; name=$$arch; \
		if [ "$$arch" = arm ]; then goarm=$${rest#*/}; name=armv$$goarm; fi; \
		out=dist/edgekv-$$os-$$name; \
		echo "build $$out"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=$$goarm \
			$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$out ./cmd/edgekv; \
	done

build:
	$(GO) build -ldflags '-X main.version=$(VERSION)' -o bin/edgekv ./cmd/edgekv

# The demo node: the embedded default config (sim board, MQTT on
# 127.0.0.1:1883, data in ./data/demo). Stop it with Ctrl-C.
run:
	$(GO) run ./cmd/edgekv run -n demo

sim:
	$(GO) run ./cmd/edgekv sim --seed $(SEED) --ops $(OPS)

# A longer simulator soak than make test's 2,000 short seeds.
SOAK_SEEDS ?= 20000
SOAK_OPS ?= 1000
soak:
	SIM_SEEDS=$(SOAK_SEEDS) SIM_OPS=$(SOAK_OPS) $(GO) test -count=1 -run TestRandom -timeout 2h -v ./tree/sim/

# Issue 8's attack programs against one node process on loopback, bounded in
# count and time; each fails if the node goes over its budget. make test
# runs them too; here they run alone, with -v for their figures.
probe:
	$(GO) test -count=1 -v -run 'TestProbe|TestE2EHostile' ./cmd/edgekv/

# Issue 9's side-by-side figures: the echo floor, edgekv, NATS JetStream KV
# (Debian's nats-server, if installed) and mosquitto (alone, and three
# bridged in a line), every server its own process, in one run; a table
# with each figure's ratio to the floor and to the anchor. QUICK=1: a small
# smoke run; ONLY=line: only the three-in-a-line part.
bench-compare:
	EDGEKV_BENCH_COMPARE=1 $(if $(QUICK),EDGEKV_BENCH_QUICK=1) $(if $(ONLY),EDGEKV_BENCH_ONLY=$(ONLY)) $(GO) test -count=1 -run '^$$' -bench '^BenchmarkCompare$$' -benchtime=1x -timeout 30m ./cmd/edgekv/

clean:
	rm -rf bin dist
