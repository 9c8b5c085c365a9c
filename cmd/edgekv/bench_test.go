package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv"
	"github.com/edgekv/edgekv/boards"
	"github.com/edgekv/edgekv/broker/kvclient"
	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
)

// benchNode is an in-process node on loopback ports.
type benchNode struct {
	n      *edgekv.Node
	cfg    *boards.Config
	port   int
	cancel context.CancelFunc
	done   chan error
}

// Write writes value (msgpack; nil deletes) at p, as an MQTT client's
// write does.
func (bn *benchNode) Write(ctx context.Context, p tree.Path, value []byte) error {
	var err error
	if value == nil {
		_, err = bn.n.Engine().Delete(ctx, p, node.Cond{})
	} else {
		_, err = bn.n.Engine().Set(ctx, p, value, node.Cond{})
	}
	return err
}

// Get reads the value at p.
func (bn *benchNode) Get(ctx context.Context, p tree.Path) ([]byte, bool, error) {
	en, err := bn.n.Engine().Get(ctx, p)
	return en.Value, en.Value != nil, err
}

// clientAddr is the plain client-protocol listener's address.
func (bn *benchNode) clientAddr() string { return bn.n.ClientAddrs()[0].String() }

// startBenchNodes starts nodes with the given names; links[i] lists the
// indexes node i dials. Heartbeats are fast so catch-up is not waiting for
// the clock.
func startBenchNodes(b testing.TB, names []string, links [][]int, mutate func(i int, c *boards.Config)) []*benchNode {
	b.Helper()
	ps := ports(b, len(names))
	var out []*benchNode
	for i, name := range names {
		c := boards.DefaultConfig(name)
		c.Data.Dir = filepath.Join(b.TempDir(), name)
		c.Listen.MQTT = []string{fmt.Sprintf("127.0.0.1:%d", ps[i])}
		c.Listen.Client = ""
		c.Sync.Heartbeat = boards.Duration(200 * time.Millisecond)
		c.LogLevel = boards.LogWarn
		for j := range names {
			if j != i {
				c.PeerUsers = append(c.PeerUsers, boards.PeerUser{Username: names[j], Password: "pw-" + names[j]})
			}
		}
		for _, j := range links[i] {
			c.Peers = append(c.Peers, boards.Link{Name: names[j], Addr: fmt.Sprintf("127.0.0.1:%d", ps[j]), Username: name, Password: "pw-" + name})
		}
		if mutate != nil {
			mutate(i, c)
		}
		out = append(out, runBenchNode(b, c, ps[i]))
	}
	return out
}

// runBenchNode runs the node of c in this process until the test ends.
func runBenchNode(b testing.TB, c *boards.Config, port int, opts ...func(*node.Config)) *benchNode {
	b.Helper()
	if err := c.Validate(); err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := edgekv.New(c, edgekv.Options{Logger: log, Engine: func(ec *node.Config) {
		for _, o := range opts {
			o(ec)
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	bn := &benchNode{n: n, cfg: c, port: port, cancel: cancel, done: make(chan error, 1)}
	go func() { bn.done <- n.Run(ctx) }()
	b.Cleanup(bn.stop)
	select {
	case <-n.Ready():
	case <-time.After(10 * time.Second):
		b.Fatal("node not ready after 10 s")
	}
	if n.Broker().Addrs() == nil {
		b.Fatalf("node did not start: %v", <-bn.done)
	}
	return bn
}

func (bn *benchNode) stop() {
	if bn.cancel == nil {
		return
	}
	bn.cancel()
	<-bn.done
	bn.cancel = nil
	// The test's cleanup keeps bn until the end: let the node's memory go
	// (a benchmark that restarts nodes in every round ran out of memory).
	bn.n = nil
}

func waitPort(b testing.TB, port int) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := (&netDialer{}).dial(port); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatalf("port %d not listening", port)
}

// ports returns n free loopback ports.
func ports(b testing.TB, n int) []int {
	b.Helper()
	var out []int
	for range n {
		c, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		out = append(out, c.Addr().(*net.TCPAddr).Port)
	}
	return out
}

// binary builds the edgekv binary for the benchmarks that start processes.
func binary(b testing.TB) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "edgekv")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// mqttClient connects a paho v5 client to port and calls onMsg for every
// message on the subscribed filter (if any).
func mqttClient(b testing.TB, port int, id, filter string, onMsg func(topic string, payload []byte)) *autopaho.ConnectionManager {
	b.Helper()
	u, _ := url.Parse(fmt.Sprintf("mqtt://127.0.0.1:%d", port))
	ready := make(chan struct{})
	var once sync.Once
	cfg := autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30, CleanStartOnInitialConnection: true,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			if filter != "" {
				if _, err := cm.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter}}}); err != nil {
					return // the broker went away (end of the benchmark)
				}
			}
			once.Do(func() { close(ready) })
		},
		ClientConfig: paho.ClientConfig{ClientID: id},
	}
	if onMsg != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			onMsg(pr.Packet.Topic, pr.Packet.Payload)
			return true, nil
		}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		b.Fatalf("MQTT client %s could not connect to %d", id, port)
	}
	b.Cleanup(func() {
		dctx, c2 := context.WithTimeout(context.Background(), time.Second)
		cm.Disconnect(dctx)
		c2()
		cancel()
	})
	return cm
}

// waitLinks waits until every node has the expected number of sync links.
func waitLinks(b testing.TB, nodes []*benchNode, want []int) {
	b.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ok := true
		for i, bn := range nodes {
			links, err := bn.n.Engine().Links(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			active := 0
			for _, l := range links {
				if l.Active {
					active++
				}
			}
			ok = ok && active >= want[i]
		}
		if ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatal("links did not come up")
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// BenchmarkReplicateMesh3: updates published to board1 over MQTT, counted
// when they arrive as MQTT messages on board3 (full mesh of three edgekv
// processes on loopback, as on three boards; the MQTT clients run in the
// benchmark process). Reports sustained updates/s with 4 publishing
// connections, and p50/p99 propagation latency at a paced 5,000 updates/s.
func BenchmarkReplicateMesh3(b *testing.B) {
	// The MQTT clients share the machine's two cores with the three nodes;
	// keep their garbage collection (paho allocates per packet) from
	// taking more than its share. The nodes run with their own settings.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	nodes := startProcNodes(b, []string{"board1", "board2", "board3"}, [][]int{{1, 2}, {2}, {}}, "sync: {heartbeat: 200ms}\n")
	var got atomic.Int64
	var latMu sync.Mutex
	var lats []time.Duration
	mqttClient(b, nodes[2].port, "sub3", "kv/bench/#", func(topic string, payload []byte) {
		got.Add(1)
		if strings.HasPrefix(topic, "kv/bench/lat/") {
			ns, err := strconv.ParseInt(string(payload), 10, 64)
			if err == nil {
				latMu.Lock()
				lats = append(lats, time.Duration(time.Now().UnixNano()-ns))
				latMu.Unlock()
			}
		}
	})
	const conns = 8
	var pubs []*autopaho.ConnectionManager
	for i := range conns {
		pubs = append(pubs, mqttClient(b, nodes[0].port, fmt.Sprintf("pub%d", i), "", nil))
	}
	const perRound = 20000
	round := 0
	if os.Getenv("EDGEKV_BENCH_LATFIRST") != "" {
		b.Skip("debug")
	}
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		round++
		base := got.Load()
		var wg sync.WaitGroup
		for c, cm := range pubs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := c; i < perRound; i += conns {
					topic := fmt.Sprintf("kv/bench/r%d/%d", round, i)
					if _, err := cm.Publish(context.Background(), &paho.Publish{Topic: topic, Payload: []byte(strconv.Itoa(i)), QoS: 0}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		deadline := time.Now().Add(60 * time.Second)
		for got.Load() < base+perRound {
			if time.Now().After(deadline) {
				b.Fatalf("only %d of %d updates arrived on board3", got.Load()-base, perRound)
			}
			time.Sleep(time.Millisecond)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(round*perRound)/elapsed.Seconds(), "updates/s")
	b.ReportMetric(0, "ns/op")

	// Latency at a paced 5,000 updates/s for 2 s.
	const rate, secs = 5000, 2
	tick := time.NewTicker(time.Second / 1000)
	defer tick.Stop()
	sent := 0
	t0 := time.Now()
	for sent < rate*secs {
		<-tick.C
		due := int(time.Since(t0).Seconds() * rate)
		for ; sent < due && sent < rate*secs; sent++ {
			topic := fmt.Sprintf("kv/bench/lat/%d", sent%2000)
			payload := strconv.FormatInt(time.Now().UnixNano(), 10)
			if _, err := pubs[sent%conns].Publish(context.Background(), &paho.Publish{Topic: topic, Payload: []byte(payload)}); err != nil {
				b.Fatal(err)
			}
		}
	}
	time.Sleep(time.Second)
	latMu.Lock()
	defer latMu.Unlock()
	if len(lats) < rate*secs*9/10 {
		b.Fatalf("only %d of %d paced updates arrived", len(lats), rate*secs)
	}
	if os.Getenv("EDGEKV_BENCH_DEBUG") != "" {
		for i := 0; i < len(lats); i += len(lats) / 20 {
			b.Logf("latency sample %d: %v (max of next chunk %v)", i, lats[i], slices.Max(lats[i:min(len(lats), i+len(lats)/20)]))
		}
	}
	b.ReportMetric(float64(percentile(lats, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lats, 0.99).Microseconds())/1000, "p99-ms")
}

// procNode is an edgekv process started by a benchmark.
type procNode struct{ port, pid int }

// startProcNodes starts real edgekv processes (links[i]: whom node i
// dials) and waits until a write on the first reaches all the others and
// a write on the last reaches the first.
func startProcNodes(b *testing.B, names []string, links [][]int, syncYAML string) []procNode {
	b.Helper()
	bin := binary(b)
	ps := ports(b, len(names))
	dir := b.TempDir()
	var out []procNode
	for i, name := range names {
		var peers strings.Builder
		for _, j := range links[i] {
			fmt.Fprintf(&peers, "  - {name: %s, addr: \"127.0.0.1:%d\", username: %s, password: pw}\n", names[j], ps[j], name)
		}
		cfg := fmt.Sprintf("node: %s\ndata: {dir: %q}\nlisten: {mqtt: [\"127.0.0.1:%d\"], client: \"\"}\nlog_level: warn\n%speer_users:\n%s",
			name, filepath.Join(dir, name), ps[i], syncYAML, peerUsers(names, name))
		if peers.Len() > 0 {
			cfg += "peers:\n" + peers.String()
		}
		f := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
			b.Fatal(err)
		}
		args := []string{"run", "-n", name, "-c", f}
		if base, err := strconv.Atoi(os.Getenv("EDGEKV_BENCH_PPROF")); err == nil {
			// Profiles of node i at 127.0.0.1:base+i (go tool pprof).
			args = append(args, "--pprof", fmt.Sprintf("127.0.0.1:%d", base+i))
		}
		cmd := exec.Command(bin, args...)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			cmd.Process.Signal(os.Interrupt)
			cmd.Wait()
		})
		waitPort(b, ps[i])
		out = append(out, procNode{port: ps[i], pid: cmd.Process.Pid})
	}
	probe := func(from int, to []int, topic string) {
		seen := make(chan struct{}, len(to))
		for _, t := range to {
			mqttClient(b, out[t].port, fmt.Sprintf("probe-%d-%d-%s", from, t, topic), topic, func(string, []byte) { seen <- struct{}{} })
		}
		// The client ids name the topic: with one node, both probes
		// publish on it, and a second client with the same id would
		// take over the first one's session.
		pub := mqttClient(b, out[from].port, fmt.Sprintf("probe-pub-%d-%s", from, topic), "", nil)
		if _, err := pub.Publish(context.Background(), &paho.Publish{Topic: topic, Payload: []byte("1"), QoS: 1}); err != nil {
			b.Fatal(err)
		}
		for range to {
			select {
			case <-seen:
			case <-time.After(20 * time.Second):
				b.Fatalf("%s did not reach every node: links not up", topic)
			}
		}
	}
	all := make([]int, 0, len(out))
	for i := 1; i < len(out); i++ {
		all = append(all, i)
	}
	probe(0, all, "kv/probe/first")
	probe(len(out)-1, []int{0}, "kv/probe/last")
	return out
}

// digestOf summarises a node's tree (node.Summary: entries, and each
// node's tick, ticks seen and heads hash), cheaply: it is polled while the
// nodes catch up.
func digestOf(bn *benchNode) string {
	st, err := bn.n.Engine().Summary(context.Background())
	if err != nil {
		return err.Error()
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d;", st.Entries)
	for _, name := range slices.Sorted(maps.Keys(st.Nodes)) {
		ns := st.Nodes[name]
		fmt.Fprintf(&sb, "%s:%d:%s:%x;", name, ns.Tick, ns.Known, ns.Heads)
	}
	return sb.String()
}

// BenchmarkCatchUpAfterPartition: two nodes share 100,000 entries; during a
// split each changes 1,000 (board2 runs cut off: on another port, dialling
// nobody); then board2 comes back on its port and board1's link to it comes
// up. Measures the time from that link-up to identical trees (target ≤ 1 s).
func BenchmarkCatchUpAfterPartition(b *testing.B) {
	const shared, div = 100_000, 1000
	nodes := startBenchNodes(b, []string{"board1", "board2"}, [][]int{{1}, {}}, nil)
	waitLinks(b, nodes, []int{1, 1})
	ctx := context.Background()
	v := []byte{0xa5, 'v', 'a', 'l', 'u', 'e'}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < shared; i += 4 {
				if err := nodes[0].Write(ctx, tree.Path{tree.Str("shared"), tree.Int(int64(i / 1000)), tree.Int(int64(i))}, v); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitSame := func(what string, limit time.Duration) time.Duration {
		start := time.Now()
		for {
			if digestOf(nodes[0]) == digestOf(nodes[1]) {
				return time.Since(start)
			}
			if time.Since(start) > limit {
				b.Fatalf("%s: trees differ after %v:\n%.300s\n%.300s", what, limit, digestOf(nodes[0]), digestOf(nodes[1]))
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitSame("initial sync", 60*time.Second)
	cfg2 := nodes[1].cfg
	var total time.Duration
	for round := 1; b.Loop(); round++ {
		b.StopTimer()
		// Split: board2 restarts on a port nobody dials.
		nodes[1].stop()
		c := boards.DefaultConfig("board2")
		c.Data.Dir = cfg2.Data.Dir
		cut := ports(b, 1)[0]
		c.Listen.MQTT = []string{fmt.Sprintf("127.0.0.1:%d", cut)}
		c.Listen.Client = ""
		c.Sync.Heartbeat = boards.Duration(200 * time.Millisecond)
		c.LogLevel = boards.LogWarn
		c.PeerUsers = []boards.PeerUser{{Username: "board1", Password: "pw-board1"}}
		isolated := runBenchNode(b, c, cut)
		for i := range div {
			p1 := tree.Path{tree.Str("shared"), tree.Int(int64(i % 100)), tree.Int(int64((round*div + i) % shared))}
			p2 := tree.Path{tree.Str("split"), tree.Int(int64(round)), tree.Int(int64(i))}
			if err := nodes[0].Write(ctx, p1, v); err != nil {
				b.Fatal(err)
			}
			if err := isolated.Write(ctx, p2, v); err != nil {
				b.Fatal(err)
			}
		}
		if digestOf(nodes[0]) == digestOf(isolated) {
			b.Fatal("no divergence to catch up")
		}
		isolated.stop()
		// Heal: board2 back on its own port; time from board1's new
		// link-up (its dialler retries with backoff while board2 is away).
		ups := nodes[0].n.Engine().LinkUps()
		c.Listen.MQTT = []string{fmt.Sprintf("127.0.0.1:%d", nodes[1].port)}
		nodes[1] = runBenchNode(b, c, nodes[1].port)
		for nodes[0].n.Engine().LinkUps() == ups {
			time.Sleep(100 * time.Microsecond)
		}
		b.StartTimer()
		total += waitSame("catch-up", 30*time.Second)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/heal")
}

// BenchmarkBrokerPublish compares QoS 0 publish throughput (one publisher,
// one subscriber, a non-KV topic) of edgekv's broker with its KV hooks on
// against Debian's mosquitto, with the same client workload in one run.
func BenchmarkBrokerPublish(b *testing.B) {
	mosq, err := exec.LookPath("mosquitto")
	if err != nil {
		mosq = "/usr/sbin/mosquitto"
	}
	if _, err := os.Stat(mosq); err != nil {
		b.Fatalf("mosquitto not found: apt-get install mosquitto (.ci/run does)")
	}
	port := ports(b, 1)[0]
	conf := filepath.Join(b.TempDir(), "mosquitto.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n", port)), 0o644)
	cmd := exec.Command(mosq, "-c", conf)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitPort(b, port)
	nodes := startBenchNodes(b, []string{"bench"}, [][]int{{}}, nil)

	const n = 50_000
	run := 0
	rate := func(port int, name string) float64 {
		run++ // fresh client IDs: an old client with the same ID would take over
		var got atomic.Int64
		all := make(chan struct{})
		sub := mqttClient(b, port, fmt.Sprintf("%s-sub-%d", name, run), "bench/t", func(string, []byte) {
			if got.Add(1) == n {
				close(all)
			}
		})
		pub := mqttClient(b, port, fmt.Sprintf("%s-pub-%d", name, run), "", nil)
		defer func() {
			for _, cm := range []*autopaho.ConnectionManager{sub, pub} {
				dctx, cancel := context.WithTimeout(context.Background(), time.Second)
				cm.Disconnect(dctx)
				cancel()
			}
		}()
		payload := []byte(`{"v":21.5}`)
		start := time.Now()
		for range n {
			if _, err := pub.Publish(context.Background(), &paho.Publish{Topic: "bench/t", Payload: payload}); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-all:
		case <-time.After(60 * time.Second):
			b.Logf("%s: only %d of %d delivered", name, got.Load(), n)
		}
		return float64(got.Load()) / time.Since(start).Seconds()
	}
	var ek, mq float64
	for b.Loop() {
		mq += rate(port, "mosquitto")
		ek += rate(nodes[0].port, "edgekv")
	}
	b.ReportMetric(ek/float64(b.N), "edgekv-msg/s")
	b.ReportMetric(mq/float64(b.N), "mosquitto-msg/s")
	b.ReportMetric(ek/mq, "ratio")
}

// BenchmarkIdleNode reports the resident memory and CPU time of a real
// edgekv process holding 10,000 entries with 2 peers, over 60 s of idling.
func BenchmarkIdleNode(b *testing.B) {
	for b.Loop() {
		// Default heartbeat (1 s), as a board would run.
		nodes := startProcNodes(b, []string{"idle1", "idle2", "idle3"}, [][]int{{1, 2}, {2}, {}}, "")
		pub := mqttClient(b, nodes[0].port, "fill", "", nil)
		for i := range 10_000 {
			if _, err := pub.Publish(context.Background(), &paho.Publish{Topic: fmt.Sprintf("kv/idle/%d/%d", i/100, i), Payload: []byte(strconv.Itoa(i)), QoS: 1}); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(5 * time.Second)
		pid := nodes[0].pid
		cpu0 := cpuTicks(b, pid)
		time.Sleep(60 * time.Second)
		cpu1 := cpuTicks(b, pid)
		b.ReportMetric(float64(rssKiB(b, pid))/1024, "RSS-MiB")
		b.ReportMetric(float64(cpu1-cpu0)/100/60*100, "CPU-%")
	}
}

func peerUsers(names []string, self string) string {
	var sb strings.Builder
	for _, n := range names {
		if n != self {
			fmt.Fprintf(&sb, "  - {username: %s, password: pw}\n", n)
		}
	}
	return sb.String()
}

func rssKiB(b testing.TB, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

// cpuTicks returns utime+stime of pid in clock ticks (1/100 s).
func cpuTicks(b testing.TB, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}

// clientNode starts a node as its own process, as users run it (default
// config: sync interval), with its client listener; it returns the
// process's pid and the client address. A node inside the benchmark's
// process would share its scheduler and collector with the client and
// hide what a request costs.
func clientNode(b *testing.B) (pid int, addr string) {
	b.Helper()
	bin := binary(b)
	ps := ports(b, 2)
	dir := b.TempDir()
	cfg := fmt.Sprintf("node: cp\ndata: {dir: %q}\nlisten: {mqtt: [\"127.0.0.1:%d\"], client: \"127.0.0.1:%d\"}\nlog_level: warn\n",
		filepath.Join(dir, "data"), ps[0], ps[1])
	f := filepath.Join(dir, "cp.yaml")
	if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-n", "cp", "-c", f)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	waitPort(b, ps[1])
	return cmd.Process.Pid, fmt.Sprintf("127.0.0.1:%d", ps[1])
}

// nodeCPU reports the node's CPU time per operation (µs) over ops
// operations since ticks0 (cpuTicks).
func nodeCPU(b *testing.B, pid, ticks0, ops int) {
	if ops > 0 {
		b.ReportMetric(float64(cpuTicks(b, pid)-ticks0)*10_000/float64(ops), "node-cpu-µs/op")
	}
}

func dialClient(b *testing.B, addr string) *kvclient.Client {
	b.Helper()
	c, err := kvclient.Dial(context.Background(), addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// roundTrips runs op b.N times, sequentially, and reports p50/p99.
func roundTrips(b *testing.B, op func(i int) error) {
	lats := make([]time.Duration, 0, 1<<16)
	i := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if err := op(i); err != nil {
			b.Fatal(err)
		}
		lats = append(lats, time.Since(t0))
		i++
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(lats, 0.50).Nanoseconds())/1000, "p50-µs")
	b.ReportMetric(float64(percentile(lats, 0.99).Nanoseconds())/1000, "p99-µs")
}

// BenchmarkClientSet: one client, sequential set_value round trips over
// loopback (target p50 ≤ 60 µs; MoaT-KV's Python server: 1.2–1.9 ms).
func BenchmarkClientSet(b *testing.B) {
	pid, addr := clientNode(b)
	c := dialClient(b, addr)
	ctx := context.Background()
	v := msgp.AppendFloat64(nil, 21.5)
	t0 := cpuTicks(b, pid)
	roundTrips(b, func(i int) error {
		_, err := c.Set(ctx, tree.Path{tree.Str("bench"), tree.Int(int64(i % 1000))}, v, kvclient.WriteOpts{})
		return err
	})
	nodeCPU(b, pid, t0, b.N)
}

// BenchmarkClientGet: one client, sequential get_value round trips.
func BenchmarkClientGet(b *testing.B) {
	pid, addr := clientNode(b)
	c := dialClient(b, addr)
	ctx := context.Background()
	for i := range 1000 {
		if _, err := c.Set(ctx, tree.Path{tree.Str("bench"), tree.Int(int64(i))}, msgp.AppendInt(nil, i), kvclient.WriteOpts{}); err != nil {
			b.Fatal(err)
		}
	}
	t0 := cpuTicks(b, pid)
	roundTrips(b, func(i int) error {
		_, _, err := c.Get(ctx, tree.Path{tree.Str("bench"), tree.Int(int64(i % 1000))}, 0)
		return err
	})
	nodeCPU(b, pid, t0, b.N)
}

// BenchmarkClientSetParallel: 16 connections setting at once (target
// ≥ 100,000 sets/s). The protocol runs a connection's requests
// concurrently, as MoaT-KV clients do; the sub-benchmarks vary how many
// requests each connection keeps in flight (1 is 16 sequential clients).
func BenchmarkClientSetParallel(b *testing.B) {
	for _, inflight := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			clientSetParallel(b, 16, inflight)
		})
	}
}

func clientSetParallel(b *testing.B, conns, inflight int) {
	pid, addr := clientNode(b)
	clients := make([]*kvclient.Client, conns)
	for i := range clients {
		clients[i] = dialClient(b, addr)
	}
	ctx := context.Background()
	v := msgp.AppendFloat64(nil, 21.5)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	t0 := cpuTicks(b, pid)
	var wg sync.WaitGroup
	for k := range conns * inflight {
		c := clients[k%conns]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if _, err := c.Set(ctx, tree.Path{tree.Str("par"), tree.Int(i % 10000)}, v, kvclient.WriteOpts{}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "sets/s")
	nodeCPU(b, pid, t0, b.N)
}

// BenchmarkNodeMemory: a node process is given 100,000 keys of 16-byte
// values through the client protocol (16 connections, 16 requests in
// flight each); reports its resident memory per key (after the load, two
// seconds later, with the connections still open, minus at start), and
// after a restart on that data, and its CPU time per set (issue 9's
// figures: 2.7 KB per key before the broker stopped keeping a copy).
func BenchmarkNodeMemory(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		bin := binary(b)
		ps := ports(b, 2)
		dir := b.TempDir()
		cfg := filepath.Join(dir, "mem.yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("node: mem\ndata: {dir: %q}\nlisten: {mqtt: [\"127.0.0.1:%d\"], client: \"127.0.0.1:%d\"}\nlog_level: warn\n",
			filepath.Join(dir, "data"), ps[0], ps[1])), 0o644)
		start := func() *exec.Cmd {
			cmd := exec.Command(bin, "run", "-n", "mem", "-c", cfg)
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			waitPort(b, ps[1])
			return cmd
		}
		stop := func(cmd *exec.Cmd) {
			cmd.Process.Signal(os.Interrupt)
			cmd.Wait()
		}
		cmd := start()
		time.Sleep(2 * time.Second)
		rss0 := rssKiB(b, cmd.Process.Pid)
		addr := fmt.Sprintf("127.0.0.1:%d", ps[1])
		var clients []*kvclient.Client
		for range 16 {
			c, err := kvclient.Dial(context.Background(), addr)
			if err != nil {
				b.Fatal(err)
			}
			clients = append(clients, c)
		}
		t0 := cpuTicks(b, cmd.Process.Pid)
		loadKeys(b, len(clients), n, func(c, i int) error {
			v := msgp.AppendString(nil, fmt.Sprintf("%016d", i))
			_, err := clients[c].Set(context.Background(), tree.Path{tree.Str("mem"), tree.Int(int64(i))}, v, kvclient.WriteOpts{})
			return err
		})
		cpu := cpuTicks(b, cmd.Process.Pid) - t0
		time.Sleep(2 * time.Second)
		rss1 := rssKiB(b, cmd.Process.Pid)
		for _, c := range clients {
			c.Close()
		}
		stop(cmd)
		cmd = start()
		time.Sleep(2 * time.Second)
		rss2 := rssKiB(b, cmd.Process.Pid)
		stop(cmd)
		b.ReportMetric(float64(rss1-rss0)*1024/n, "B/key")
		b.ReportMetric(float64(rss2-rss0)*1024/n, "restarted-B/key")
		b.ReportMetric(float64(cpu)*10_000/n, "node-cpu-µs/set")
		b.ReportMetric(float64(rss0)/1024, "start-MiB")
	}
}

// BenchmarkWatchFanout: 100 watchers on one subtree while updates arrive
// at 2,000/s for 10 s (200,000 deliveries/s); none may be dropped. Reports
// the p99 delivery latency.
func BenchmarkWatchFanout(b *testing.B) {
	_, addr := clientNode(b)
	wr := dialClient(b, addr)
	const watchers, rate, secs = 100, 2000, 10
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex
		var lats []time.Duration
		var got atomic.Int64
		ready := make(chan struct{}, watchers)
		var wg sync.WaitGroup
		for w := range watchers {
			c := dialClient(b, addr)
			wg.Add(1)
			go func() {
				defer wg.Done()
				live := false // only changes after the initial entries count
				c.Watch(ctx, tree.Path{tree.Str("fan")}, true, func(it kvclient.Item) error {
					if it.UpToDate {
						live = true
						ready <- struct{}{}
						return nil
					}
					if !live {
						return nil // an earlier iteration's entry
					}
					ns, _, err := msgp.ReadInt64Bytes(it.Value)
					if err == nil {
						d := time.Duration(time.Now().UnixNano() - ns)
						mu.Lock()
						lats = append(lats, d)
						mu.Unlock()
						got.Add(1)
					}
					return nil
				})
			}()
			_ = w
		}
		for range watchers {
			<-ready
		}
		t0 := time.Now()
		sent := 0
		for sent < rate*secs {
			due := int(time.Since(t0).Seconds() * rate)
			for ; sent < due && sent < rate*secs; sent++ {
				v := msgp.AppendInt64(nil, time.Now().UnixNano())
				if _, err := wr.Set(ctx, tree.Path{tree.Str("fan"), tree.Int(int64(sent % 100))}, v, kvclient.WriteOpts{}); err != nil {
					b.Fatal(err)
				}
			}
			time.Sleep(time.Millisecond)
		}
		deadline := time.Now().Add(10 * time.Second)
		for got.Load() < int64(watchers*rate*secs) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		wg.Wait()
		if n := got.Load(); n != int64(watchers*rate*secs) {
			b.Fatalf("%d of %d deliveries arrived", n, watchers*rate*secs)
		}
		mu.Lock()
		b.ReportMetric(float64(len(lats))/float64(secs), "deliveries/s")
		b.ReportMetric(float64(percentile(lats, 0.99).Microseconds())/1000, "p99-ms")
		mu.Unlock()
	}
}

// BenchmarkNodeStart1M: a node process is given 1,000,000 keys through the
// client protocol, idles until it has written a snapshot (the log passes
// 64 MiB; checked every 30 s), and is stopped; reports the time from
// starting it again to its first answered get_value, and the snapshot
// and log it loaded.
func BenchmarkNodeStart1M(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		bin := binary(b)
		ps := ports(b, 2)
		dir := b.TempDir()
		data := filepath.Join(dir, "data")
		cfg := filepath.Join(dir, "start.yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("node: start\ndata: {dir: %q}\nlisten: {mqtt: [\"127.0.0.1:%d\"], client: \"127.0.0.1:%d\"}\nlog_level: warn\n",
			data, ps[0], ps[1])), 0o644)
		addr := fmt.Sprintf("127.0.0.1:%d", ps[1])
		cmd := exec.Command(bin, "run", "-n", "start", "-c", cfg)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		first := cmd
		b.Cleanup(func() { first.Process.Kill(); first.Wait() })
		waitPort(b, ps[1])
		var clients []*kvclient.Client
		for range 16 {
			clients = append(clients, dialClient(b, addr))
		}
		loadKeys(b, len(clients), n, func(c, i int) error {
			_, err := clients[c].Set(context.Background(), tree.Path{tree.Str("s"), tree.Int(int64(i))}, msgp.AppendInt(nil, i), kvclient.WriteOpts{})
			return err
		})
		// Wait for the snapshot (the log has passed 64 MiB).
		deadline := time.Now().Add(90 * time.Second)
		for !hasSnapshot(data) && time.Now().Before(deadline) {
			time.Sleep(time.Second)
		}
		for _, c := range clients {
			c.Close()
		}
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		snap, logs := storeSizes(b, data)
		t0 := time.Now()
		cmd = exec.Command(bin, "run", "-n", "start", "-c", cfg)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) // also when the wait below fails
		var took time.Duration
		for {
			c, err := kvclient.Dial(context.Background(), addr)
			if err == nil {
				_, found, err := c.Get(context.Background(), tree.Path{tree.Str("s"), tree.Int(n)}, 0)
				c.Close()
				if err == nil && found {
					took = time.Since(t0)
					break
				}
			}
			if time.Since(t0) > 60*time.Second {
				b.Fatal("the node did not answer within 60 s of its start")
			}
			time.Sleep(5 * time.Millisecond)
		}
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		b.ReportMetric(took.Seconds(), "start-s")
		b.ReportMetric(float64(snap)/(1<<20), "snapshot-MiB")
		b.ReportMetric(float64(logs)/(1<<20), "log-MiB")
	}
}

// loadKeys calls set(conn, i) for i = 1…n from 16 goroutines per
// connection (conns connections, 16 requests in flight on each).
func loadKeys(b testing.TB, conns, n int, set func(conn, i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for k := range conns * 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				if err := set(k%conns, int(i)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func hasSnapshot(dir string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, "snap-*.ekv")) // not a snapshot being written
	return len(m) > 0
}

// storeSizes returns the bytes of the snapshots and of the log segments
// in a data directory.
func storeSizes(b *testing.B, dir string) (snap, logs int64) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			b.Fatal(err)
		}
		switch {
		case strings.HasPrefix(e.Name(), "snap-") && strings.HasSuffix(e.Name(), ".ekv"):
			snap += fi.Size()
		case strings.HasPrefix(e.Name(), "log-"):
			logs += fi.Size()
		}
	}
	return snap, logs
}

// BenchmarkSimSensors100 is the cost of polling: a node process with 100
// simulated thermometers read every second, each reading written (no
// deadband), beside a node without sensors in the same run; CPU-% is the
// node's share of one core over 30 s, and the difference is what the
// sensors cost.
func BenchmarkSimSensors100(b *testing.B) {
	var sensors strings.Builder
	sensors.WriteString("hardware:\n  sensors:\n")
	for i := range 100 {
		fmt.Fprintf(&sensors, "    - {device: sim-%d, path: bench.temp.s%d, interval: 1s}\n", i, i)
	}
	for b.Loop() {
		with := startProcNodes(b, []string{"sensors"}, [][]int{{}}, sensors.String())[0]
		without := startProcNodes(b, []string{"plain"}, [][]int{{}}, "")[0]
		time.Sleep(3 * time.Second)
		w0, p0 := cpuTicks(b, with.pid), cpuTicks(b, without.pid)
		time.Sleep(30 * time.Second)
		w1, p1 := cpuTicks(b, with.pid), cpuTicks(b, without.pid)
		// The readings are there: every sensor's topic in 3 s.
		var mu sync.Mutex
		seen := map[string]bool{}
		mqttClient(b, with.port, "sensors-check", "kv/bench/temp/#", func(topic string, _ []byte) {
			mu.Lock()
			seen[topic] = true
			mu.Unlock()
		})
		time.Sleep(3 * time.Second)
		mu.Lock()
		if len(seen) != 100 {
			b.Fatalf("%d of 100 sensors' topics seen", len(seen))
		}
		mu.Unlock()
		b.ReportMetric(float64(w1-w0)/30, "CPU-%")
		b.ReportMetric(float64(p1-p0)/30, "without-CPU-%")
		b.ReportMetric(float64(rssKiB(b, with.pid))/1024, "RSS-MiB")
	}
}

// BenchmarkJobEventToAction: a node process runs a job that watches "in"
// and writes "out" on each change; a client sets "in" and waits for its
// watch of "out" to bring the value back (what a user of a job feels:
// one client round trip, the job's activation, the watch's delivery).
// Beside it, the same round trip with no job: the client sets "out"
// itself and waits for its watch (the floor).
func BenchmarkJobEventToAction(b *testing.B) {
	pid, addr := clientNode(b)
	c := dialClient(b, addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code, _ := tree.AppendValue(nil, map[string]any{"code": `if event.type == "start" { kv.watch("in", false) } else if event.type == "change" { kv.set("out", event.value) }`})
	job, _ := tree.AppendValue(nil, map[string]any{"code": tree.Path{tree.Str("echo")}, "target": float64(time.Now().Unix())})
	pre := func(s ...string) tree.Path {
		p := tree.Path{tree.Str(".moat"), tree.Str("kv")}
		for _, e := range s {
			p = append(p, tree.Str(e))
		}
		return p
	}
	if _, err := c.Set(ctx, pre("code", "proc", "echo"), code, kvclient.WriteOpts{}); err != nil {
		b.Fatal(err)
	}
	got := make(chan int64, 64)
	wc := dialClient(b, addr)
	go wc.Watch(ctx, tree.Path{tree.Str("out")}, false, func(it kvclient.Item) error {
		if v, _, err := msgp.ReadInt64Bytes(it.Value); err == nil {
			got <- v
		}
		return nil
	})
	seq := int64(0)
	wait := func(v int64) {
		for x := range got {
			if x == v {
				return
			}
		}
	}
	for _, withJob := range []bool{false, true} {
		name := "floor"
		target := tree.Path{tree.Str("out")}
		if withJob {
			name, target = "job", tree.Path{tree.Str("in")}
			if _, err := c.Set(ctx, pre("run", "at", "cp", "default", "echo"), job, kvclient.WriteOpts{}); err != nil {
				b.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond) // the job starts and watches
		}
		b.Run(name, func(b *testing.B) {
			t0 := cpuTicks(b, pid)
			roundTrips(b, func(int) error {
				seq++
				if _, err := c.Set(ctx, target, msgp.AppendInt64(nil, seq), kvclient.WriteOpts{}); err != nil {
					return err
				}
				wait(seq)
				return nil
			})
			nodeCPU(b, pid, t0, b.N)
		})
	}
}
