package runner

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
)

// BenchmarkEventToAction: a job watches "in" and, on each change, sets
// "out" to the value; each iteration writes "in" and waits until "out"
// holds it (a watch on "out"). Reports the p50 and p99 of that latency
// (target p50 ≤ 200 µs): the engine's watch, the runner's activation (a
// clone of the compiled code, run in the sandbox) and the job's write.
func BenchmarkEventToAction(b *testing.B) {
	e := engine(b, "n1")
	setCode(b, e, "echo", `
if event.type == "start" { kv.watch("in", false) } else if event.type == "change" { kv.set("out", event.value) }`, nil, nil)
	setJob(b, e, at(pre.Run, "at", "n1", "default", "echo"), "echo", nil, nil)
	startRunner(b, e, Config{Node: "n1"})
	eventually(b, "running", func() bool { return state(b, e, at(pre.State, "at", "n1", "default", "echo")).Node == "n1" })
	time.Sleep(50 * time.Millisecond) // the watch is registered after the start activation
	got := make(chan int64, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.Watch(ctx, path(b, "out"), false, func(it node.Item) error {
		if v, _, err := msgp.ReadInt64Bytes(it.Entry.Value); err == nil {
			got <- v
		}
		return nil
	})
	in := path(b, "in")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		if _, err := e.Set(context.Background(), in, msgp.AppendInt64(nil, int64(i+1)), node.Cond{}); err != nil {
			b.Fatal(err)
		}
		for v := range got {
			if v == int64(i+1) {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkThousandJobs: 1,000 single-node jobs on one node, each
// watching a path of its own and holding a little state: how long until
// all run, the heap they hold, and the CPU they cost while idle (over 5 s,
// this process: engine and runner) against the same node with no jobs, and
// then while one of them is woken ten times a second.
func BenchmarkThousandJobs(b *testing.B) {
	for range b.N {
		e := engine(b, "n1")
		setCode(b, e, "idle", `
if event.type == "start" { kv.watch("w." + name, false); state.seen = 0 } else { state.seen += 1 }`, []string{"name"}, nil)
		stop := startRunner(b, e, Config{Node: "n1"})
		c0, t0 := cpuTime(), time.Now()
		time.Sleep(5 * time.Second)
		b.ReportMetric(100*float64(cpuTime()-c0)/float64(time.Since(t0)), "no-jobs-cpu-%")
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		for i := range 1000 {
			setJob(b, e, at(pre.Run, "at", "n1", "default", fmt.Sprintf("j%d", i)), "idle", map[string]any{"name": fmt.Sprintf("j%d", i)}, nil)
		}
		eventually(b, "all running", func() bool {
			n := 0
			e.Walk(context.Background(), at(pre.State, "at", "n1", "default"), func(it node.Item) error {
				if st, err := DecodeState(it.Entry.Value); err == nil && st.Node == "n1" {
					n++
				}
				return nil
			})
			return n == 1000
		})
		b.ReportMetric(time.Since(start).Seconds(), "s-to-start-all")
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/1000/1024, "KiB-heap/job")
		c0, t0 = cpuTime(), time.Now()
		time.Sleep(5 * time.Second)
		b.ReportMetric(100*float64(cpuTime()-c0)/float64(time.Since(t0)), "idle-cpu-%")
		c0, t0 = cpuTime(), time.Now()
		w := path(b, "w.j7")
		for i := range 50 {
			v, _ := tree.AppendValue(nil, int64(i))
			e.Set(context.Background(), w, v, node.Cond{})
			time.Sleep(100 * time.Millisecond)
		}
		b.ReportMetric(100*float64(cpuTime()-c0)/float64(time.Since(t0)), "one-busy-cpu-%")
		stop()
	}
}
