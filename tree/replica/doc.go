// Package replica is the sync state machine of one edgekv node, in the
// style of etcd's raft.RawNode: it owns no I/O, no goroutines and no clock.
//
// Inputs are a local write (Set, Delete), a message received on a link
// (Step), a link coming up or going down (LinkUp, LinkDown) and a clock tick
// (Tick). Each input may produce outputs, collected until the driver calls
// Ready: messages to send per link, records to persist, and changes for
// local watchers. The driver must persist the records before it sends the
// messages and before it acknowledges a local write, then call Ready again.
//
// Protocol (DESIGN.md §3):
//   - On link-up each side sends hello and a digest (per node: highest tick
//     and the set of ticks it has seen). On a digest, a side sends exactly
//     what the peer lacks: the current version of each entry holding a tick
//     the peer has not seen, and info{known} for ticks that are superseded.
//   - An update is relayed to the other links only if applying it changed
//     local state (it was new), and never back on the link it came from:
//     loop freedom comes from the version data, not broker flags.
//   - Heartbeats (node, tick, tock, seq, through-vector) are flooded with
//     the same rule (relayed only when their seq is new) and give every node
//     the live membership and the ticks that exist; ticks known to exist but
//     not held are requested with info{missing}.
//   - Tombstones are purged once every member of the deleter group (the
//     meta-tree entry (nil, "actor", "del") = {"nodes": [...]}) has seen the
//     deletion and this node has seen everything those members had made by
//     then (see Replica.stable).
//
// It is pure: it imports tree and tree/wire only, plus the standard library.
// A Replica is not safe for concurrent use.
package replica
