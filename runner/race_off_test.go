//go:build !race

package runner

// raceOn: the race detector slows code about tenfold.
const raceOn = false
