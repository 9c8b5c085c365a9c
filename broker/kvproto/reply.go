package kvproto

import (
	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// ProtocolVersion is the version the greeting announces (MoaT-KV 0.70
// servers announce [0, 0, 1]).
var ProtocolVersion = [3]uint64{0, 0, 1}

// DefaultQLen is the flow-control window the greeting announces (MoaT-KV's
// server.buffer).
const DefaultQLen = 10

// Hello is what the greeting announces.
type Hello struct {
	Node string
	Tick uint64 // this node's tick
	Tock uint64 // a fresh tock
	QLen uint64
	// Auth, when non-nil, is announced as the greeting's auth list
	// (MoaT-KV §4.1): the current login method first, then the others
	// configured. An empty first element is sent as nil: login is then
	// not required. Nil (no key) means no auth: the connection acts as
	// super-root. Login itself (the auth action) is not served yet.
	Auth []string
}

// Encoding notes. Maps are written in MoaT-KV's key order, so that replies
// match the captured bytes. Non-negative integers use the smallest msgpack
// form, unsigned, as Python's msgpack does (msgp's AppendInt64 would write
// 128…32767 as int16).

func appendKey(b []byte, k string) []byte { return msgp.AppendString(b, k) }

// AppendHello appends the greeting {seq: 0, version, node, tick, tock,
// qlen, auth?}.
func AppendHello(b []byte, h Hello) []byte {
	if h.Auth != nil {
		b = append(b, 0x87)
	} else {
		b = append(b, 0x86)
	}
	b = appendKey(b, "seq")
	b = append(b, 0)
	b = appendKey(b, "version")
	b = msgp.AppendArrayHeader(b, uint32(len(ProtocolVersion)))
	for _, v := range ProtocolVersion {
		b = msgp.AppendUint64(b, v)
	}
	b = appendKey(b, "node")
	b = msgp.AppendString(b, h.Node)
	b = appendKey(b, "tick")
	b = msgp.AppendUint64(b, h.Tick)
	b = appendKey(b, "tock")
	b = msgp.AppendUint64(b, h.Tock)
	b = appendKey(b, "qlen")
	b = msgp.AppendUint64(b, h.QLen)
	if h.Auth != nil {
		b = appendKey(b, "auth")
		b = msgp.AppendArrayHeader(b, uint32(len(h.Auth)))
		for i, m := range h.Auth {
			if i == 0 && m == "" {
				b = msgp.AppendNil(b)
			} else {
				b = msgp.AppendString(b, m)
			}
		}
	}
	return b
}

// AppendQLenReply appends the client's answer to the greeting,
// {seq: 0, qlen}.
func AppendQLenReply(b []byte, qlen uint64) []byte {
	b = append(b, 0x82)
	b = appendKey(b, "seq")
	b = append(b, 0)
	b = appendKey(b, "qlen")
	return msgp.AppendUint64(b, qlen)
}

// chainLen returns how many links of c a reply with nchain carries.
func chainLen(c tree.Chain, nchain int) int {
	if nchain < 0 || nchain > MaxChainLinks {
		nchain = MaxChainLinks
	}
	return min(len(c), nchain)
}

// AppendChain appends up to nchain links of c (-1: all, up to
// MaxChainLinks) as MoaT-KV's nested {node, tick, prev} maps, newest first.
// The last link has prev: nil; when c was cut short, the last written link
// has no prev key, which MoaT-KV reads as "truncated here". An empty chain
// (or nchain 0) is nil.
func AppendChain(b []byte, c tree.Chain, nchain int) []byte {
	n := chainLen(c, nchain)
	if n == 0 {
		return msgp.AppendNil(b)
	}
	return wire.AppendChain(b, c, n)
}

// Entry is what the tree holds at a path, as get_value reports it.
type Entry struct {
	// Value is the raw msgpack value; nil: no value (missing or deleted).
	Value []byte
	// Chain is the entry's chain, newest first; empty for a missing entry.
	Chain tree.Chain
	// Tock is the tock of the entry's last change.
	Tock uint64
}

// Exists reports whether there is an entry: a value or a tombstone.
func (e Entry) Exists() bool { return e.Value != nil || len(e.Chain) > 0 }

// AppendGetReply appends get_value's reply. An existing entry gives
// {value?, chain? (nchain ≠ 0 and a non-empty chain), tock: entry tock,
// seq}; a missing one
// {chain: nil (if nchain ≠ 0), seq, tock}, where tock is a fresh tock.
func AppendGetReply(b []byte, seq uint64, e Entry, nchain int, tock uint64) []byte {
	if b == nil {
		b = make([]byte, 0, 96+len(e.Value))
	}
	withChain := nchain != 0
	if !e.Exists() {
		n := 2
		if withChain {
			n++
		}
		b = msgp.AppendMapHeader(b, uint32(n))
		if withChain {
			b = appendKey(b, "chain")
			b = msgp.AppendNil(b)
		}
		b = appendKey(b, "seq")
		b = msgp.AppendUint64(b, seq)
		b = appendKey(b, "tock")
		return msgp.AppendUint64(b, tock)
	}
	n := 2
	if e.Value != nil {
		n++
	}
	withChain = withChain && len(e.Chain) > 0
	if withChain {
		n++
	}
	b = msgp.AppendMapHeader(b, uint32(n))
	if e.Value != nil {
		b = appendKey(b, "value")
		b = append(b, e.Value...)
	}
	if withChain {
		b = appendKey(b, "chain")
		b = AppendChain(b, e.Chain, nchain)
	}
	b = appendKey(b, "tock")
	b = msgp.AppendUint64(b, e.Tock)
	b = appendKey(b, "seq")
	return msgp.AppendUint64(b, seq)
}

// Result is the outcome of set_value or delete_value.
type Result struct {
	// NoOp: nothing was written (Cond.Idem and the value already stored).
	NoOp bool
	// Prev is the value before the write (raw msgpack); nil: none.
	Prev []byte
	// Chain is the entry's chain after the write (for a deletion, the
	// deletion event's chain); for a NoOp, the current chain.
	Chain tree.Chain
	// Tock is the entry's tock after the write.
	Tock uint64
}

// AppendWriteReply appends the reply of set_value/delete_value, in
// MoaT-KV's order: {changed, prev?, chain?, tock, seq}; prev is written
// when withPrev and r.Prev != nil, chain when nchain ≠ 0 and there is one.
// A NoOp gives MoaT-KV's idem reply {tock, changed: false, chain? (only for
// nchain > 0), seq}.
func AppendWriteReply(b []byte, seq uint64, changed bool, r Result, nchain int, withPrev bool) []byte {
	if b == nil {
		b = make([]byte, 0, 96+len(r.Prev))
	}
	if r.NoOp {
		withChain := nchain > 0 && len(r.Chain) > 0
		n := 3
		if withChain {
			n++
		}
		b = msgp.AppendMapHeader(b, uint32(n))
		b = appendKey(b, "tock")
		b = msgp.AppendUint64(b, r.Tock)
		b = appendKey(b, "changed")
		b = msgp.AppendBool(b, false)
		if withChain {
			b = appendKey(b, "chain")
			b = AppendChain(b, r.Chain, nchain)
		}
		b = appendKey(b, "seq")
		return msgp.AppendUint64(b, seq)
	}
	withPrev = withPrev && r.Prev != nil
	withChain := nchain != 0 && len(r.Chain) > 0
	n := 3
	if withPrev {
		n++
	}
	if withChain {
		n++
	}
	b = msgp.AppendMapHeader(b, uint32(n))
	b = appendKey(b, "changed")
	b = msgp.AppendBool(b, changed)
	if withPrev {
		b = appendKey(b, "prev")
		b = append(b, r.Prev...)
	}
	if withChain {
		b = appendKey(b, "chain")
		b = AppendChain(b, r.Chain, nchain)
	}
	b = appendKey(b, "tock")
	b = msgp.AppendUint64(b, r.Tock)
	b = appendKey(b, "seq")
	return msgp.AppendUint64(b, seq)
}

// AppendError appends an error reply: MoaT-KV's {error, seq, tock} plus
// edgekv's kind. error is the text a MoaT-KV client shows; kind is the
// machine-readable class (tree.ErrorKind's String: "invalid", "not found",
// "conflict", "unavailable", "internal").
func AppendError(b []byte, seq uint64, kind tree.ErrorKind, msg string, tock uint64) []byte {
	b = append(b, 0x84)
	b = appendKey(b, "error")
	b = msgp.AppendString(b, msg)
	b = appendKey(b, "seq")
	b = msgp.AppendUint64(b, seq)
	b = appendKey(b, "tock")
	b = msgp.AppendUint64(b, tock)
	b = appendKey(b, "kind")
	return msgp.AppendString(b, kind.String())
}

// AppendFatal appends a connection-level error {error, kind} without seq;
// the server closes the connection after sending it.
func AppendFatal(b []byte, kind tree.ErrorKind, msg string) []byte {
	b = append(b, 0x82)
	b = appendKey(b, "error")
	b = msgp.AppendString(b, msg)
	b = appendKey(b, "kind")
	return msgp.AppendString(b, kind.String())
}
