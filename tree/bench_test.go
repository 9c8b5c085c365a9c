package tree

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

// benchPath returns the i-th of a million 4-element paths:
// "site"/room(100)/device(100)/metric(100), like a sensor tree.
func benchPath(i int) Path {
	return Path{Str("site"), Str(fmt.Sprintf("room%d", i/10000)), Int(int64(i / 100 % 100)), Str(fmt.Sprintf("m%d", i%100))}
}

func buildTree(b *testing.B, n int) (*Tree, []Path) {
	b.Helper()
	t := New(Config{Self: "bench"})
	paths := make([]Path, n)
	v := msgp.AppendFloat64(nil, 21.5)
	for i := range paths {
		paths[i] = benchPath(i)
		if _, _, err := t.Set(paths[i], v, Cond{}); err != nil {
			b.Fatal(err)
		}
	}
	return t, paths
}

// BenchmarkLocalSet sets a value at a 4-element path in a tree of 1,000,000
// entries (target ≤ 1 µs/op). "random" strides over all million keys, so
// nearly every step misses the CPU caches; "hot" rewrites the same 1,000
// keys (a board's sensors), which stay cache-resident.
func BenchmarkLocalSet(b *testing.B) {
	t, paths := buildTree(b, 1_000_000)
	v := msgp.AppendFloat64(nil, 22.25)
	for _, bc := range []struct {
		name string
		keys int
	}{{"random", len(paths)}, {"hot", 1000}} {
		b.Run(bc.name, func(b *testing.B) {
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				i = (i + 7919) % bc.keys
				if _, _, err := t.Set(paths[i*(len(paths)/bc.keys)], v, Cond{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkTreeMemory reports the heap each entry costs beyond its value
// bytes, in a tree of 1,000,000 entries (target ≤ 250 bytes/entry).
func BenchmarkTreeMemory(b *testing.B) {
	const n = 1_000_000
	b.ReportAllocs()
	for b.Loop() {
		before := heapInUse()
		t, _ := buildTree(b, n)
		after := heapInUse()
		runtime.KeepAlive(t)
		valueBytes := uint64(n * 9) // a float64 is 9 bytes of msgpack
		b.ReportMetric(float64(after-before-valueBytes)/n, "bytes/entry")
	}
}
