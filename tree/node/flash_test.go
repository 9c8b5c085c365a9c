package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/store"
)

// BenchmarkFlashPerUpdate: an engine with the default sync policy
// (interval: a group commit every 100 ms) takes writes at a steady rate
// for 3 s, as sensors on a board would; reports the bytes a flash device
// would program per update (store.MemFS.FlashBytes: every page a commit
// touches, written whole) beside the log bytes per update, status entries
// included (the node writes those too).
func BenchmarkFlashPerUpdate(b *testing.B) {
	for _, tc := range []struct {
		rate int
		sync time.Duration // group-commit period (0: the default, 100 ms)
	}{{10, 0}, {100, 0}, {1000, 0}, {10000, 0}, {10, time.Second}} {
		name := fmt.Sprintf("rate=%d", tc.rate)
		if tc.sync > 0 {
			name += fmt.Sprintf(",sync_interval=%v", tc.sync)
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				flashPerUpdate(b, tc.rate, tc.sync, 3*time.Second)
			}
		})
	}
}

func flashPerUpdate(b *testing.B, rate int, sync, d time.Duration) {
	fs := store.NewMemFS()
	e, err := Open(Config{Name: "flash", FS: fs, FreshStart: func() uint64 { return 0 }, Store: store.Options{SyncInterval: sync}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	time.Sleep(300 * time.Millisecond) // the start-up records are not the updates'
	flash0, log0 := fs.FlashBytes(), logBytes(b, fs)
	n := 0
	t0 := time.Now()
	for time.Since(t0) < d {
		due := int(time.Since(t0).Seconds() * float64(rate))
		for ; n < due; n++ {
			p := tree.Path{tree.Str("sensor"), tree.Int(int64(n % 100))}
			if _, err := e.Set(ctx, p, msgp.AppendFloat64(nil, float64(n)/10), Cond{}); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	flash, log := fs.FlashBytes()-flash0, logBytes(b, fs)-log0
	b.ReportMetric(float64(flash)/float64(n), "flash-B/update")
	b.ReportMetric(float64(log)/float64(n), "log-B/update")
	b.ReportMetric(float64(flash)/float64(log), "flash/log")
}

// logBytes is the size of every file in fs.
func logBytes(b *testing.B, fs *store.MemFS) int64 {
	names, err := fs.List()
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, name := range names {
		data, err := fs.ReadFile(name)
		if err != nil {
			b.Fatal(err)
		}
		n += int64(len(data))
	}
	return n
}
