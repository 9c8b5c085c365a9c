// Package kvclient is a Go client for the MoaT-KV client protocol that an
// edgekv node serves (and that MoaT-KV servers speak): connect, get, set,
// delete with conditions, tree walks and watches.
//
// Dial connects over plain TCP; DialWith connects over TLS (a node's
// listen.client_tls listeners) and with a set-up timeout. A Client is one
// connection and fails for good when it ends. Reconnecting wraps one that
// connects again with capped backoff when its connection ends: reads are
// repeated on the new connection, a write whose reply was lost is not
// (ErrUnknownOutcome) unless asked for, and its Watch re-issues the watch
// with fetch and passes on only what changed meanwhile.
//
// It imports tree, tree/wire, broker/kvproto (framing), msgp and the
// standard library. A Client is safe for concurrent use: requests are
// multiplexed by seq over one connection; one goroutine reads replies. A
// Reconnecting client is safe for concurrent use too and starts no
// goroutine of its own beyond its connection's reader (and one per dial,
// while it runs).
package kvclient
