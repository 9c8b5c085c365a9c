package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/broker/kvclient"
	"github.com/edgekv/edgekv/tree"
)

// rssSampler records the highest RSS of pid, sampled every 20 ms, until
// stop is called; stop returns the peak in KiB.
func rssSampler(pid int) (stop func() int) {
	done, peak := make(chan struct{}), make(chan int, 1)
	go func() {
		max := 0
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				for line := range strings.Lines(string(data)) {
					if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
						if v, _ := strconv.Atoi(f[1]); v > max {
							max = v
						}
					}
				}
			}
			select {
			case <-done:
				peak <- max
				return
			case <-tick.C:
			}
		}
	}()
	return func() int { close(done); return <-peak }
}

// Probe: on a node holding 50,000 entries of 200 bytes, one client opens
// 64 watches of the root with fetch and 64 get_tree of the root (about
// 4 KB sent) and reads what comes as fast as it can, acknowledging
// nothing. Meanwhile another client's get_value p99
// stays within 50 ms and the node's RSS within 100 MB of before. (Before
// walks went a chunk at a time: +1.5 GB, gets p99 82 ms, max 3.6 s.)
func TestProbeFetchWatches(t *testing.T) {
	p, _, addr := probeNode(t, "fetch", "")
	pid := p.cmd.Process.Pid
	const n = 50_000
	value := msgp.AppendString(nil, strings.Repeat("v", 197)) // 200 bytes of msgpack
	fillNode(t, addr, n, func(int) []byte { return value })
	time.Sleep(time.Second)
	before := rssKiB(t, pid)
	stop := rssSampler(pid)

	hostile, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hostile.Close()
	var b []byte
	for seq := 1; seq <= 64; seq++ {
		b = append(b, rawRequest("path", tree.Path{}, "action", "watch", "fetch", true, "seq", seq)...)
	}
	for seq := 65; seq <= 128; seq++ {
		b = append(b, rawRequest("path", tree.Path{}, "action", "get_tree", "seq", seq)...)
	}
	if _, err := hostile.Write(b); err != nil {
		t.Fatal(err)
	}
	// It reads as fast as it can (but never acknowledges), which keeps
	// every walk going.
	read := make(chan int64, 1)
	go func() {
		var total int64
		buf := make([]byte, 64<<10)
		for {
			k, err := hostile.Read(buf)
			total += int64(k)
			if err != nil {
				read <- total
				return
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := kvclient.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	var lat []time.Duration
	for range 1000 {
		k := tree.Path{tree.Str("p"), tree.Int(int64(rng.IntN(n)))}
		start := time.Now()
		if _, ok, err := c.Get(ctx, k, 0); err != nil || !ok {
			t.Fatalf("get %v: found %v, %v", k, ok, err)
		}
		lat = append(lat, time.Since(start))
		time.Sleep(2 * time.Millisecond)
	}
	peak := stop()
	hostile.Close()
	got := <-read
	slices.Sort(lat)
	p50, p99, max := lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	t.Logf("%d bytes sent by the hostile client, %d MB read; get p50 %v p99 %v max %v; RSS %d KiB before, peak %d KiB (%+d KiB)",
		len(b), got>>20, p50, p99, max, before, peak, peak-before)
	if p99 > 50*time.Millisecond {
		t.Errorf("get p99 %v during 64 fetch watches and 64 get_tree, want ≤ 50 ms", p99)
	}
	if peak-before > 100*1024 {
		t.Errorf("RSS rose by %d KiB during 64 fetch watches and 64 get_tree, want ≤ 100 MB", peak-before)
	}
	if p.stop(syscall.SIGTERM); p.exited() != nil {
		t.Fatalf("the node did not stop cleanly: %v", p.exited())
	}
}
