package memtrim

import (
	"context"
	"runtime"
	"runtime/debug"
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

// TestQuietTrim: a burst of allocation that grew the heap is trimmed once
// the program has been quiet for Quiet, with no connection ended; a
// program that never allocates, or whose burst did not grow the heap, is
// not.
func TestQuietTrim(t *testing.T) {
	tr := New(Config{Grown: 1000, FreeBytes: 1 << 40, MinGap: time.Second, Quiet: time.Second, QuietBytes: 100})
	var f figures
	freed := 0
	tr.readFn = func() figures { return f }
	tr.freeOS = func() { freed++; f.held = 10_000 }
	tr.base = 10_000
	t0 := time.Unix(1000, 0)
	step := func(at time.Duration, allocs, held uint64) bool {
		f.allocs, f.held = allocs, held
		return tr.Step(t0.Add(at))
	}
	// Quiet from the start: nothing.
	for i := range 10 {
		if step(time.Duration(i)*250*time.Millisecond, 0, 30_000) {
			t.Fatal("trimmed a program that never allocated")
		}
	}
	// A burst (1,000 bytes a step), then quiet.
	allocs := uint64(0)
	for i := 10; i < 20; i++ {
		allocs += 1000
		if step(time.Duration(i)*250*time.Millisecond, allocs, 30_000) {
			t.Fatal("trimmed during the burst")
		}
	}
	if step(5*time.Second, allocs+10, 30_000) || step(5750*time.Millisecond, allocs+20, 30_000) {
		t.Fatal("trimmed before it had been quiet for a second")
	}
	if !step(6*time.Second, allocs+30, 30_000) {
		t.Fatal("no trim after a second of quiet following a burst that grew the heap")
	}
	if step(8*time.Second, allocs+40, 30_000) {
		t.Fatal("trimmed again with no new burst")
	}
	// A burst that did not grow the heap: no trim.
	allocs += 40
	for i := range 4 {
		allocs += 1000
		step(9*time.Second+time.Duration(i)*250*time.Millisecond, allocs, 10_100)
	}
	if step(11*time.Second, allocs, 10_100) || step(12*time.Second, allocs, 10_100) {
		t.Fatal("trimmed after a burst that left the heap as it was")
	}
	if freed != 1 {
		t.Fatalf("%d trims, want 1", freed)
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

// The soft memory limit follows the live heap: live + max(Headroom,
// live/2) + the runtime's other memory, moved only by more than 1 MiB.
func TestTuneLimit(t *testing.T) {
	tr := New(Config{Headroom: 64 << 20})
	if tr.cfg.Headroom < 0 {
		t.Skip("GOMEMLIMIT is set: the trimmer leaves the limit alone")
	}
	var set []int64
	tr.setLim = func(n int64) int64 { set = append(set, n); return 0 }
	var f figures
	tr.readFn = func() figures { return f }
	steps := []struct {
		live, other uint64
		want        int64 // the limit after the step
	}{
		{0, 0, 0}, // no collection yet: nothing set
		{100 << 20, 10 << 20, (100 + 64 + 10) << 20},         // small heap: fixed headroom
		{100<<20 + 512<<10, 10 << 20, (100 + 64 + 10) << 20}, // off by < 1 MiB: unchanged
		{1 << 30, 20 << 20, (100 + 64 + 20) << 20},           // a burst: the lowest of the last steps counts
	}
	for range liveSteps - 1 {
		steps = append(steps, steps[len(steps)-1])
	}
	steps[len(steps)-1].want = (1024 + 512 + 20) << 20 // large for liveSteps steps: half of it
	for i, s := range steps {
		f = figures{live: s.live, other: s.other}
		tr.Step(time.Unix(int64(i), 0))
		if tr.Limit() != s.want {
			t.Fatalf("step %d (live %d): limit %d, want %d", i, s.live, tr.Limit(), s.want)
		}
	}
	if len(set) != 3 {
		t.Fatalf("limit set %d times (%v), want 3", len(set), set)
	}
}

// Run restores the limit it found when it ends.
func TestRunRestoresLimit(t *testing.T) {
	tr := New(Config{Every: time.Millisecond})
	if tr.cfg.Headroom < 0 {
		t.Skip("GOMEMLIMIT is set: the trimmer leaves the limit alone")
	}
	before := debug.SetMemoryLimit(-1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for debug.SetMemoryLimit(-1) == before {
		if time.Now().After(deadline) {
			t.Fatal("Run set no memory limit within 5 s")
		}
		runtime.GC() // a collection gives the trimmer a live heap
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("limit %d after Run, want %d as before", got, before)
	}
}
