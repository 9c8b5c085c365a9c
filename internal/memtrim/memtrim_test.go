package memtrim

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Step trims when the goroutines fell by Config.Goroutines from their
// peak, or when much free heap is held, and never twice within MinGap.
func TestStep(t *testing.T) {
	tr := New(Config{Goroutines: 100, FreeBytes: 1000, MinGap: time.Second})
	var g int
	var free uint64
	freed := 0
	tr.readFunc = func() (int, uint64) { return g, free }
	tr.freeOS = func() { freed++ }
	t0 := time.Unix(1000, 0)
	step := func(at time.Duration, goroutines int, f uint64) bool {
		g, free = goroutines, f
		return tr.Step(t0.Add(at))
	}
	if step(0, 10, 0) || step(time.Second, 500, 0) || step(2*time.Second, 450, 999) {
		t.Fatal("trimmed with no fall and little free memory")
	}
	if !step(3*time.Second, 399, 0) {
		t.Fatal("no trim after the goroutines fell by 101 from their peak")
	}
	if step(3500*time.Millisecond, 10, 5000) {
		t.Fatal("trimmed twice within MinGap")
	}
	if !step(4500*time.Millisecond, 10, 5000) {
		t.Fatal("no trim with 5000 free bytes held (threshold 1000)")
	}
	if step(6*time.Second, 10, 0) {
		t.Fatal("trimmed with nothing let go since the last trim")
	}
	if freed != 2 || tr.Trims() != 2 {
		t.Fatalf("%d trims, %d calls", tr.Trims(), freed)
	}
	// The real figures can be read.
	if g, _ := New(Config{}).read(); g < 1 {
		t.Fatalf("%d goroutines read from runtime/metrics", g)
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
