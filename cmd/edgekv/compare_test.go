package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/broker/kvclient"
	"github.com/edgekv/edgekv/broker/kvproto"
	"github.com/edgekv/edgekv/tree"
)

// BenchmarkCompare (`make bench-compare`) measures edgekv side by side
// with the machine's floor and the peers that run here, in one run, every
// server its own process on loopback, the clients in this one:
//
//   - floor: a 64-byte echo between this process and a second one (this
//     test binary, re-run as an echo server);
//   - edgekv: a node with the default config (sync interval), through the
//     client protocol, and three nodes in a line over MQTT;
//   - NATS JetStream KV (Debian's nats-server, file storage), if installed;
//   - mosquitto alone, and three bridged in a line (`topic kv/# out 1`)
//     as the replication anchor.
//
// It prints one table: each figure with its ratio to the floor and to the
// anchor. Only ratios of one run are stable on a shared machine. It runs
// only with EDGEKV_BENCH_COMPARE set (the make target sets it); with
// EDGEKV_BENCH_QUICK also set, everything is small (a smoke run); with
// EDGEKV_BENCH_ONLY=line, only the three in a line run.
func BenchmarkCompare(b *testing.B) {
	if os.Getenv("EDGEKV_BENCH_COMPARE") == "" {
		b.Skip("set EDGEKV_BENCH_COMPARE=1 (make bench-compare)")
	}
	quick := os.Getenv("EDGEKV_BENCH_QUICK") != ""
	for b.Loop() {
		cr := &compareRun{b: b, quick: quick}
		cr.run()
		cr.print(os.Stdout)
	}
}

// compareRun is one run's figures.
type compareRun struct {
	b     *testing.B
	quick bool
	rows  []compareRow
	floor map[string]float64 // by figure: the echo floor's value
}

type compareRow struct {
	figure, system string
	value          float64
	unit           string
	floor, anchor  float64 // ratios (0: none)
	note           string
}

func (cr *compareRun) add(r compareRow) { cr.rows = append(cr.rows, r) }

func (cr *compareRun) n(full, quick int) int {
	if cr.quick {
		return quick
	}
	return full
}

func (cr *compareRun) secs() time.Duration {
	if cr.quick {
		return time.Second
	}
	return 3 * time.Second
}

func (cr *compareRun) print(w io.Writer) {
	fmt.Fprintf(w, "\nbench-compare %s, %s, %d CPUs, %s\n", time.Now().Format("2006-01-02 15:04 MST"), runtime.Version(), runtime.NumCPU(),
		map[bool]string{true: "quick", false: "full"}[cr.quick])
	fmt.Fprintf(w, "%-44s %-26s %12s %-10s %9s %9s  %s\n", "figure", "system", "value", "unit", "x floor", "x anchor", "")
	for _, r := range cr.rows {
		ratio := func(x float64) string {
			if x == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f", x)
		}
		fmt.Fprintf(w, "%-44s %-26s %12.1f %-10s %9s %9s  %s\n", r.figure, r.system, r.value, r.unit, ratio(r.floor), ratio(r.anchor), r.note)
	}
}

// server is a process started for the comparison.
type server struct {
	cmd *exec.Cmd
	pid int
}

func (cr *compareRun) start(name string, args []string, env []string, waitFor int) server {
	b := cr.b
	b.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var errBuf strings.Builder
	cmd.Stderr = &lockedWriter{w: &errBuf}
	if err := cmd.Start(); err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", waitFor), 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: port %d not open after 15 s: %s", name, waitFor, errBuf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return server{cmd: cmd, pid: cmd.Process.Pid}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// serveEcho is the echo server's process: it echoes 64-byte messages.
func serveEcho(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 64)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
	}
}

// op is one request of a client pattern; i numbers it.
type op func(i int) error

// sequential runs op n times on one connection: p50 and p99 in µs.
func sequential(b *testing.B, n int, f op) (p50, p99 float64) {
	r := interleaved(b, n, f)[0]
	return r[0], r[1]
}

// interleaved runs each of fs n times on its own connection, in turns of
// 500: p50 and p99 in µs of each.
func interleaved(b *testing.B, n int, fs ...op) [][2]float64 {
	const turn = 500
	lats := make([][]time.Duration, len(fs))
	for done := 0; done < n; done += turn {
		for k, f := range fs {
			for i := done; i < min(n, done+turn); i++ {
				t0 := time.Now()
				if err := f(i); err != nil {
					b.Fatal(err)
				}
				lats[k] = append(lats[k], time.Since(t0))
			}
		}
	}
	out := make([][2]float64, len(fs))
	for k, l := range lats {
		out[k] = [2]float64{float64(percentile(l, 0.5).Nanoseconds()) / 1000, float64(percentile(l, 0.99).Nanoseconds()) / 1000}
	}
	return out
}

// parallel runs workers goroutines (each with its op) for d: ops/s and
// the server's CPU µs per op.
func parallel(b *testing.B, pid int, d time.Duration, ops []op) (rate, cpuPerOp float64) {
	var stop atomic.Bool
	var count atomic.Int64
	var wg sync.WaitGroup
	c0, t0 := cpuTicks(b, pid), time.Now()
	for k, f := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := k; !stop.Load(); i += len(ops) {
				if err := f(i); err != nil {
					b.Error(err)
					return
				}
				count.Add(1)
			}
		}()
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	el, c1 := time.Since(t0), cpuTicks(b, pid)
	n := float64(count.Load())
	return n / el.Seconds(), float64(c1-c0) * 10_000 / n
}

func (cr *compareRun) run() {
	b := cr.b
	switch only := os.Getenv("EDGEKV_BENCH_ONLY"); only {
	case "":
	case "line":
		cr.replication()
		return
	default:
		b.Fatalf("EDGEKV_BENCH_ONLY=%q: the only part that runs alone is line", only)
	}
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	// The floor.
	ep := ports(b, 1)[0]
	echo := cr.start("echo", []string{self}, []string{fmt.Sprintf("EDGEKV_ECHO_SERVE=127.0.0.1:%d", ep)}, ep)
	echoOps := func(n int) []op {
		var out []op
		for range n {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ep))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			buf := make([]byte, 64)
			out = append(out, func(int) error {
				if _, err := c.Write(buf); err != nil {
					return err
				}
				_, err := io.ReadFull(c, buf)
				return err
			})
		}
		return out
	}
	seqN := cr.n(20_000, 2_000)
	echoSeq := echoOps(1)[0] // measured below, beside the edgekv node's raw client
	rate, cpu := parallel(b, echo.pid, cr.secs(), echoOps(8))
	cr.floor = map[string]float64{"par8": rate, "cpu": cpu}
	cr.add(compareRow{figure: "8 conns, 1 in flight each", system: "echo floor (64 B)", value: rate, unit: "ops/s", floor: 1})
	cr.add(compareRow{figure: "server CPU per request (8 conns)", system: "echo floor (64 B)", value: cpu, unit: "µs", floor: 1})

	// edgekv, one node, client protocol.
	ek := cr.edgekvNode()
	ekDial := func(n int) []*kvclient.Client {
		var out []*kvclient.Client
		for range n {
			out = append(out, dialClient(b, ek.addr))
		}
		return out
	}
	ctx := context.Background()
	v := msgp.AppendFloat64(nil, 21.5)
	key := func(i int) tree.Path { return tree.Path{tree.Str("bench"), tree.Int(int64(i % 1000))} }
	setOp := func(c *kvclient.Client) op {
		return func(i int) error { _, err := c.Set(ctx, key(i), v, kvclient.WriteOpts{}); return err }
	}
	getOp := func(c *kvclient.Client) op {
		return func(i int) error { _, _, err := c.Get(ctx, key(i), 0); return err }
	}
	one := ekDial(1)[0]
	for i := range 1000 {
		if err := setOp(one)(i); err != nil {
			b.Fatal(err)
		}
	}

	// NATS JetStream KV, if installed.
	natsKV, natsPid := cr.natsKV()

	// a. Sequential round trips. The floor's p50 is bimodal on a VM
	// (about 10 µs while both processes keep their threads awake, 50–80
	// µs when a thread sleeps between requests): it is measured
	// interleaved with the raw client's set and get, in rounds of 500
	// requests, so that those three see the same machine.
	seqs := interleaved(b, seqN, echoSeq, cr.rawClient(ek.addr, "set_value", v), cr.rawClient(ek.addr, "get_value", nil))
	cr.floor["seq"] = seqs[0][0]
	cr.rows = slices.Insert(cr.rows, 0, compareRow{figure: "sequential round trip p50 (1 conn)", system: "echo floor (64 B)",
		value: seqs[0][0], unit: "µs", floor: 1, note: fmt.Sprintf("p99 %.0f µs", seqs[0][1])})
	seqRow := func(system string, f op) float64 {
		p50, p99 := sequential(b, seqN, f)
		cr.add(compareRow{figure: "sequential round trip p50 (1 conn)", system: system, value: p50, unit: "µs", floor: p50 / cr.floor["seq"], note: fmt.Sprintf("p99 %.0f µs", p99)})
		return p50
	}
	ekSet := seqRow("edgekv set_value", setOp(one))
	seqRow("edgekv get_value", getOp(one))
	// The same requests from a client that writes each and reads its
	// reply on one goroutine, like the echo client: what the node costs,
	// without the Go client's own hand-offs (it matches replies to
	// requests on a reader goroutine of its own).
	for i, system := range []string{"edgekv set_value, raw client", "edgekv get_value, raw client"} {
		p50, p99 := seqs[i+1][0], seqs[i+1][1]
		cr.add(compareRow{figure: "sequential round trip p50 (1 conn)", system: system, value: p50, unit: "µs",
			floor: p50 / cr.floor["seq"], note: fmt.Sprintf("p99 %.0f µs, interleaved with the floor", p99)})
	}
	if natsKV != nil {
		nc := natsKV(1)[0]
		natsPut := seqRow("NATS KV put", nc.put)
		seqRow("NATS KV get", nc.get)
		cr.rows[len(cr.rows)-6].anchor = ekSet / natsPut
	}
	if mq, ok := cr.mosquittoAlone(); ok {
		seqRow("mosquitto QoS 1 publish", mq)
	}

	// b, d. Eight connections, one request in flight each.
	ops := func(cs []*kvclient.Client, mk func(*kvclient.Client) op) []op {
		var out []op
		for _, c := range cs {
			out = append(out, mk(c))
		}
		return out
	}
	eight := ekDial(8)
	parRow := func(system string, pid int, fs []op) float64 {
		rate, cpu := parallel(b, pid, cr.secs(), fs)
		cr.add(compareRow{figure: "8 conns, 1 in flight each", system: system, value: rate, unit: "ops/s", floor: rate / cr.floor["par8"]})
		cr.add(compareRow{figure: "server CPU per request (8 conns)", system: system, value: cpu, unit: "µs", floor: cpu / cr.floor["cpu"]})
		return rate
	}
	ekSets := parRow("edgekv set_value", ek.pid, ops(eight, setOp))
	parRow("edgekv get_value", ek.pid, ops(eight, getOp))
	if natsKV != nil {
		ncs := natsKV(8)
		var puts, gets []op
		for _, nc := range ncs {
			puts, gets = append(puts, nc.put), append(gets, nc.get)
		}
		natsPuts := parRow("NATS KV put", natsPid, puts)
		parRow("NATS KV get", natsPid, gets)
		cr.rows[len(cr.rows)-8].anchor = ekSets / natsPuts
	}

	// c. 16 connections × 16 requests in flight.
	sixteen := ekDial(16)
	var many []op
	for k := range 16 * 16 {
		many = append(many, setOp(sixteen[k%16]))
	}
	rate, cpu = parallel(b, ek.pid, cr.secs(), many)
	cr.add(compareRow{figure: "16 conns x 16 in flight", system: "edgekv set_value", value: rate, unit: "ops/s", note: fmt.Sprintf("node CPU %.1f µs/set", cpu)})
	if natsKV != nil {
		ncs := natsKV(16)
		var puts []op
		for k := range 16 * 16 {
			puts = append(puts, ncs[k%16].put)
		}
		nrate, ncpu := parallel(b, natsPid, cr.secs(), puts)
		cr.add(compareRow{figure: "16 conns x 16 in flight", system: "NATS KV put", value: nrate, unit: "ops/s", note: fmt.Sprintf("server CPU %.1f µs/put", ncpu)})
		cr.rows[len(cr.rows)-2].anchor = rate / nrate
	}

	// e. Memory per key, each on a fresh server.
	keys := cr.n(100_000, 10_000)
	ek = cr.edgekvNode()
	fresh := ekDial(16)
	time.Sleep(2 * time.Second)
	cr.memoryPerKey("edgekv", keys, ek.pid, func(c, i int) error {
		_, err := fresh[c].Set(ctx, tree.Path{tree.Str("mem"), tree.Int(int64(i))}, msgp.AppendString(nil, fmt.Sprintf("%016d", i)), kvclient.WriteOpts{})
		return err
	})
	if natsKV != nil {
		natsKV, natsPid = cr.natsKV()
		ncs := natsKV(16)
		time.Sleep(2 * time.Second)
		cr.memoryPerKey("NATS KV", keys, natsPid, func(c, i int) error {
			_, err := ncs[c].kv.Put(ctx, fmt.Sprintf("mem.%d", i), []byte(fmt.Sprintf("%016d", i)))
			return err
		})
	}

	// f. Replication through three processes in a line.
	cr.replication()
}

// rawClient connects to the client protocol at addr and returns a
// request (action at bench.<i%1000>, with value if not nil) that writes
// the request and reads its reply on the caller's goroutine.
func (cr *compareRun) rawClient(addr, action string, value []byte) op {
	b := cr.b
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	r := kvproto.NewReader(conn, 0)
	if _, err := r.Next(); err != nil { // the greeting
		b.Fatal(err)
	}
	seq := uint64(0)
	buf := make([]byte, 0, 128)
	return func(i int) error {
		seq++
		n := uint32(3)
		if value != nil {
			n = 4
		}
		buf = msgp.AppendMapHeader(buf[:0], n)
		buf = msgp.AppendString(msgp.AppendString(buf, "action"), action)
		buf = tree.AppendPath(msgp.AppendString(buf, "path"), tree.Path{tree.Str("bench"), tree.Int(int64(i % 1000))})
		if value != nil {
			buf = append(msgp.AppendString(buf, "value"), value...)
		}
		buf = msgp.AppendUint64(msgp.AppendString(buf, "seq"), seq)
		if _, err := conn.Write(buf); err != nil {
			return err
		}
		_, err := r.Next()
		return err
	}
}

// ekNode is the single edgekv node of the comparison.
type ekNode struct {
	pid  int
	addr string
}

func (cr *compareRun) edgekvNode() ekNode {
	b := cr.b
	ps := ports(b, 2)
	dir := b.TempDir()
	cfg := filepath.Join(dir, "cmp.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("node: cmp\ndata: {dir: %q}\nlisten: {mqtt: [\"127.0.0.1:%d\"], client: \"127.0.0.1:%d\"}\nlog_level: warn\n",
		filepath.Join(dir, "data"), ps[0], ps[1])), 0o644)
	s := cr.start("edgekv", []string{binary(b), "run", "-n", "cmp", "-c", cfg}, nil, ps[1])
	return ekNode{pid: s.pid, addr: fmt.Sprintf("127.0.0.1:%d", ps[1])}
}

// natsClient is one NATS connection with the bench bucket.
type natsClient struct {
	kv       jetstream.KeyValue
	put, get op
}

// natsKV starts nats-server with JetStream (file storage) and returns a
// maker of connections, or nil if nats-server is not installed.
func (cr *compareRun) natsKV() (func(n int) []natsClient, int) {
	b := cr.b
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		cr.add(compareRow{figure: "(all NATS figures)", system: "NATS KV", note: "not installed (apt-get install nats-server)"})
		return nil, 0
	}
	port := ports(b, 1)[0]
	s := cr.start("nats-server", []string{bin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", b.TempDir()}, nil, port)
	ctx := context.Background()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	created := false
	return func(n int) []natsClient {
		var out []natsClient
		for range n {
			nc, err := nats.Connect(url)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(nc.Close)
			js, err := jetstream.New(nc)
			if err != nil {
				b.Fatal(err)
			}
			var kv jetstream.KeyValue
			if !created {
				kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench", Storage: jetstream.FileStorage})
				created = true
			} else {
				kv, err = js.KeyValue(ctx, "bench")
			}
			if err != nil {
				b.Fatal(err)
			}
			v := []byte("21.5")
			out = append(out, natsClient{
				kv:  kv,
				put: func(i int) error { _, err := kv.Put(ctx, fmt.Sprintf("bench.%d", i%1000), v); return err },
				get: func(i int) error {
					_, err := kv.Get(ctx, fmt.Sprintf("bench.%d", i%1000))
					if err == jetstream.ErrKeyNotFound {
						return nil
					}
					return err
				},
			})
		}
		return out
	}, s.pid
}

// mosquittoAlone starts mosquitto and returns a QoS 1 publish (PUBACK
// round trip) on one connection.
func (cr *compareRun) mosquittoAlone() (op, bool) {
	b := cr.b
	bin := mosquittoBin()
	if bin == "" {
		cr.add(compareRow{figure: "(all mosquitto figures)", system: "mosquitto", note: "not installed (apt-get install mosquitto)"})
		return nil, false
	}
	port := ports(b, 1)[0]
	conf := filepath.Join(b.TempDir(), "m.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n", port)), 0o644)
	cr.start("mosquitto", []string{bin, "-c", conf}, nil, port)
	cm := mqttClient(b, port, "cmp-pub", "", nil)
	payload := []byte("21.5")
	return func(i int) error {
		_, err := cm.Publish(context.Background(), &paho.Publish{Topic: fmt.Sprintf("bench/%d", i%1000), QoS: 1, Payload: payload})
		return err
	}, true
}

func mosquittoBin() string {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return "/usr/sbin/mosquitto"
	}
	return ""
}

// memoryPerKey loads keys through 16×16 writers (set(conn, i)) and reports
// the server's RSS growth per key, 2 s after the load.
func (cr *compareRun) memoryPerKey(system string, keys, pid int, set func(conn, i int) error) {
	b := cr.b
	rss0 := rssKiB(b, pid)
	t0 := time.Now()
	loadKeys(b, 16, keys, set)
	load := time.Since(t0)
	time.Sleep(2 * time.Second)
	rss1 := rssKiB(b, pid)
	cr.add(compareRow{figure: fmt.Sprintf("RSS per key, %d keys of 16 B", keys), system: system, value: float64(rss1-rss0) * 1024 / float64(keys), unit: "B",
		note: fmt.Sprintf("loaded in %.1f s; RSS %d MiB", load.Seconds(), rss1/1024)})
}

// replication publishes on the first of three processes in a line and
// counts arrivals on the last: edgekv nodes, then mosquittos bridged.
func (cr *compareRun) replication() {
	b := cr.b
	perRound := cr.n(40_000, 2_000)
	// measure returns the updates/s, the p99 latency at a paced rate, and
	// the CPU time per update of the three servers together and of this
	// process (the publishers and the subscriber) during the throughput
	// phase: on a machine of 2 cores the five share, so the sum is what
	// bounds the rate.
	measure := func(system string, first, last int, pids []int) (rate, p99, serverCPU, clientCPU float64) {
		var got atomic.Int64
		var mu sync.Mutex
		var lats []time.Duration
		mqttClient(b, last, "cmp-sub-"+system, "kv/rep/#", func(topic string, payload []byte) {
			got.Add(1)
			if strings.HasPrefix(topic, "kv/rep/lat/") {
				if ns, err := strconv.ParseInt(string(payload), 10, 64); err == nil {
					mu.Lock()
					lats = append(lats, time.Duration(time.Now().UnixNano()-ns))
					mu.Unlock()
				}
			}
		})
		var pubs []*autopaho.ConnectionManager
		for i := range 8 {
			pubs = append(pubs, mqttClient(b, first, fmt.Sprintf("cmp-pub-%s-%d", system, i), "", nil))
		}
		ticks := func() (srv, self int) {
			for _, pid := range pids {
				srv += cpuTicks(b, pid)
			}
			return srv, cpuTicks(b, os.Getpid())
		}
		srv0, self0 := ticks()
		t0 := time.Now()
		var wg sync.WaitGroup
		for c, cm := range pubs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := c; i < perRound; i += len(pubs) {
					if _, err := cm.Publish(context.Background(), &paho.Publish{Topic: fmt.Sprintf("kv/rep/r/%d", i), Payload: []byte(strconv.Itoa(i))}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		deadline := time.Now().Add(60 * time.Second)
		for got.Load() < int64(perRound) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		rate = float64(got.Load()) / time.Since(t0).Seconds()
		srv1, self1 := ticks()
		// A tick is 10 ms: µs per update = ticks * 1e4 / updates.
		serverCPU = float64(srv1-srv0) * 1e4 / float64(max(got.Load(), 1))
		clientCPU = float64(self1-self0) * 1e4 / float64(max(got.Load(), 1))
		// Latency at a paced 5,000 updates/s for 2 s.
		const paced = 5000
		total := cr.n(2*paced, paced/2)
		t1 := time.Now()
		for sent := 0; sent < total; {
			due := min(total, int(time.Since(t1).Seconds()*paced))
			for ; sent < due; sent++ {
				pubs[sent%len(pubs)].Publish(context.Background(), &paho.Publish{Topic: fmt.Sprintf("kv/rep/lat/%d", sent%2000), Payload: []byte(strconv.FormatInt(time.Now().UnixNano(), 10))})
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Second)
		mu.Lock()
		defer mu.Unlock()
		return rate, float64(percentile(lats, 0.99).Microseconds()) / 1000, serverCPU, clientCPU
	}
	cpuRows := func(system string, serverCPU, clientCPU, anchorServer, anchorClient float64) {
		r := compareRow{figure: "3 in a line: servers' CPU per update", system: system, value: serverCPU, unit: "µs"}
		r2 := compareRow{figure: "3 in a line: clients' CPU per update", system: system, value: clientCPU, unit: "µs",
			note: "8 publishers + 1 subscriber (paho), this process"}
		if anchorServer > 0 {
			r.anchor, r2.anchor = serverCPU/anchorServer, clientCPU/anchorClient
		}
		cr.add(r)
		cr.add(r2)
	}
	var mqRate, mqP99, mqServer, mqClient float64
	if bin := mosquittoBin(); bin != "" {
		ps := ports(b, 3)
		dir := b.TempDir()
		pids := make([]int, 3)
		for i := 2; i >= 0; i-- {
			conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n", ps[i])
			if i < 2 {
				conf += fmt.Sprintf("connection m%dto%d\naddress 127.0.0.1:%d\ntopic kv/# out 1\n", i+1, i+2, ps[i+1])
			}
			f := filepath.Join(dir, fmt.Sprintf("m%d.conf", i+1))
			os.WriteFile(f, []byte(conf), 0o644)
			pids[i] = cr.start(fmt.Sprintf("mosquitto %d", i+1), []string{bin, "-c", f}, nil, ps[i]).pid
		}
		time.Sleep(500 * time.Millisecond) // the bridges connect
		mqRate, mqP99, mqServer, mqClient = measure("mosquitto", ps[0], ps[2], pids)
		cr.add(compareRow{figure: "3 in a line: updates/s first -> last", system: "mosquitto x3 bridged", value: mqRate, unit: "upd/s", anchor: 1})
		cr.add(compareRow{figure: "3 in a line: p99 at 5,000/s", system: "mosquitto x3 bridged", value: mqP99, unit: "ms", anchor: 1})
		cpuRows("mosquitto x3 bridged", mqServer, mqClient, mqServer, mqClient)
	}
	nodes := startProcNodes(b, []string{"line1", "line2", "line3"}, [][]int{{1}, {2}, {}}, "")
	rate, p99, server, client := measure("edgekv", nodes[0].port, nodes[2].port, []int{nodes[0].pid, nodes[1].pid, nodes[2].pid})
	row := compareRow{figure: "3 in a line: updates/s first -> last", system: "edgekv x3 (sync interval)", value: rate, unit: "upd/s"}
	row2 := compareRow{figure: "3 in a line: p99 at 5,000/s", system: "edgekv x3 (sync interval)", value: p99, unit: "ms"}
	if mqRate > 0 {
		row.anchor, row2.anchor = rate/mqRate, p99/mqP99
	}
	cr.add(row)
	cr.add(row2)
	cpuRows("edgekv x3 (sync interval)", server, client, mqServer, mqClient)
}

// init makes the test binary the echo server when BenchmarkCompare runs
// it with EDGEKV_ECHO_SERVE set.
func init() {
	if addr := os.Getenv("EDGEKV_ECHO_SERVE"); addr != "" {
		serveEcho(addr)
		os.Exit(0)
	}
}
