package memtrim

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Step trims after something ended (a poke, or the goroutines fell by
// Config.Goroutines from their peak) if the heap grew since the last trim,
// or when much free heap is held; never twice within MinGap.
func TestStep(t *testing.T) {
	tr := New(Config{Goroutines: 100, Grown: 1000, FreeBytes: 50_000, MinGap: time.Second, Settle: 200 * time.Millisecond})
	var f figures
	freed := 0
	tr.readFn = func() figures { return f }
	tr.freeOS = func() { freed++; f.held, f.free = 10_000, 0 }
	tr.base = 10_000
	t0 := time.Unix(1000, 0)
	step := func(at time.Duration, goroutines int, held, free uint64) bool {
		f = figures{goroutines: goroutines, held: held, free: free}
		return tr.Step(t0.Add(at))
	}
	if step(0, 10, 10_000, 0) || step(time.Second, 500, 30_000, 0) || step(2*time.Second, 450, 30_000, 999) {
		t.Fatal("trimmed with nothing ended and little free memory")
	}
	if step(3*time.Second, 399, 30_000, 0) {
		t.Fatal("trimmed at once as the goroutines fell, before it settled")
	}
	if !step(3300*time.Millisecond, 399, 30_000, 0) {
		t.Fatal("no trim after the goroutines fell by 101 from their peak with the heap grown")
	}
	tr.Poke()
	if step(3500*time.Millisecond, 10, 30_000, 0) {
		t.Fatal("trimmed twice within MinGap")
	}
	if !step(4500*time.Millisecond, 10, 30_000, 0) {
		t.Fatal("a poke within MinGap was forgotten")
	}
	// A crowd leaving: trimmed once it has settled.
	tr.Poke()
	if step(5600*time.Millisecond, 10, 30_000, 0) {
		t.Fatal("trimmed at once, with clients still leaving")
	}
	tr.Poke()
	if step(5700*time.Millisecond, 10, 30_000, 0) {
		t.Fatal("trimmed with clients still leaving")
	}
	if !step(6*time.Second, 10, 30_000, 0) {
		t.Fatal("no trim once the leaving settled")
	}
	// Clients leaving without end: trimmed after MinGap all the same.
	for i := range 20 {
		tr.Poke()
		if step(7100*time.Millisecond+time.Duration(i)*100*time.Millisecond, 10, 30_000, 0) {
			if i < 9 {
				t.Fatalf("trimmed after %d pokes in a row", i+1)
			}
			break
		}
		if i == 19 {
			t.Fatal("endless pokes put the trim off for ever")
		}
	}
	tr.Poke()
	if step(9500*time.Millisecond, 10, 10_500, 0) || step(9800*time.Millisecond, 10, 10_500, 0) {
		t.Fatal("trimmed after a poke with the heap not grown by a quarter")
	}
	if step(11*time.Second, 10, 30_000, 0) {
		t.Fatal("trimmed on growth alone, with nothing ended since")
	}
	if !step(12*time.Second, 10, 30_000, 60_000) {
		t.Fatal("no trim with 60,000 free bytes held (threshold 50,000)")
	}
	if freed != 5 || tr.Trims() != 5 {
		t.Fatalf("%d trims, %d calls", tr.Trims(), freed)
	}
	// The real figures can be read.
	if f := New(Config{}).read(); f.goroutines < 1 || f.held == 0 {
		t.Fatalf("figures read from runtime/metrics: %+v", f)
	}
}

// Run ends with its context.
func TestRun(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(Config{Every: time.Millisecond}).Run(ctx) }()
	time.Sleep(5 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
