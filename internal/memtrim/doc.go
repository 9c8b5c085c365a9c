// Package memtrim gives memory back to the operating system soon after a
// node's load falls, rather than when Go's background scavenger gets to it.
//
// A node on a small board is judged by its resident size. When many
// clients leave at once (a dashboard with hundreds of watches closes, a
// big walk ends), the memory they held is garbage, but nothing collects
// it until the program allocates again, and the scavenger then returns
// it to the system slowly (it is paced to a small share of one CPU). The
// trimmer is told when something ends (Poke: a connection closed) and
// also sees the number of goroutines fall; if the heap has grown since its
// last trim, it runs one collection that also returns the free memory to
// the system (debug.FreeOSMemory). It also trims when much free memory is
// held. It trims at most once per MinGap (1 s), so a client that connects
// and leaves in a loop costs at most one collection a second.
//
// It owns nothing but its own figures and imports only the standard
// library. Step and Run are for one goroutine (Run's); Poke and Trims may
// be called from any. Run ends when its context does.
package memtrim
