// Package kvproto is the groundwork of edgekv's MoaT-KV client-protocol
// server: the framing of the protocol's byte streams, the parsing of client
// requests, the encoding of replies byte for byte as MoaT-KV 0.70 writes
// them, and a Server that serves one connection over a small Tree
// interface. The assembly (the module root, package edgekv) serves it on
// the board config's listen.client and listen.client_tls addresses.
//
// # What it owns
//
//   - Reader and Writer: the protocol has no framing bytes, each direction
//     is a concatenated stream of msgpack maps. Reader yields one whole map
//     at a time, bounded: at most MaxMessage bytes (DefaultMaxMessage,
//     16 MiB), containers nested at most MaxDepth deep, no map or array
//     declaring more items than a message could hold. It never panics;
//     errors are sticky, a malformed stream gives a *FrameError (wrapping
//     ErrFrame) naming the message number, the byte offset in it and the
//     problem, and the connection cannot be resynchronised after one.
//   - ParseRequest and Request: {seq, action, path?, value?, nchain?,
//     chain?, prev?, idem?, state?, ack?, qlen?}; paths as extension type 3
//     or plain arrays (tree.ReadPath); nchain as an int (-1 all) or a bool;
//     seq a non-negative integer ≤ MaxSeq (2^53-1); unknown keys ignored;
//     duplicate known keys refused. Values are kept as raw msgpack.
//   - The reply encoders (AppendHello, AppendGetReply, AppendWriteReply,
//     AppendChain, AppendError, AppendFatal): keys in MoaT-KV's order and
//     integers in the smallest unsigned form, as Python's msgpack writes
//     them, so the replies equal the captured bytes of
//     shared/reference/moatkv-wire.md (testdata/moatkv-wire.hex; see
//     golden_test.go).
//   - Server: greeting {seq: 0, version: [0,0,1], node, tick, tock, qlen},
//     the client's {seq: 0, qlen} answer, and the actions get_value (by
//     path), set_value and delete_value (chain, prev, idem, nchain), and
//     watch (fetch, min_depth, max_depth, nchain) as a stream — {state:
//     start}, the current entries, {state: uptodate}, then every change,
//     paths shortened (depth + relative suffix) — for a Tree that also
//     implements Watcher; streams keep to the client's qlen window and
//     wait for its acks (MoaT-KV §4.2); get_tree (a
//     stream), enum/enumerate (with_data), get_tock, and stop (ends a
//     running request such as a watch); enum_node, test_acl, root (a
//     chroot of the connection), msg_send and msg_monitor (a stream) for a
//     Tree that implements the optional interfaces they need (see
//     args.go, nodes.go, root.go, msg.go). Every other
//     MoaT-KV action is answered with an error of kind "unavailable";
//     unknown actions and malformed requests with {error, seq, tock, kind}
//     (MoaT-KV's error reply plus one key), where error is text a MoaT-KV
//     client shows and kind is edgekv's machine-readable tree.ErrorKind
//     ("invalid", "not found", "conflict", "unavailable", "internal").
//     Deleting an entry that holds no value answers {changed: false, tock,
//     seq}, as MoaT-KV does, without writing a tombstone. A message whose
//     seq cannot be read, or a
//     malformed stream, gets {error, kind} without seq and the connection
//     is closed (a MoaT-KV client drops a connection on a reply without seq
//     anyway).
//
// # Tock
//
// A reply that describes an entry carries the entry's tock; any other reply
// carries a fresh tock from Tree.Tock (MoaT-KV increments its tock on every
// read). That is what the captures show: get_value of an existing entry
// repeats the entry's tock, a missing one gets a new one.
//
// # Imports
//
// tree, the msgp runtime and the standard library (tree/wire's helpers are
// unexported, so the few msgpack readers it needs live here). It never
// imports hw, runner or cmd; the assembly implements Tree on top of the
// engine (tree/node).
//
// # Concurrency
//
// ServeConn serves one connection: the calling goroutine reads requests;
// each request runs on a worker goroutine (at most Server.MaxInFlight at a
// time; reading pauses beyond that), so one connection's requests may be
// answered in any order, except that a get_value, set_value, delete_value
// or get_tock is answered by the reading goroutine itself, in the order
// the requests came, when it arrives while nothing else runs and nothing
// more has been read (a sequential client: no hand-off), or always if the
// Tree is a QuickWriter that says its writes do not wait for the disk (a
// pipelining client: the replies to what arrived together go out in one
// write). A reply is written by its sender when nothing waits to be
// written before it, and otherwise by one writer goroutine that batches;
// either way a stream's messages keep their order. All of them have ended
// when ServeConn returns. Tree methods are called concurrently, from all
// connections: the node applies a write on the caller's goroutine when its
// engine is idle and hands it to the engine's goroutine otherwise. A
// Server may serve many connections at once. Reader and Writer belong to
// one goroutine each; the parsers and encoders are safe for concurrent
// use.
package kvproto
