// Package sim is a deterministic multi-node simulator for the replicated
// tree, in the spirit of etcd's rafttest and pebble's metamorphic tests.
//
// A World holds 3–7 replicas (tree/replica), each with a store
// (tree/store) on an in-memory file system that can crash. One seeded RNG
// drives everything: the topology (full mesh, line, star, hub), random sets,
// deletes and conditional writes on random nodes, message drop, duplication,
// reordering and delay, partitions and heals, crashes and restarts from the
// store. After healing and stabilising, Check verifies that every replica
// holds an identical tree and identical node states, that every entry is the
// winner (under the tree's rule) of all acknowledged writes to its path — so
// no acknowledged write is lost unless a winning write replaced it and no
// deleted entry comes back — and that every node's ticks are contiguous.
//
// Scripted scenarios live in testdata/*.txt (datadriven); random runs print
// their seed, and `make sim SEED=…` replays one.
//
// The package is pure: no goroutines, wall clock or global randomness. Its
// only I/O goes to the store's in-memory file system.
package sim
