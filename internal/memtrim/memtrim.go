package memtrim

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
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
	// FreeBytes: trim once the heap holds this much free memory not yet
	// returned to the system, whatever else (default 32 MiB).
	FreeBytes uint64
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
	if c.FreeBytes == 0 {
		c.FreeBytes = 32 << 20
	}
}

// figures are what the trimmer reads from the runtime.
type figures struct {
	goroutines int
	held       uint64 // heap memory held from the system (mapped, not released)
	free       uint64 // of which free: neither used nor garbage
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
	last    time.Time // of the last trim
	trims   atomic.Int64
	samples []metrics.Sample
	freeOS  func()
	readFn  func() figures
}

// New returns a Trimmer with cfg (defaults filled in).
func New(cfg Config) *Trimmer {
	cfg.defaults()
	t := &Trimmer{cfg: cfg, freeOS: trim}
	for _, name := range []string{
		"/sched/goroutines:goroutines",
		"/memory/classes/heap/objects:bytes",
		"/memory/classes/heap/unused:bytes",
		"/memory/classes/heap/free:bytes",
		"/memory/classes/heap/stacks:bytes",
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
	return figures{goroutines: int(v(0)), held: v(1) + v(2) + v(3) + v(4), free: v(3)}
}

// Poke tells the trimmer that something that held memory has ended (a
// client's connection, say); it may be called from any goroutine.
func (t *Trimmer) Poke() { t.poked.Store(true) }

// Step looks at the figures once (at now) and trims if they say so; it
// reports whether it trimmed.
func (t *Trimmer) Step(now time.Time) bool {
	f := t.readFn()
	if t.poked.Swap(false) || t.peak-f.goroutines >= t.cfg.Goroutines {
		if !t.ended {
			t.first = now
		}
		t.ended, t.latest = true, now
		t.peak = f.goroutines // a fall counts once
	}
	t.peak = max(t.peak, f.goroutines)
	if now.Sub(t.last) < t.cfg.MinGap {
		return false
	}
	if t.ended && now.Sub(t.latest) < t.cfg.Settle && now.Sub(t.first) < t.cfg.MinGap {
		return false // still ending
	}
	grown := f.held >= t.base+max(t.cfg.Grown, t.base/4)
	if !(t.ended && grown) && f.free < t.cfg.FreeBytes {
		if t.ended && !grown {
			t.ended = false // nothing worth giving back
		}
		return false
	}
	t.freeOS()
	after := t.readFn()
	t.last, t.peak, t.base, t.ended = now, after.goroutines, after.held, false
	t.trims.Add(1)
	return true
}

// Trims returns how many times the trimmer has trimmed.
func (t *Trimmer) Trims() int { return int(t.trims.Load()) }

// Run steps every Config.Every until ctx ends; it returns nil.
func (t *Trimmer) Run(ctx context.Context) error {
	tk := time.NewTicker(t.cfg.Every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tk.C:
			t.Step(now)
		}
	}
}
