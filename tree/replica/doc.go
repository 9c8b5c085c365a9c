// Package replica is the sync state machine of one edgekv node, in the
// style of etcd's raft.RawNode: it owns no I/O, no goroutines and no clock.
//
// Inputs are a local write (Set, Delete), a message received on a link
// (Step), a link coming up or going down (LinkUp, LinkDown, Handshake) and
// a clock tick (Tick). Each input may produce outputs, collected until the
// driver calls Ready: a node record to save, messages to send per link,
// records to persist, and changes for local watchers. The driver saves the
// node record durably first, persists the records (and syncs them if
// Ready.MustSync) before it sends the messages and before it acknowledges a
// local write, then calls Ready again (tree/node is that driver).
//
// Crash safety (DESIGN.md §2): before a local change takes a tick or tock
// above the last reservation, the replica hands out a new one (the next
// TickReserve ticks and TockReserve tocks) in Ready.NodeRecord; nothing
// above a reservation leaves the process before it is on disk. Restore
// starts above the saved reservation and declares skipped every own tick up
// to there that its log does not hold: so no tick or tock is ever issued
// twice, under every sync policy, whether or not a peer is reachable, and a
// restarted node writes at once. Skipped ticks travel in digests and
// heartbeats; nobody waits for them (they are not missing), but a copy a
// peer holds still comes back like any other change. A node whose store
// holds nothing at all starts at Config.FreshStart.
//
// Protocol (DESIGN.md §3):
//
//   - On link-up each side sends hello and a digest (per node: highest tick,
//     the ticks it has seen, the ticks declared skipped, and a hash of the
//     ticks heading its entries). On a digest, a side sends exactly what the
//     peer lacks: the current version of each entry holding a tick the peer
//     has not seen, and info{known} for ticks that are superseded. Digests
//     are sent again every DigestTicks, which repairs what a link that stayed
//     up lost. When the two have seen the same ticks but their heads hashes
//     differ (a node was told a tick was superseded by a version a crash
//     then lost everywhere), they exchange heads lists and send each other
//     the entries the other lacks; a tick known only as superseded is then
//     applied over an older version.
//
//   - An update is relayed to the other links only if applying it changed
//     local state (it was new), and never back on the link it came from:
//     loop freedom comes from the version data, not broker flags. One
//     refused update of a batch costs none of the others.
//
//   - Heartbeats (node, tick, tock, seq, what the sender has seen) are
//     flooded with the same rule (relayed only when their seq is new) and
//     give every node the live membership and the ticks that exist; ticks
//     known to exist but not held are requested with info{missing}. A
//     heartbeat and an info{known} claim are sent only after a sync
//     (Ready.MustSync): what they vouch for survives a crash. A node that
//     keeps no data (Config.Volatile, sync "none") claims nothing it has
//     seen.
//
//   - Tombstones are purged once every member of the deleter group (the
//     meta-tree entry (nil, "actor", "del") = {"nodes": [...]}) has seen the
//     deletion and this node has seen everything those members had made by
//     then (see Replica.stable). Every node must be a member, and keep its
//     data on disk, or a value whose deletion was purged while it was away
//     can stay on it.
//
//   - On shared links (a hub, LinkUpShared) the replica also takes part in
//     MoaT-KV's recovery: its ping actor group, info{ticks}/{missing}
//     when "it" or after a healed split, one update per message in
//     answers (actor.go); and it serves MoaT-KV's node operations:
//     info{deleted}, node_drop, kill_node, check_deleted (nodeops.go).
//
// It is pure: it imports tree and tree/wire only, plus the standard library.
// A Replica is not safe for concurrent use.
package replica
