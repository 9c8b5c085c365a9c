package memtrim

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"sync/atomic"
	"time"
)

// Config tunes a Trimmer; the zero value uses the defaults.
type Config struct {
	// Every is how often the signals are read (default 250 ms).
	Every time.Duration
	// MinGap is the least time between two trims (default 1 s).
	MinGap time.Duration
	// Settle: after something ended, wait until nothing more has ended
	// for this long (default 200 ms), or at most MinGap more, so that a
	// crowd of clients leaving at once is trimmed once, after the last.
	Settle time.Duration
	// Goroutines: something ended once the number of goroutines has
	// fallen by this many from its highest since the last trim (default
	// 512).
	Goroutines int
	// Grown: trim after something ended only if the memory the heap holds
	// from the system has grown by at least this much since the last trim
	// (default 4 MiB), and by a quarter.
	Grown uint64
	// Quiet: trim once the program, after allocating at least QuietBytes
	// a step, has allocated less than that for this long, if the heap
	// has grown as for Grown (default 1 s): a burst of writes over
	// connections that stay open ends with no connection closing, and its
	// garbage would otherwise stay resident.
	Quiet time.Duration
	// QuietBytes is the allocation per step below which the program is
	// quiet (default 1 MiB).
	QuietBytes uint64
	// FreeBytes: trim once the heap holds this much free memory not yet
	// returned to the system, whatever else (default 32 MiB).
	FreeBytes uint64
	// Headroom is how far the heap may grow beyond what the last
	// collection found live before the next collection is forced: the
	// process's soft memory limit (debug.SetMemoryLimit) is kept at
	// live + max(Headroom, live/2) + the runtime's own memory, retuned at
	// every step, never above the limit the program had set (default
	// 64 MiB; < 0, or GOMEMLIMIT set: leave the limit alone). Without it
	// the heap may grow to (1 + GOGC/100) times the live heap, which a
	// burst of short-lived garbage fills (128 streams of a large subtree:
	// 365 MB of RSS for a live heap of about 110 MB at GOGC 200).
	Headroom int64
}

func (c *Config) defaults() {
	if c.Every <= 0 {
		c.Every = 250 * time.Millisecond
	}
	if c.MinGap <= 0 {
		c.MinGap = time.Second
	}
	if c.Settle <= 0 {
		c.Settle = 200 * time.Millisecond
	}
	if c.Goroutines <= 0 {
		c.Goroutines = 512
	}
	if c.Grown == 0 {
		c.Grown = 4 << 20
	}
	if c.Quiet <= 0 {
		c.Quiet = time.Second
	}
	if c.QuietBytes == 0 {
		c.QuietBytes = 1 << 20
	}
	if c.FreeBytes == 0 {
		c.FreeBytes = 32 << 20
	}
	if c.Headroom == 0 {
		c.Headroom = 64 << 20
	}
}

// figures are what the trimmer reads from the runtime.
type figures struct {
	goroutines int
	held       uint64 // heap memory held from the system (mapped, not released)
	free       uint64 // of which free: neither used nor garbage
	live       uint64 // heap found live by the last collection
	other      uint64 // the runtime's memory besides the heap (stacks, metadata…)
	allocs     uint64 // bytes allocated since the program started
}

// limitFor is the soft memory limit for figures f and headroom h.
func limitFor(f figures, h int64) int64 {
	return int64(f.live) + max(h, int64(f.live/2)) + int64(f.other)
}

// Trimmer decides when to trim; Run drives it with the runtime's figures.
type Trimmer struct {
	cfg     Config
	poked   atomic.Bool
	ended   bool      // something ended since the last trim (a poke, fewer goroutines)
	first   time.Time // when it first ended since the last trim
	latest  time.Time // when it last ended
	peak    int       // goroutines, highest since the last trim
	base    uint64    // held right after the last trim
	allocs  uint64    // figures.allocs at the last step
	busy    bool      // allocated QuietBytes in a step since the last trim
	quiet   time.Time // since when it has allocated less (with busy)
	last    time.Time // of the last trim
	trims   atomic.Int64
	samples []metrics.Sample
	freeOS  func()
	readFn  func() figures
	limit   int64             // the soft memory limit last set (0: none)
	lives   []uint64          // live heap at the last steps, for tune's minimum
	prevLim int64             // the limit before (restored when Run ends)
	setLim  func(int64) int64 // debug.SetMemoryLimit
}

// New returns a Trimmer with cfg (defaults filled in).
func New(cfg Config) *Trimmer {
	cfg.defaults()
	t := &Trimmer{cfg: cfg, freeOS: trim, setLim: debug.SetMemoryLimit, prevLim: debug.SetMemoryLimit(-1)}
	if os.Getenv("GOMEMLIMIT") != "" {
		t.cfg.Headroom = -1 // the operator set the limit: keep it
	}
	for _, name := range []string{
		"/sched/goroutines:goroutines",
		"/memory/classes/heap/objects:bytes",
		"/memory/classes/heap/unused:bytes",
		"/memory/classes/heap/free:bytes",
		"/memory/classes/heap/stacks:bytes",
		"/gc/heap/live:bytes",
		"/memory/classes/total:bytes",
		"/memory/classes/heap/released:bytes",
		"/gc/heap/allocs:bytes",
	} {
		t.samples = append(t.samples, metrics.Sample{Name: name})
	}
	t.readFn = t.read
	t.base = t.readFn().held
	return t
}

// trim collects twice, the second time returning the free memory to the
// system: what sync.Pools held survives one collection (the pools' victim
// caches), not two.
func trim() {
	runtime.GC()
	debug.FreeOSMemory()
}

func (t *Trimmer) read() figures {
	metrics.Read(t.samples)
	v := func(i int) uint64 {
		if s := t.samples[i]; s.Value.Kind() == metrics.KindUint64 {
			return s.Value.Uint64()
		}
		return 0
	}
	f := figures{goroutines: int(v(0)), held: v(1) + v(2) + v(3) + v(4), free: v(3), live: v(5), allocs: v(8)}
	if total, heap := v(6), v(1)+v(2)+v(3)+v(7); total > heap {
		f.other = total - heap
	}
	return f
}

// tune keeps the soft memory limit at limitFor(f, Headroom), moving it
// only when it is off by more than 1 MiB.
func (t *Trimmer) tune(f figures) {
	if t.cfg.Headroom < 0 || f.live == 0 {
		return
	}
	// The live heap a collection reports includes what was allocated
	// while it ran: a burst of garbage looks live for a while. The
	// lowest figure of the last liveSteps steps is the one that counts,
	// so that a burst cannot raise the limit that is there to hold it.
	if len(t.lives) == liveSteps {
		copy(t.lives, t.lives[1:])
		t.lives = t.lives[:liveSteps-1]
	}
	t.lives = append(t.lives, f.live)
	f.live = slices.Min(t.lives)
	want := min(limitFor(f, t.cfg.Headroom), t.prevLim) // never above the limit the program set
	if d := want - t.limit; d > 1<<20 || d < -(1<<20) {
		t.setLim(want)
		t.limit = want
	}
}

// liveSteps is how many steps tune takes the lowest live heap of (4 s at
// the default Every).
const liveSteps = 16

// Limit returns the soft memory limit the trimmer last set (0: none yet).
func (t *Trimmer) Limit() int64 { return t.limit }

// Poke tells the trimmer that something that held memory has ended (a
// client's connection, say); it may be called from any goroutine.
func (t *Trimmer) Poke() { t.poked.Store(true) }

// Step looks at the figures once (at now) and trims if they say so; it
// reports whether it trimmed.
func (t *Trimmer) Step(now time.Time) bool {
	f := t.readFn()
	t.tune(f)
	if t.poked.Swap(false) || t.peak-f.goroutines >= t.cfg.Goroutines {
		if !t.ended {
			t.first = now
		}
		t.ended, t.latest = true, now
		t.peak = f.goroutines // a fall counts once
	}
	t.peak = max(t.peak, f.goroutines)
	if f.allocs-t.allocs >= t.cfg.QuietBytes {
		t.busy, t.quiet = true, time.Time{}
	} else if t.busy && t.quiet.IsZero() {
		t.quiet = now
	}
	t.allocs = f.allocs
	quiet := t.busy && !t.quiet.IsZero() && now.Sub(t.quiet) >= t.cfg.Quiet
	if now.Sub(t.last) < t.cfg.MinGap {
		return false
	}
	if t.ended && now.Sub(t.latest) < t.cfg.Settle && now.Sub(t.first) < t.cfg.MinGap {
		return false // still ending
	}
	grown := f.held >= t.base+max(t.cfg.Grown, t.base/4)
	if quiet && !grown {
		t.busy = false // the burst left nothing worth giving back
	}
	if !((t.ended || quiet) && grown) && f.free < t.cfg.FreeBytes {
		if t.ended && !grown {
			t.ended = false // nothing worth giving back
		}
		return false
	}
	t.freeOS()
	after := t.readFn()
	t.last, t.peak, t.base, t.ended, t.busy = now, after.goroutines, after.held, false, false
	t.trims.Add(1)
	return true
}

// Trims returns how many times the trimmer has trimmed.
func (t *Trimmer) Trims() int { return int(t.trims.Load()) }

// Run steps every Config.Every until ctx ends; it returns nil.
func (t *Trimmer) Run(ctx context.Context) error {
	tk := time.NewTicker(t.cfg.Every)
	defer tk.Stop()
	defer func() {
		if t.limit != 0 {
			t.setLim(t.prevLim)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tk.C:
			t.Step(now)
		}
	}
}
