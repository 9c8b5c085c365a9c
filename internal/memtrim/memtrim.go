package memtrim

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Config tunes a Trimmer; the zero value uses the defaults.
type Config struct {
	// Every is how often the signals are read (default 250 ms).
	Every time.Duration
	// MinGap is the least time between two trims (default 1 s).
	MinGap time.Duration
	// Goroutines: trim once the number of goroutines has fallen by this
	// many from its highest since the last trim (default 512).
	Goroutines int
	// FreeBytes: trim once the heap holds this much free memory not yet
	// returned to the system (default 32 MiB).
	FreeBytes uint64
}

func (c *Config) defaults() {
	if c.Every <= 0 {
		c.Every = 250 * time.Millisecond
	}
	if c.MinGap <= 0 {
		c.MinGap = time.Second
	}
	if c.Goroutines <= 0 {
		c.Goroutines = 512
	}
	if c.FreeBytes == 0 {
		c.FreeBytes = 32 << 20
	}
}

// Trimmer decides when to trim; Run drives it with the runtime's figures.
type Trimmer struct {
	cfg      Config
	peak     int
	last     time.Time
	trims    int
	samples  []metrics.Sample
	freeOS   func()
	readFunc func() (goroutines int, free uint64)
}

// New returns a Trimmer with cfg (defaults filled in).
func New(cfg Config) *Trimmer {
	cfg.defaults()
	t := &Trimmer{cfg: cfg, freeOS: debug.FreeOSMemory}
	t.samples = []metrics.Sample{
		{Name: "/sched/goroutines:goroutines"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	t.readFunc = t.read
	return t
}

func (t *Trimmer) read() (int, uint64) {
	metrics.Read(t.samples)
	var g int
	var free uint64
	if s := t.samples[0]; s.Value.Kind() == metrics.KindUint64 {
		g = int(s.Value.Uint64())
	}
	if s := t.samples[1]; s.Value.Kind() == metrics.KindUint64 {
		free = s.Value.Uint64()
	}
	return g, free
}

// Step looks at the figures once (at now) and trims if they say so; it
// reports whether it trimmed.
func (t *Trimmer) Step(now time.Time) bool {
	g, free := t.readFunc()
	t.peak = max(t.peak, g)
	if now.Sub(t.last) < t.cfg.MinGap {
		return false
	}
	if t.peak-g < t.cfg.Goroutines && free < t.cfg.FreeBytes {
		return false
	}
	t.freeOS()
	t.last, t.peak = now, g
	t.trims++
	return true
}

// Trims returns how many times the trimmer has trimmed.
func (t *Trimmer) Trims() int { return t.trims }

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
