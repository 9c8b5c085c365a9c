package wire

import (
	"bytes"
	"errors"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// raw is msgpack bytes used as is by enc.
type raw []byte

// enc encodes a test value: raw as is, string, int, float64, bool, nil,
// []any as an array.
func enc(b []byte, v any) []byte {
	switch x := v.(type) {
	case raw:
		return append(b, x...)
	case string:
		return msgp.AppendString(b, x)
	case int:
		return msgp.AppendInt(b, x)
	case float64:
		return msgp.AppendFloat64(b, x)
	case bool:
		return msgp.AppendBool(b, x)
	case nil:
		return msgp.AppendNil(b)
	case []any:
		b = msgp.AppendArrayHeader(b, uint32(len(x)))
		for _, e := range x {
			b = enc(b, e)
		}
		return b
	}
	panic("enc: unsupported value")
}

// mp encodes a map from alternating string keys and values.
func mp(kv ...any) raw {
	b := msgp.AppendMapHeader(nil, uint32(len(kv)/2))
	for i := 0; i+1 < len(kv); i += 2 {
		b = msgp.AppendString(b, kv[i].(string))
		b = enc(b, kv[i+1])
	}
	return raw(b)
}

// link encodes one chain link map {node, tick, prev}.
func link(node string, tick any, prev any) raw { return mp("node", node, "tick", tick, "prev", prev) }

// chainOf encodes the nested chain of links n0, n1, … with tick i+1,
// replacing link bad's tick with badTick (bad < 0: none).
func chainOf(n, bad int, badTick any) raw {
	var prev any
	for i := n - 1; i >= 0; i-- {
		var tick any = i + 1
		if i == bad {
			tick = badTick
		}
		prev = link("n"+string(rune('a'+i%26))+string(rune('a'+i/26)), tick, prev)
	}
	return prev.(raw)
}

func pathRaw(p ...tree.Elem) raw { return raw(tree.AppendPath(nil, tree.Path(p))) }

// nested returns a value of depth levels of single-element arrays around nil.
func nested(depth int) raw {
	b := bytes.Repeat([]byte{0x91}, depth)
	return raw(append(b, 0xc0))
}

var fx = pathRaw(tree.Str("fx"))

func upd(kv ...any) raw {
	base := []any{"node", "a", "tick", 1, "prev", nil, "path", fx, "value", "v", "tock", 1}
	// kv overrides base keys; a nil-string value "-" removes the key.
	out := []any{}
	over := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		over[kv[i].(string)] = kv[i+1]
	}
	for i := 0; i < len(base); i += 2 {
		k := base[i].(string)
		v, ok := over[k]
		if !ok {
			v = base[i+1]
		}
		delete(over, k)
		if v == "-" {
			continue
		}
		out = append(out, k, v)
	}
	for i := 0; i+1 < len(kv); i += 2 { // extra keys, in order
		if _, ok := over[kv[i].(string)]; ok {
			out = append(out, kv[i], kv[i+1])
		}
	}
	return mp(out...)
}

func TestMalformed(t *testing.T) {
	decoders := map[string]func([]byte) error{
		"update":    func(b []byte) error { _, err := DecodeUpdate(b); return err },
		"entry":     func(b []byte) error { _, err := DecodeEntry(b); return err },
		"info":      func(b []byte) error { _, err := DecodeInfo(b); return err },
		"hello":     func(b []byte) error { _, err := DecodeHello(b); return err },
		"digest":    func(b []byte) error { _, err := DecodeDigest(b); return err },
		"heartbeat": func(b []byte) error { _, err := DecodeHeartbeat(b); return err },
		"batch":     func(b []byte) error { _, err := DecodeBatch(b); return err },
		"state":     func(b []byte) error { _, err := DecodeState(b); return err },
		"rangeset":  func(b []byte) error { _, _, err := ReadRangeSet(b); return err },
		"record":    func(b []byte) error { _, err := RecordKind(b); return err },
		"dkv": func(b []byte) error {
			r := NewDKVReader(b)
			for {
				if _, err := r.Next(); err != nil {
					if err == io.EOF {
						return nil
					}
					return err
				}
			}
		},
		"chunk": func(b []byte) error { _, _, err := NewReassembler(2, 4096).Add(b); return err },
	}
	long := strings.Repeat("n", 256)
	dkvEv := func(path any, depth int) raw { return upd("path", path, "depth", depth) }
	tests := []struct {
		name, dec string
		in        []byte
		want      string // substring of the error message
	}{
		// Structure.
		{"empty input", "update", nil, "wire: update: want map, got end of input (at byte 0)"},
		{"not a map", "update", enc(nil, []any{1}), "update: want map, got array"},
		{"truncated map", "update", append([]byte{0x86}, mp("node", "a")[1:]...), "truncated map: 6 entries cannot fit in 7 bytes"},
		{"truncated value", "update", upd()[:len(upd())-8], "truncated"},
		{"truncated map32 header", "update", []byte{0xdf, 0, 0}, "truncated map header"},
		{"huge map", "update", []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0}, "map of 4294967295 entries, more than 1048576"},
		{"map bigger than input", "info", []byte{0xdf, 0, 0x0f, 0, 0, 0xc0, 0xc0}, "truncated map: 983040 entries cannot fit in 2 bytes"},
		{"trailing bytes", "update", append(upd(), 0xc0), "1 trailing bytes after the message"},
		{"duplicate key", "update", func() []byte { b := upd(); b[0]++; return append(b, mp("node", "b")[1:]...) }(), "duplicate key \"node\""},
		{"reserved byte", "update", upd("value", raw{0xc1}), "key \"value\": reserved byte 0xc1"},
		{"truncated str value", "update", upd("value", raw{0xb4, 'a', 'b'}), "key \"value\": truncated str: 20 bytes needed"},
		{"huge array value", "update", upd("value", raw{0xdd, 0xff, 0xff, 0xff, 0xff}), "key \"value\": truncated array: 4294967295 entries cannot fit"},
		{"value nested 101 deep", "update", upd("value", nested(101)), "key \"value\": value nested deeper than 100 levels"},
		{"unknown key nested 101 deep", "update", upd("future", nested(101)), "key \"future\": value nested deeper than 100 levels"},
		{"non-string key nested deep", "update", append(append([]byte{0x87}, upd()[1:]...), nested(200)...), "non-string key: value nested deeper than 100 levels"},

		// Required keys and types.
		{"missing path", "update", upd("path", "-"), "update: missing key \"path\""},
		{"missing tock", "update", upd("tock", "-"), "missing key \"tock\""},
		{"missing node", "update", upd("node", "-"), "missing key \"node\""},
		{"missing tick", "update", upd("tick", "-"), "missing key \"tick\""},
		{"tick is a string", "update", upd("tick", "1"), "key \"tick\": want integer, got str"},
		{"tick is a float", "update", upd("tick", 1.0), "key \"tick\": want integer, got float"},
		{"negative tick", "update", upd("tick", -5), "key \"tick\": want non-negative integer, got -5"},
		{"negative tock", "update", upd("tock", -1), "key \"tock\": want non-negative integer, got -1"},
		{"nil tock", "update", upd("tock", nil), "key \"tock\": want integer, got nil"},
		{"tick 0", "update", upd("tick", 0), "key \"tick\": tick 0 names no change"},
		{"empty node", "update", upd("node", ""), "key \"node\": empty node name"},
		{"long node", "update", upd("node", long), "key \"node\": node name of 256 bytes, more than 255"},
		{"node not UTF-8", "update", upd("node", "\xff\xfe"), "node name is not valid UTF-8"},
		{"node is an int", "update", upd("node", 7), "key \"node\": want str, got int"},
		{"node is bin", "update", upd("node", raw{0xc4, 1, 'a'}), "key \"node\": want str, got bin"},
		{"path is an int", "update", upd("path", 3), "key \"path\": tree: malformed input: expected a path"},
		{"path nil not first", "update", upd("path", pathRaw(tree.Str("a"), tree.Nil())), "key \"path\": tree: invalid path: path element 1: nil element allowed only first"},
		{"path NaN", "update", upd("path", pathRaw(tree.Float(math.NaN()))), "NaN"},

		// Chains.
		{"bad tick in link 3", "update", upd("prev", chainOf(5, 2, "x")), "wire: update: key \"prev\": link 3: tick: want integer, got str (at byte "},
		{"negative tick in link 1", "update", upd("prev", chainOf(2, 0, -2)), "key \"prev\": link 1: tick: want non-negative integer, got -2"},
		{"tick 0 in link 1", "update", upd("prev", chainOf(1, 0, 0)), "key \"prev\": link 1: tick: tick 0 names no change"},
		{"prev is a string", "update", upd("prev", "x"), "key \"prev\": link 1: want map, got str"},
		{"link without tick", "update", upd("prev", mp("node", "b", "prev", nil)), "key \"prev\": link 1: missing key \"tick\""},
		{"link without node", "update", upd("prev", mp("tick", 2)), "key \"prev\": link 1: missing key \"node\""},
		{"link with empty node", "update", upd("prev", link("", 2, nil)), "key \"prev\": link 1: node: empty node name"},
		{"duplicate prev in link", "update", upd("prev", mp("node", "b", "tick", 2, "prev", nil, "prev", nil)), "link 1: duplicate key \"prev\""},
		{"chain repeats head", "update", upd("node", "a", "prev", link("b", 1, link("a", 1, nil))), "key \"prev\": chain repeats node \"a\" (links 0 and 2)"},
		{"chain repeats in prev", "update", upd("prev", link("b", 1, link("b", 2, nil))), "chain repeats node \"b\" (links 1 and 2)"},
		{"chain of 65 links", "update", upd("prev", chainOf(64, -1, nil)), "key \"prev\": chain longer than 64 links"},
		{"recovery chain repeats", "update", upd("chain", link("b", 1, link("b", 2, nil))), "key \"chain\": chain repeats node \"b\""},
		{"recovery nil chain", "update", upd("chain", nil), "key \"chain\": nil chain: an update needs a version"},
		{"recovery chain of 65", "update", upd("chain", chainOf(65, -1, nil)), "key \"chain\": chain longer than 64 links"},
		{"entry without chain", "entry", upd(), "entry: missing key \"chain\""},
		{"entry chain repeats", "entry", mp("chain", link("b", 1, link("b", 2, nil)), "tock", 1, "path", fx), "entry: key \"chain\": chain repeats node \"b\""},

		// Range sets and info.
		{"range start = end", "info", mp("missing", mp("a", []any{[]any{5, 5}}), "node", "n"), "info: key \"missing\": node \"a\": element 0: empty range [5, 5): start must be below end"},
		{"range start > end", "info", mp("known", mp("a", []any{1, []any{9, 4}}), "node", "n"), "element 1: empty range [9, 4)"},
		{"negative tick in range set", "info", mp("deleted", mp("a", []any{-3}), "node", "n"), "node \"a\": element 0: want non-negative integer, got -3"},
		{"negative range end", "info", mp("missing", mp("a", []any{[]any{1, -3}}), "node", "n"), "element 0: end: want non-negative integer, got -3"},
		{"float in range set", "info", mp("missing", mp("a", []any{1.5}), "node", "n"), "element 0: want integer or [start, end) pair, got float"},
		{"string in range set", "info", mp("missing", mp("a", []any{"1"}), "node", "n"), "element 0: want integer or [start, end) pair, got str"},
		{"triple in range set", "info", mp("missing", mp("a", []any{[]any{1, 2, 3}}), "node", "n"), "element 0: want [start, end) pair, got array of 3"},
		{"range set not a list", "info", mp("missing", mp("a", 5), "node", "n"), "node \"a\": want array, got int"},
		{"huge range set", "info", mp("missing", mp("a", raw{0xdd, 0, 0x20, 0, 0}), "node", "n"), "node \"a\": array of 2097152 elements, more than 1048576"},
		{"max uint64 single tick", "rangeset", enc(nil, []any{raw{0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}), "range set: element 0: integer 18446744073709551615 beyond the limit 4611686018427387904"},
		{"tick beyond MaxCounter", "update", upd("tick", raw{0xcf, 0x40, 0, 0, 0, 0, 0, 0, 1}), "key \"tick\": integer 4611686018427387905 beyond the limit 4611686018427387904"},
		{"info tick beyond MaxCounter", "info", mp("ticks", mp("a", raw{0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), "node", "n"), "node \"a\": integer 18446744073709551615 beyond the limit"},
		{"info without node", "info", mp("missing", mp(), "tock", 1), "info: missing key \"node\""},
		{"info duplicate node in map", "info", mp("ticks", mp("a", 1, "a", 2), "node", "n"), "key \"ticks\": duplicate node \"a\""},
		{"info negative tick value", "info", mp("ticks", mp("a", -1), "node", "n"), "key \"ticks\": node \"a\": want non-negative integer, got -1"},
		{"info empty node name in map", "info", mp("ticks", mp("", 1), "node", "n"), "key \"ticks\": node name: empty node name"},
		{"info node_drop not names", "info", mp("node_drop", []any{"a", 3}, "node", "n"), "key \"node_drop\": element 1: want str, got int"},
		{"info known twice", "info", mp("known", mp(), "known", mp(), "node", "n"), "duplicate key \"known\""},

		// edgekv messages.
		{"hello without proto", "hello", mp("node", "a", "tick", 1, "tock", 1), "hello: missing key \"proto\""},
		{"hello negative tock", "hello", mp("proto", 1, "node", "a", "tick", 1, "tock", -9), "hello: key \"tock\": want non-negative integer, got -9"},
		{"digest node line without tick", "digest", mp("node", "a", "tick", 1, "tock", 1, "nodes", mp("b", mp("known", []any{}))), "digest: key \"nodes\": node \"b\": missing key \"tick\""},
		{"digest bad known", "digest", mp("node", "a", "tick", 1, "tock", 1, "nodes", mp("b", mp("tick", 3, "known", []any{[]any{4, 2}}))), "key \"nodes\": node \"b\": key \"known\": element 0: empty range [4, 2)"},
		{"digest without nodes", "digest", mp("node", "a", "tick", 1, "tock", 1), "digest: missing key \"nodes\""},
		{"heartbeat through negative", "heartbeat", mp("node", "a", "tick", 1, "tock", 1, "seq", 1, "through", mp("b", -1)), "heartbeat: key \"through\": node \"b\": want non-negative integer, got -1"},
		{"heartbeat without seq", "heartbeat", mp("node", "a", "tick", 1, "tock", 1), "heartbeat: missing key \"seq\""},
		{"batch element not a map", "batch", mp("updates", []any{upd(), "x"}), "batch: key \"updates\": element 1: want update map, got str"},
		{"batch element truncated", "batch", mp("updates", raw(append([]byte{0x91}, upd()[:10]...))), "batch: key \"updates\": element 0: truncated"},
		{"batch updates not a list", "batch", mp("updates", mp()), "batch: key \"updates\": want array, got map"},
		{"batch without updates", "batch", mp(), "batch: missing key \"updates\""},
		{"state without node", "state", mp("nodes", mp(), "tock", 1), "state: missing key \"node\""},
		{"state negative tick", "state", mp("nodes", mp("a", -4), "node", "a", "tock", 1), "state: key \"nodes\": node \"a\": want non-negative integer, got -4"},
		{"record not a map", "record", []byte{0xa1, 'x'}, "record: want map, got str"},
		{"record unknown", "record", mp("t", "ping", "node", "a"), "record: unknown record"},

		// .dkv streams.
		{"dkv depth beyond previous path", "dkv", dkvEv(raw(tree.AppendPathArray(nil, tree.Path{tree.Str("x")})), 1), "wire: dkv: record 0: event: key \"depth\": depth 1 but the previous path : has only 0 elements"},
		{"dkv negative depth", "dkv", dkvEv(fx, -1), "dkv: record 0: event: key \"depth\": want non-negative integer, got -1"},
		{"dkv nil in suffix", "dkv", append(dkvEv(fx, 0), dkvEv(raw{0x91, 0xc0}, 1)...), "dkv: record 1: event: key \"path\": tree: invalid path: nil element at position 1"},
		{"dkv truncated second record", "dkv", append(dkvEv(fx, 0), dkvEv(fx, 0)[:20]...), "dkv: record 1: truncated"},
		{"dkv garbage record", "dkv", append(dkvEv(fx, 0), 0x05), "dkv: record 1: want map, got int"},
		{"dkv unknown record", "dkv", mp("t", "x"), "dkv: record 0: unknown record"},
		{"dkv state without tock", "dkv", mp("nodes", mp(), "node", "a"), "dkv: record 0: state: missing key \"tock\""},
		{"dkv value nested 101 deep", "dkv", upd("value", nested(101)), "value nested deeper than 100 levels"},

		// Chunks.
		{"chunk not a map", "chunk", []byte{0x90}, "chunk: want map, got array"},
		{"chunk _p0 an int", "chunk", mp("_p0", 5), "chunk: key \"_p0\": want array, got int"},
		{"chunk _p0 a string", "chunk", mp("_p0", "x"), "chunk: key \"_p0\": want chunk [node, seq, i, bytes] or \"\", got a non-empty str"},
		{"chunk of 3", "chunk", mp("_p0", []any{"a", 1, 1}), "chunk: key \"_p0\": want [node, seq, i, bytes], got array of 3"},
		{"chunk index 0", "chunk", mp("_p0", []any{"a", 1, 0, raw{0xc4, 0}}), "chunk: key \"_p0\": i: chunk index must be a non-zero integer"},
		{"chunk data a str", "chunk", mp("_p0", []any{"a", 1, 1, "x"}), "chunk: key \"_p0\": bytes: want bin, got str"},
		{"chunk empty node", "chunk", mp("_p0", []any{"", 1, 1, raw{0xc4, 0}}), "chunk: key \"_p0\": node: empty node name"},
		{"chunk index too big", "chunk", mp("_p0", []any{"a", 1, 100000, raw{0xc4, 0}}), "i: chunk index 100000 above the bound of 64 chunks per series"},
		{"chunk truncated data", "chunk", mp("_p0", []any{"a", 1, 1, raw{0xc4, 9, 1}}), "bytes: truncated bin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := decoders[tt.dec]
			if dec == nil {
				t.Fatalf("no decoder %q", tt.dec)
			}
			err := dec(tt.in)
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tt.want)
			}
			if !errors.Is(err, tree.ErrMalformed) {
				t.Errorf("error %v does not wrap tree.ErrMalformed", err)
			}
			var we *Error
			if !errors.As(err, &we) {
				t.Fatalf("error %T is not a *wire.Error", err)
			}
			if we.Offset < 0 || we.Offset > len(tt.in) {
				t.Errorf("offset %d outside the input of %d bytes", we.Offset, len(tt.in))
			}
		})
	}
}

// TestErrorOffset: the offset points at the offending item.
func TestErrorOffset(t *testing.T) {
	in := upd("prev", chainOf(5, 2, "x"))
	_, err := DecodeUpdate(in)
	var we *Error
	if !errors.As(err, &we) {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(in[we.Offset:], []byte{0xa1, 'x'}) {
		t.Errorf("offset %d points at % x, want the bad tick", we.Offset, in[we.Offset:min(len(in), we.Offset+4)])
	}
	if want := `wire: update: key "prev": link 3: tick: want integer, got str`; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want %q…", err, want)
	}
}

// TestLimitsAccepted: the limits themselves are fine.
func TestLimitsAccepted(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"value nested 100 deep", upd("value", nested(100))},
		{"64-link chain", upd("prev", chainOf(63, -1, nil))},
		{"255-byte node", upd("node", strings.Repeat("n", 255))},
		{"tick at MaxCounter", upd("tick", raw{0xcf, 0x40, 0, 0, 0, 0, 0, 0, 0})},
		{"prev missing (truncated)", upd("prev", "-")},
		{"link prev missing (truncated)", upd("prev", mp("node", "b", "tick", 2))},
		{"int64 forms", upd("tick", raw{0xd3, 0, 0, 0, 0, 0, 0, 0, 9}, "tock", raw{0xd0, 5})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := DecodeUpdate(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			u2, err := DecodeUpdate(AppendUpdate(nil, u.Event))
			if err != nil {
				t.Fatal(err)
			}
			if u2.Event.Chain.String() != u.Event.Chain.String() || !bytes.Equal(u2.Event.Value, u.Event.Value) {
				t.Error("re-encoding changed the event")
			}
		})
	}
}
