package budget

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// ExhaustedError is the error of a Take that could not be met.
type ExhaustedError struct {
	// Want is what was asked for, Total the budget, Free what was left
	// when the wait ended, and Wait how long it lasted.
	Want, Total, Free int64
	Wait              time.Duration
	// Name names the budget in the message ("limits.receiving").
	Name string
}

func (e *ExhaustedError) Error() string {
	if e.Want > e.Total {
		return fmt.Sprintf("%s: %d bytes asked for, more than the whole budget of %d", e.Name, e.Want, e.Total)
	}
	return fmt.Sprintf("%s: %d bytes asked for, %d of %d free after waiting %s (other connections hold the rest)",
		e.Name, e.Want, e.Free, e.Total, e.Wait)
}

// Budget is a pool of bytes.
type Budget struct {
	name  string
	total int64
	wait  time.Duration

	mu      sync.Mutex
	used    int64
	changed chan struct{} // closed (and replaced) when bytes are given back to waiters
	waiters int
	peak    int64
}

// New returns a budget of total bytes whose Take waits at most wait. name
// goes into errors, so that a user knows which setting to change.
func New(name string, total int64, wait time.Duration) *Budget {
	return &Budget{name: name, total: total, wait: wait, changed: make(chan struct{})}
}

// Total returns the budget's size.
func (b *Budget) Total() int64 { return b.total }

// Used returns the bytes taken and not yet given back.
func (b *Budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// Peak returns the most bytes ever taken at once.
func (b *Budget) Peak() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak
}

// Take takes n bytes, waiting while fewer are free, until the budget's
// wait has passed or ctx is done. It returns a *ExhaustedError when the wait
// ran out (at once if n exceeds the whole budget), or ctx's error.
func (b *Budget) Take(ctx context.Context, n int64) error {
	if n <= 0 {
		return nil
	}
	if n > b.total {
		return &ExhaustedError{Name: b.name, Want: n, Total: b.total, Free: b.free()}
	}
	var timer *time.Timer
	start := time.Now()
	for {
		b.mu.Lock()
		if b.total-b.used >= n {
			b.used += n
			b.peak = max(b.peak, b.used)
			b.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return nil
		}
		changed := b.changed
		b.waiters++
		b.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(b.wait)
		}
		var timedOut bool
		select {
		case <-changed:
		case <-timer.C:
			timedOut = true
		case <-ctx.Done():
		}
		b.mu.Lock()
		b.waiters--
		b.mu.Unlock()
		switch {
		case timedOut:
			return &ExhaustedError{Name: b.name, Want: n, Total: b.total, Free: b.free(), Wait: time.Since(start).Round(time.Millisecond)}
		case ctx.Err() != nil:
			timer.Stop()
			return ctx.Err()
		}
	}
}

func (b *Budget) free() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total - b.used
}

// Give gives back n bytes taken before and wakes the waiters.
func (b *Budget) Give(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	if b.used < 0 {
		b.mu.Unlock()
		panic("budget: more given back than taken")
	}
	if b.waiters > 0 {
		close(b.changed)
		b.changed = make(chan struct{})
	}
	b.mu.Unlock()
}

// Connections hold this much of an unfinished message without taking it
// from the budget: small messages, the usual case, cost no locking.
const Free = 64 << 10

// A message larger than Free must keep arriving at MinRate bytes per
// second, after a start of Grace: a client that sends half a message and
// stops would otherwise hold its share of the budget for ever.
const (
	MinRate = 64 << 10
	Grace   = 10 * time.Second
)

// Deadline returns when the rest of a large message must have arrived: got
// bytes of it have come since start.
func Deadline(start time.Time, got int64) time.Time {
	return start.Add(Grace + time.Duration(got)*time.Second/MinRate)
}
