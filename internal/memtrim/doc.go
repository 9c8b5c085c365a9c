// Package memtrim gives memory back to the operating system soon after a
// node's load falls, rather than when Go's background scavenger gets to it.
//
// A node on a small board is judged by its resident size. When many
// clients leave at once (a dashboard with hundreds of watches closes, a
// big walk ends), the memory they held is garbage, but nothing collects
// it until the program allocates again, and the scavenger then returns
// it to the system slowly (it is paced to a small share of one CPU). The
// trimmer watches two cheap signals (the number of goroutines, which
// falls as connections and their streams end, and the heap memory that is
// free but still held) and, when either says that much was let go, runs
// one collection that also returns the free memory to the system. It does
// so at most once per MinGap.
//
// It owns nothing but its own figures and imports only the standard
// library. A Trimmer is used by one goroutine (Run's); Run ends when its
// context does.
package memtrim
