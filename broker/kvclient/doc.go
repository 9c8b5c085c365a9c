// Package kvclient is a Go client for the MoaT-KV client protocol that an
// edgekv node serves (and that MoaT-KV servers speak): connect, get, set,
// delete with conditions, tree walks and watches.
//
// It imports tree, tree/wire, broker/kvproto (framing), msgp and the
// standard library. A Client is safe for concurrent use: requests are
// multiplexed by seq over one connection; one goroutine reads replies.
package kvclient
