package kvclient

import (
	"fmt"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// parseReply splits a reply map into its keys' raw values.
func parseReply(b []byte) (reply, error) {
	n, rest, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return nil, fmt.Errorf("kvclient: reply is not a map: %w", err)
	}
	// Each pair takes at least two bytes: never trust the declared count.
	if int64(n) > int64(len(rest)/2) {
		return nil, fmt.Errorf("kvclient: reply declares %d keys in %d bytes", n, len(rest))
	}
	r := make(reply, 0, n)
	for range n {
		var k []byte
		if k, rest, err = msgp.ReadMapKeyZC(rest); err != nil {
			return nil, fmt.Errorf("kvclient: reply key: %w", err)
		}
		start := rest
		if rest, err = msgp.Skip(rest); err != nil {
			return nil, fmt.Errorf("kvclient: reply value of %q: %w", k, err)
		}
		f := field{v: start[:len(start)-len(rest)]}
		if i := r.index(k); i >= 0 {
			r[i].v = f.v // a repeated key: the last one counts, as in a map
			continue
		}
		f.k = internKey(k)
		r = append(r, f)
	}
	return r, nil
}

// index returns the position of key k in r, or -1.
func (r reply) index(k []byte) int {
	for i := range r {
		if r[i].k == string(k) {
			return i
		}
	}
	return -1
}

// get returns the raw value of key k.
func (r reply) get(k string) ([]byte, bool) {
	for i := range r {
		if r[i].k == k {
			return r[i].v, true
		}
	}
	return nil, false
}

// val returns the raw value of key k, nil if absent.
func (r reply) val(k string) []byte {
	v, _ := r.get(k)
	return v
}

// knownKeys are the keys replies carry, shared rather than copied.
var knownKeys = func() map[string]string {
	m := make(map[string]string)
	for _, k := range []string{"seq", "tock", "tick", "node", "value", "chain", "prev",
		"changed", "state", "path", "depth", "wseq", "error", "kind", "result",
		"count", "nodes", "known", "missing", "topic", "data", "raw", "access",
		"version", "qlen", "remote_missing", "uptodate"} {
		m[k] = k
	}
	return m
}()

// internKey returns k as a string, without a copy for a known key.
func internKey(k []byte) string {
	if s, ok := knownKeys[string(k)]; ok {
		return s
	}
	return string(k)
}

func (r reply) uint(k string) (uint64, bool) {
	v, ok := r.get(k)
	if !ok {
		return 0, false
	}
	u, _, err := msgp.ReadUint64Bytes(v)
	return u, err == nil
}

func (r reply) str(k string) string {
	v, ok := r.get(k)
	if !ok {
		return ""
	}
	s, _, _ := msgp.ReadStringBytes(v)
	return s
}

func (r reply) bool(k string) bool {
	v, ok := r.get(k)
	if !ok {
		return false
	}
	x, _, _ := msgp.ReadBoolBytes(v)
	return x
}

// err turns an error reply into a *ServerError.
func (r reply) err() error {
	if _, ok := r.get("error"); !ok {
		return nil
	}
	msg := r.str("error")
	if msg == "" {
		msg = "error reply"
	}
	return &ServerError{Msg: msg, Kind: r.str("kind")}
}

// chain decodes a {node, tick, prev} chain (nil or absent: none).
func (r reply) chain() (tree.Chain, error) {
	v, ok := r.get("chain")
	if !ok || msgp.IsNil(v) {
		return nil, nil
	}
	var c tree.Chain
	for depth := 0; v != nil && !msgp.IsNil(v); depth++ {
		if depth > 64 {
			return nil, fmt.Errorf("kvclient: chain longer than 64 links")
		}
		link, err := parseReply(v)
		if err != nil {
			return nil, fmt.Errorf("kvclient: chain link %d: %w", depth, err)
		}
		tick, _ := link.uint("tick")
		c = append(c, tree.Link{Node: link.str("node"), Tick: tick})
		v = link.val("prev")
	}
	return c, nil
}

// auth decodes the greeting's auth list (absent: nil; a nil element: "").
func (r reply) auth() ([]string, error) {
	v, ok := r.get("auth")
	if !ok || msgp.IsNil(v) {
		return nil, nil
	}
	n, rest, err := msgp.ReadArrayHeaderBytes(v)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if int64(n) > int64(len(rest)) {
		return nil, fmt.Errorf("auth declares %d methods in %d bytes", n, len(rest))
	}
	methods := make([]string, 0, n)
	for i := range n {
		if msgp.IsNil(rest) {
			methods = append(methods, "")
			rest = rest[1:]
			continue
		}
		var m string
		if m, rest, err = msgp.ReadStringBytes(rest); err != nil {
			return nil, fmt.Errorf("auth method %d: %w", i, err)
		}
		methods = append(methods, m)
	}
	return methods, nil
}
