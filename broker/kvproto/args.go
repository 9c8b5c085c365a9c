package kvproto

import (
	"fmt"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree/wire"
)

// args are the string keys of a request map with their raw msgpack
// values, for actions whose keys ParseRequest does not know. A nil value
// reads as absent, as MoaT-KV's msg.get(key) does.
type args map[string][]byte

// readArgs splits a request map (already checked by ParseRequest) into
// its keys; a string key given twice is an error.
func readArgs(req Request) (args, error) {
	n, rest, err := msgp.ReadMapHeaderBytes(req.Raw)
	if err != nil {
		return nil, invalid(req, "%s: %v", req.Action, err)
	}
	a := make(args, n)
	for range n {
		var k []byte
		if msgp.NextType(rest) != msgp.StrType {
			// A non-string key: skip it and its value.
			if rest, err = msgp.Skip(rest); err == nil {
				rest, err = msgp.Skip(rest)
			}
			if err != nil {
				return nil, invalid(req, "%s: %v", req.Action, err)
			}
			continue
		}
		if k, rest, err = msgp.ReadMapKeyZC(rest); err != nil {
			return nil, invalid(req, "%s: %v", req.Action, err)
		}
		start := rest
		if rest, err = msgp.Skip(rest); err != nil {
			return nil, invalid(req, "%s: key %q: %v", req.Action, k, err)
		}
		if _, dup := a[string(k)]; dup {
			return nil, invalid(req, "%s: duplicate key %q", req.Action, k)
		}
		a[string(k)] = start[:len(start)-len(rest)]
	}
	return a, nil
}

// has reports whether key is present with a value other than nil.
func (a args) has(key string) bool {
	v, ok := a[key]
	return ok && !msgp.IsNil(v)
}

// str reads a string key: ok is false when it is absent or nil.
func (a args) str(key string) (s string, ok bool, err error) {
	if !a.has(key) {
		return "", false, nil
	}
	b, _, err := msgp.ReadStringZC(a[key])
	if err != nil {
		return "", false, fmt.Errorf("key %q: want a string, got %s", key, wire.Describe(a[key]))
	}
	if !utf8.Valid(b) {
		return "", false, fmt.Errorf("key %q: not valid UTF-8", key)
	}
	return string(b), true, nil
}

// int reads an integer key (def when absent or nil).
func (a args) int(key string, def int64) (int64, error) {
	if !a.has(key) {
		return def, nil
	}
	v, _, err := readInt(a[key])
	if err != "" {
		return 0, fmt.Errorf("key %q: %s", key, err)
	}
	return v, nil
}

// bool reads a bool key (false when absent or nil).
func (a args) bool(key string) (bool, error) {
	if !a.has(key) {
		return false, nil
	}
	v, _, err := msgp.ReadBoolBytes(a[key])
	if err != nil {
		return false, fmt.Errorf("key %q: want a bool, got %s", key, wire.Describe(a[key]))
	}
	return v, nil
}
