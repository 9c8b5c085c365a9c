// Package tree holds edgekv's replicated key-value tree: paths, values,
// entries, chains of (node, tick) writers, range sets, and the merge rule.
//
// It is pure: no network, files, wall clock, goroutines, locks or global
// randomness. Time and randomness are passed in by callers. It may import
// only the standard library and the msgp runtime.
//
// Concurrency: a Tree is not safe for concurrent use; its owner (the replica
// driver) serialises access.
package tree
