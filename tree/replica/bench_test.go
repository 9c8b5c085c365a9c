package replica_test

import (
	"fmt"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/replica"
	"github.com/edgekv/edgekv/tree/store"
	"github.com/edgekv/edgekv/tree/wire"
)

func benchPath(i int) tree.Path {
	return tree.Path{tree.Str("site"), tree.Str(fmt.Sprintf("room%d", i/10000)), tree.Int(int64(i / 100 % 100)), tree.Str(fmt.Sprintf("m%d", i%100))}
}

// filled returns a replica holding n entries written by node "src", and the
// update records that built it.
func filled(b *testing.B, name string, n int) (*replica.Replica, [][]byte) {
	b.Helper()
	src := replica.New(replica.Config{Node: "src"})
	v := msgp.AppendFloat64(nil, 21.5)
	ups := make([][]byte, n)
	for i := range n {
		ev, _, err := src.Set(benchPath(i), v, tree.Cond{})
		if err != nil {
			b.Fatal(err)
		}
		ups[i] = wire.AppendUpdate(nil, ev)
		if i%4096 == 0 {
			src.Ready()
		}
	}
	r := replica.New(replica.Config{Node: name})
	r.LinkUp(1)
	for _, u := range ups {
		if err := r.Step(1, wire.KindUpdate, u); err != nil {
			b.Fatal(err)
		}
	}
	r.Ready()
	r.LinkDown(1)
	return r, ups
}

// BenchmarkApplyUpdate decodes and applies a remote update in a replica of
// 100,000 entries, including the log record it produces (target ≤ 2 µs).
func BenchmarkApplyUpdate(b *testing.B) {
	r, _ := filled(b, "dst", 100_000)
	r.LinkUp(1)
	src := replica.New(replica.Config{Node: "other"})
	v := msgp.AppendFloat64(nil, 22.0)
	const n = 1 << 16
	ups := make([][]byte, n)
	for i := range ups {
		ev, _, _ := src.Set(benchPath(i*13%100_000), v, tree.Cond{})
		ups[i] = wire.AppendUpdate(nil, ev)
		if i%4096 == 0 {
			src.Ready()
		}
	}
	i, writers := 0, 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if i == n {
			b.StopTimer()
			// Start over with fresh ticks from a new writer (a new
			// name each time: the same name would replay known ticks).
			writers++
			src = replica.New(replica.Config{Node: fmt.Sprintf("other%d", writers)})
			for j := range ups {
				ev, _, _ := src.Set(benchPath(j*13%100_000), v, tree.Cond{})
				ups[j] = wire.AppendUpdate(nil, ev)
			}
			src.Ready()
			i = 0
			b.StartTimer()
		}
		if err := r.Step(1, wire.KindUpdate, ups[i]); err != nil {
			b.Fatal(err)
		}
		i++
		if i%256 == 0 {
			r.Ready()
		}
	}
}

// BenchmarkCatchUp: two replicas share 1,000,000 entries; each makes 1,000
// changes the other has not seen; then the link comes up and they exchange
// digests and exactly the difference. Reports wire bytes per divergent
// entry against the entry's own encoded update size (target ≤ 2×), and the
// time from link-up to identical trees (target ≤ 100 ms).
func BenchmarkCatchUp(b *testing.B) {
	const shared, div = 1_000_000, 1000
	x, ups := filled(b, "x", shared)
	y := replica.New(replica.Config{Node: "y"})
	y.LinkUp(1)
	for _, u := range ups {
		y.Step(1, wire.KindUpdate, u)
	}
	y.Ready()
	y.LinkDown(1)
	ups = nil
	v := msgp.AppendString(nil, "divergent value")
	round := 0
	var wireBytes, ownBytes, entries int
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		round++
		for i := range div {
			ex, _, _ := x.Set(tree.Path{tree.Str("x"), tree.Int(int64(round)), tree.Int(int64(i))}, v, tree.Cond{})
			ey, _, _ := y.Set(benchPath((round*div+i)*7%shared), v, tree.Cond{})
			ownBytes += len(wire.AppendUpdate(nil, ex)) + len(wire.AppendUpdate(nil, ey))
		}
		entries += 2 * div
		x.Ready()
		y.Ready()
		b.StartTimer()
		x.LinkUp(1)
		y.LinkUp(1)
		for {
			rx, ry := x.Ready(), y.Ready()
			if len(rx.Messages)+len(ry.Messages) == 0 {
				break
			}
			for _, m := range rx.Messages {
				wireBytes += len(m.Data)
				if err := y.Step(1, m.Kind, m.Data); err != nil {
					b.Fatal(err)
				}
			}
			for _, m := range ry.Messages {
				wireBytes += len(m.Data)
				if err := x.Step(1, m.Kind, m.Data); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		x.LinkDown(1)
		y.LinkDown(1)
		if x.Tree().Len() != y.Tree().Len() || len(x.Missing())+len(y.Missing()) > 0 {
			b.Fatalf("not converged: %d vs %d entries", x.Tree().Len(), y.Tree().Len())
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(wireBytes)/float64(entries), "bytes/divergent-entry")
	b.ReportMetric(float64(wireBytes)/float64(ownBytes), "wire/own-size")
}

func snapshotOf(b *testing.B, r *replica.Replica, dir string) {
	b.Helper()
	st, _, err := store.Open(store.DirFS(dir), store.Options{Sync: store.SyncInterval})
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Snapshot(r.SnapshotRecords); err != nil {
		b.Fatal(err)
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSnapshotWrite writes a snapshot of 1,000,000 entries to disk.
func BenchmarkSnapshotWrite(b *testing.B) {
	r, _ := filled(b, "n", 1_000_000)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		snapshotOf(b, r, b.TempDir())
	}
}

// BenchmarkSnapshotLoad opens a store holding a snapshot of 1,000,000
// entries and restores a replica from it (target ≤ 1.5 s/op).
func BenchmarkSnapshotLoad(b *testing.B) {
	r, _ := filled(b, "n", 1_000_000)
	dir := b.TempDir()
	snapshotOf(b, r, dir)
	want := r.Tree().Len()
	r = nil
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		st, ld, err := store.Open(store.DirFS(dir), store.Options{Sync: store.SyncInterval})
		if err != nil {
			b.Fatal(err)
		}
		n := replica.New(replica.Config{Node: "n"})
		if errs := n.Restore(ld.Snapshot, ld.Log, ld.NodeRecord); len(errs) > 0 {
			b.Fatal(errs[0])
		}
		st.Close()
		if n.Tree().Len() != want {
			b.Fatalf("loaded %d entries, want %d", n.Tree().Len(), want)
		}
	}
}
