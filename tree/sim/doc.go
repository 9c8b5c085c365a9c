// Package sim is a deterministic multi-node simulator for the replicated
// tree, in the spirit of etcd's rafttest and pebble's metamorphic tests.
//
// A World holds 3–7 engines (tree/node, the code a real node runs), each
// with its store (tree/store) on an in-memory file system (store.MemFS)
// that can crash and fail, driven step by step through node.Stepper on one
// goroutine with a simulated clock. One seeded RNG drives everything: the
// topology (full mesh, line, star, or a hub every node dials; sometimes both
// ends of a pair dial each other), each node's sync policy (always,
// interval, none), random sets, deletes and conditional writes on random
// nodes, message drop, duplication, reordering and delay, partitions and
// heals, group commits, snapshots, disk faults (fsync, write, rename, …
// failing: the engine stops, like a power loss), crashes (unsynced bytes
// lost or torn), crashes while a snapshot is written, and restarts from the
// store — some cut off from every peer and written to at once.
//
// After healing and stabilising, Check verifies that every replica holds an
// identical tree and identical node states, that each path holds a version
// some acknowledged write made and that no acknowledged write beats it
// except one a crash could lose (written under interval or none, on no
// disk yet and held by no running node when the crashes came) — so no
// acknowledged write is lost beyond what its sync policy allows and no
// deleted entry comes back —, that every node's ticks are contiguous (seen
// or declared skipped), that no node ever issued one tick for two changes or
// a tock not above its last, and, when both ends dial, that each node uses
// one link per peer. Each run checks itself: the same seed gives the same
// trace (TraceSum).
//
// Scripted scenarios live in testdata/*.txt (datadriven); random runs print
// their seed, and `make sim SEED=…` replays one.
//
// The package is deterministic: its own code starts no goroutine and uses
// no wall clock or global randomness (layout_test.go checks), and the
// engines it drives run only when it steps them. Its only I/O goes to the
// in-memory file systems.
package sim
