package node

import (
	"context"
	"fmt"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/store"
)

// BenchmarkEngineSet measures Engine.Set through the API, in process (a
// micro-benchmark of the engine; what a user pays is in cmd/edgekv's
// node-process benchmarks), on a MemFS store:
//   - interval/seq: one caller, sync "interval": every write finds the
//     loop idle and is applied on the caller's goroutine (writeDirect);
//   - interval/par: GOMAXPROCS×4 callers, sync "interval": direct when
//     the loop is idle, queued for its turns when not;
//   - always/seq: one caller, sync "always": every write goes to the loop
//     (two hand-offs) and waits for an fsync of MemFS (a copy).
//
// direct/op reports the share of writes applied without a hand-off.
func BenchmarkEngineSet(b *testing.B) {
	for _, c := range []struct {
		name string
		sync store.SyncPolicy
		par  bool
	}{
		{"interval/seq", store.SyncInterval, false},
		{"interval/par", store.SyncInterval, true},
		{"always/seq", store.SyncAlways, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			fs := store.NewMemFS()
			e, err := Open(Config{Name: "bench", FS: fs, Store: store.Options{Sync: c.sync}})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- e.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					b.Error(err)
				}
			}()
			if _, err := e.State(ctx); err != nil { // the loop runs
				b.Fatal(err)
			}
			paths := make([]tree.Path, 1000)
			for i := range paths {
				paths[i] = tree.Path{tree.Str("bench"), tree.Str(fmt.Sprintf("k%d", i))}
			}
			v := msgp.AppendFloat64(nil, 21.5)
			d0 := e.directWrites.Load()
			b.ReportAllocs()
			b.ResetTimer()
			if c.par {
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					for i := 0; pb.Next(); i++ {
						if _, err := e.Set(ctx, paths[i%len(paths)], v, Cond{}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for i := 0; b.Loop(); i++ {
					if _, err := e.Set(ctx, paths[i%len(paths)], v, Cond{}); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(e.directWrites.Load()-d0)/float64(b.N), "direct/op")
		})
	}
}
