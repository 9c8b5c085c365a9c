package node

import (
	"context"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/store"
)

// BenchmarkWriteWaitDuringSnapshot: an engine holding 1,000,000 entries
// writes snapshots back to back (checked every 50 ms) while one client
// writes sequentially for 3 s (data in a temporary directory); reports
// the longest and the p99 write wait. Capturing the snapshot's records runs on the engine's goroutine,
// so a write that arrives meanwhile waits for the whole capture.
func BenchmarkWriteWaitDuringSnapshot(b *testing.B) {
	for b.Loop() {
		// A real directory: MemFS's one lock would make the log wait for
		// the snapshot's writes, which a file system does not.
		fs := store.DirFS(b.TempDir())
		e, err := Open(Config{Name: "snap", FS: fs, FreshStart: func() uint64 { return 0 },
			SnapshotCheck: 50 * time.Millisecond, Store: store.Options{SnapshotAfterBytes: snapAfter()}})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		const n = 1_000_000
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1)
					if i > n {
						return
					}
					if _, err := e.Set(ctx, tree.Path{tree.Str("k"), tree.Int(i)}, msgp.AppendInt64(nil, i), Cond{}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		var lats []time.Duration
		t0 := time.Now()
		for i := 0; time.Since(t0) < 3*time.Second; i++ {
			s := time.Now()
			if _, err := e.Set(ctx, tree.Path{tree.Str("w"), tree.Int(int64(i % 100))}, msgp.AppendInt(nil, i), Cond{}); err != nil {
				b.Fatal(err)
			}
			lats = append(lats, time.Since(s))
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		slices.Sort(lats)
		b.ReportMetric(float64(lats[len(lats)-1].Microseconds())/1000, "max-wait-ms")
		b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds())/1000, "p99-wait-ms")
	}
}

func snapAfter() int64 {
	if os.Getenv("NOSNAP") != "" {
		return -1
	}
	return 1
}
