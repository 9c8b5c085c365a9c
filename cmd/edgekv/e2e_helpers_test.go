package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

// End-to-end helpers: real edgekv processes on loopback ports, real MQTT
// clients (Debian's mosquitto-clients, installed by .ci/run).

var (
	e2eOnce sync.Once
	e2eBin  string
	e2eErr  error
)

// TestMain removes the binary that edgekvBinary built, and fails the run
// if a goroutine of the tests (an in-process node, a client) outlives them.
func TestMain(m *testing.M) {
	code := m.Run()
	if e2eBin != "" {
		_ = os.RemoveAll(filepath.Dir(e2eBin))
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked by the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// edgekvBinary builds the binary once per test run.
func edgekvBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: skipped in -short mode")
	}
	e2eOnce.Do(func() {
		dir, err := os.MkdirTemp("", "edgekv-e2e-")
		if err != nil {
			e2eErr = err
			return
		}
		e2eBin = filepath.Join(dir, "edgekv")
		out, err := exec.Command("go", "build", "-o", e2eBin, ".").CombinedOutput()
		if err != nil {
			e2eErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if e2eErr != nil {
		t.Fatal(e2eErr)
	}
	return e2eBin
}

// needTool fails (not skips) when a required client is missing, naming the
// Debian package: CI installs it, so a missing tool is a setup defect.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/" + name); err2 == nil {
			return "/usr/sbin/" + name
		}
		t.Fatalf("%s not found: install Debian's %s (apt-get install %s); .ci/run does this", name, pkg, pkg)
	}
	return p
}

// freePorts returns n distinct free loopback ports.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// proc is one running edgekv process.
type proc struct {
	t       *testing.T
	name    string
	args    []string
	cmd     *exec.Cmd
	log     *bytes.Buffer
	logMu   *sync.Mutex
	mqtt    int
	done    chan struct{}
	exitErr error
}

type lockedBuffer struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// startNode starts `edgekv run -n name -c cfg` and waits for its MQTT port.
func startNode(t *testing.T, name, cfg string, mqttPort int) *proc {
	t.Helper()
	p := &proc{t: t, name: name, args: []string{"run", "-n", name, "-c", cfg}, mqtt: mqttPort, log: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	p.start()
	t.Cleanup(func() {
		p.stop(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("--- log of %s:\n%s", p.name, p.Log())
		}
	})
	return p
}

func (p *proc) start() {
	p.t.Helper()
	p.cmd = exec.Command(edgekvBinary(p.t), p.args...)
	w := lockedBuffer{p.logMu, p.log}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		p.exitErr = cmd.Wait()
		close(done)
	}(p.cmd, p.done)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.mqtt), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-p.done:
			p.t.Fatalf("%s exited during start-up: %v\n%s", p.name, p.exitErr, p.Log())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: MQTT port %d not listening after 15 s\n%s", p.name, p.mqtt, p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends sig and waits for the process to end (at most 10 s).
func (p *proc) stop(sig syscall.Signal) (took time.Duration) {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	select {
	case <-p.done:
		return 0
	default:
	}
	start := time.Now()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return time.Since(start)
}

func (p *proc) Log() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.log.String()
}

// restart starts the process again with the same arguments.
func (p *proc) restart() {
	p.t.Helper()
	p.start()
}

// pub publishes with mosquitto_pub (QoS 1); an empty payload deletes.
func pub(t *testing.T, port int, topic, payload string, extra ...string) {
	t.Helper()
	args := []string{"-h", "127.0.0.1", "-p", fmt.Sprint(port), "-q", "1", "-V", "mqttv5", "-t", topic}
	if payload == "" {
		args = append(args, "-n")
	} else {
		args = append(args, "-m", payload)
	}
	args = append(args, extra...)
	out, err := exec.Command(needTool(t, "mosquitto_pub", "mosquitto-clients"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub %s: %v\n%s", topic, err, out)
	}
}

// retained returns the retained payload of topic on the broker at port, or
// ok=false if there is none (it waits wait for one to appear).
func retained(t *testing.T, port int, topic string, wait time.Duration) (string, bool) {
	t.Helper()
	secs := max(1, int(wait.Seconds()))
	cmd := exec.Command(needTool(t, "mosquitto_sub", "mosquitto-clients"), "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-V", "mqttv5",
		"-t", topic, "-C", "1", "-W", fmt.Sprint(secs), "--retained-only")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 27 { // -W timed out
		return "", false
	}
	if err != nil {
		t.Fatalf("mosquitto_sub %s: %v", topic, err)
	}
	return strings.TrimRight(string(out), "\n"), true
}

// eventually retries f until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, timeout, err)
}

// dumpRetained collects every retained message under prefix/# on a broker:
// the node's whole tree as MQTT sees it.
func dumpRetained(t *testing.T, port int, prefix string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, needTool(t, "mosquitto_sub", "mosquitto-clients"), "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-V", "mqttv5",
		"-t", prefix+"/#", "-v", "--retained-only", "-W", "1")
	out, _ := cmd.Output() // ends with exit 27 after 1 s of silence
	m := make(map[string]string)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		m[k] = v
	}
	return m
}

type netDialer struct{}

func (netDialer) dial(port int) (net.Conn, error) {
	return net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
}

// e2eLink is a broker a test node dials: a peer (another edgekv node, named
// by its node name) or a hub (an external broker).
type e2eLink struct {
	name string
	port int
}

// e2eCfg describes the board config of a test node. Peers are dialled with
// the node's own name as username and peerPassword(name) as password; each
// name in peerUsers may dial this node the same way. Hubs are dialled
// anonymously.
type e2eCfg struct {
	name      string
	port      int // MQTT listener on 127.0.0.1
	data      string
	sync      string // data.sync; "" is interval
	peers     []e2eLink
	hubs      []e2eLink
	peerUsers []string
	extra     string // more top-level YAML, e.g. "kv:\n  max_payload_bytes: 4096\n"
	client    int    // client-protocol port on 127.0.0.1; 0: none
	heartbeat string // sync.heartbeat; "" is 200ms, "default" leaves it out (1s)
	syncExtra string // more keys under sync:, each line indented by two spaces
}

func peerPassword(user string) string { return "pw-" + user }

// writeNodeConfig writes c as a YAML board config at path: heartbeat 200ms (so
// status entries are written every second), the client-protocol listener
// off.
func writeNodeConfig(t *testing.T, path string, c e2eCfg) string {
	t.Helper()
	var b strings.Builder
	sync := c.sync
	if sync == "" {
		sync = "interval"
	}
	fmt.Fprintf(&b, "node: %s\nboard: sim\nlog_level: info\n", c.name)
	fmt.Fprintf(&b, "data:\n  dir: %q\n  sync: %s\n", c.data, sync)
	client := `""`
	if c.client != 0 {
		client = fmt.Sprintf("127.0.0.1:%d", c.client)
	}
	fmt.Fprintf(&b, "listen:\n  mqtt: [\"127.0.0.1:%d\"]\n  client: %s\n", c.port, client)
	var syncKeys string
	switch c.heartbeat {
	case "":
		syncKeys = "  heartbeat: 200ms\n"
	case "default":
	default:
		syncKeys = fmt.Sprintf("  heartbeat: %s\n", c.heartbeat)
	}
	if syncKeys += c.syncExtra; syncKeys != "" {
		b.WriteString("sync:\n" + syncKeys)
	}
	if len(c.peers) > 0 {
		b.WriteString("peers:\n")
		for _, p := range c.peers {
			fmt.Fprintf(&b, "  - name: %s\n    addr: 127.0.0.1:%d\n    username: %s\n    password: %s\n", p.name, p.port, c.name, peerPassword(c.name))
		}
	}
	if len(c.hubs) > 0 {
		b.WriteString("hubs:\n")
		for _, h := range c.hubs {
			fmt.Fprintf(&b, "  - name: %s\n    addr: 127.0.0.1:%d\n", h.name, h.port)
		}
	}
	if len(c.peerUsers) > 0 {
		b.WriteString("peer_users:\n")
		for _, u := range c.peerUsers {
			fmt.Fprintf(&b, "  - username: %s\n    password: %s\n", u, peerPassword(u))
		}
	}
	b.WriteString(c.extra)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startNodeCfg writes c into dir (as <name><suffix>.yaml) and starts it.
func startNodeCfg(t *testing.T, dir, suffix string, c e2eCfg) *proc {
	t.Helper()
	path := writeNodeConfig(t, filepath.Join(dir, c.name+suffix+".yaml"), c)
	return startNode(t, c.name, path, c.port)
}

// exited reports how the process ended: nil for exit status 0.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return p.exitErr
	default:
		return errors.New("still running")
	}
}

var clientSeq atomic.Int64

// dialMQTT connects a paho MQTT v5 client to the broker on port (user ""
// connects anonymously). onMsg, if not nil, sees every publish received,
// on paho's goroutine. The client is disconnected when the test ends.
func dialMQTT(t *testing.T, port int, id, user, pass string, onMsg func(*paho.Publish)) *paho.Client {
	t.Helper()
	c, err := tryDialMQTT(port, id, user, pass, onMsg)
	if err != nil {
		t.Fatalf("MQTT connect to port %d as %q: %v", port, user, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

func tryDialMQTT(port int, id, user, pass string, onMsg func(*paho.Publish)) (*paho.Client, error) {
	if id == "" {
		id = fmt.Sprintf("e2e-%d-%d", os.Getpid(), clientSeq.Add(1))
	}
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		return nil, err
	}
	cfg := paho.ClientConfig{ClientID: id, Conn: conn, OnClientError: func(error) {}}
	if onMsg != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { onMsg(pr.Packet); return true, nil },
		}
	}
	c := paho.NewClient(cfg)
	cp := &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true}
	if user != "" {
		cp.Username, cp.UsernameFlag = user, true
		cp.Password, cp.PasswordFlag = []byte(pass), true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, cp); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// publishQoS1 publishes and returns the PUBACK's reason code; err is set
// only when no PUBACK arrived (a refusal is a reason code >= 0x80).
func publishQoS1(c *paho.Client, topic string, payload []byte) (byte, error) {
	return publishQoS1Ctx(context.Background(), c, topic, payload)
}

// publishQoS1Ctx is publishQoS1 bounded by ctx (and 5 s).
func publishQoS1Ctx(ctx context.Context, c *paho.Client, topic string, payload []byte) (byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	if resp != nil {
		return resp.ReasonCode, nil
	}
	return 0, err
}

// mustPublish publishes with QoS 1 and fails unless the PUBACK is a success.
func mustPublish(t *testing.T, c *paho.Client, topic, payload string) {
	t.Helper()
	code, err := publishQoS1(c, topic, []byte(payload))
	if err != nil || code >= 0x80 {
		t.Fatalf("publish %s %q: reason 0x%02x, %v", topic, payload, code, err)
	}
}

// entry is a retained KV message: JSON payload and the version carried in
// the MQTT v5 user properties.
type entry struct {
	Payload    string
	Node       string
	Tick, Tock uint64
}

// dumpEntries returns every retained message matching filter on the broker
// at port, with its user properties. It subscribes to filter and to a
// sentinel topic of its own, then publishes to the sentinel: mochi queues
// the retained messages of a subscription before it handles the client's
// next packet, so once the sentinel is back, the dump is complete.
func dumpEntries(t *testing.T, port int, filter string) map[string]entry {
	t.Helper()
	id := fmt.Sprintf("e2e-dump-%d-%d", os.Getpid(), clientSeq.Add(1))
	sentinel := "e2e/sentinel/" + id
	var mu sync.Mutex
	got := make(map[string]entry)
	done := make(chan struct{})
	c := dialMQTT(t, port, id, "", "", func(p *paho.Publish) {
		if p.Topic == sentinel {
			close(done)
			return
		}
		if !p.Retain {
			return // a live change, not part of the dump
		}
		e := entry{Payload: string(p.Payload)}
		if p.Properties != nil {
			e.Node = p.Properties.User.Get("node")
			e.Tick, _ = strconv.ParseUint(p.Properties.User.Get("tick"), 10, 64)
			e.Tock, _ = strconv.ParseUint(p.Properties.User.Get("tock"), 10, 64)
		}
		mu.Lock()
		got[p.Topic] = e
		mu.Unlock()
	})
	defer c.Disconnect(&paho.Disconnect{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: filter, QoS: 0}, {Topic: sentinel, QoS: 0},
	}}); err != nil {
		t.Fatalf("subscribe %s on port %d: %v", filter, port, err)
	}
	if _, err := c.Publish(ctx, &paho.Publish{Topic: sentinel, QoS: 0, Payload: []byte("x")}); err != nil {
		t.Fatalf("publish sentinel on port %d: %v", port, err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("dump of %s on port %d: sentinel not back within 10 s", filter, port)
	}
	mu.Lock()
	defer mu.Unlock()
	return maps.Clone(got)
}

// withoutStatus drops the node status entries (kv/.edgekv/...), which each
// node rewrites as its links and counters change.
func withoutStatus(m map[string]entry) map[string]entry {
	out := make(map[string]entry, len(m))
	for k, v := range m {
		if !strings.HasPrefix(k, "kv/.edgekv/") {
			out[k] = v
		}
	}
	return out
}

// syncCounters decodes node's sync counters from a dump; nil if absent.
func syncCounters(t *testing.T, dump map[string]entry, node string) map[string]int {
	t.Helper()
	e, ok := dump["kv/.edgekv/status/"+node+"/sync"]
	if !ok {
		return nil
	}
	var m map[string]int
	if err := json.Unmarshal([]byte(e.Payload), &m); err != nil {
		t.Fatalf("sync counters of %s: %v: %s", node, err, e.Payload)
	}
	return m
}

// waitValue waits until topic's retained payload on port is want.
func waitValue(t *testing.T, port int, topic, want string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("%s = %s on port %d", topic, want, port), func() error {
		e, ok := dumpEntries(t, port, topic)[topic]
		if !ok {
			return errors.New("no retained message")
		}
		if e.Payload != want {
			return fmt.Errorf("payload %s", e.Payload)
		}
		return nil
	})
}

// waitGone waits until topic has no retained message on port.
func waitGone(t *testing.T, port int, topic string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("%s gone on port %d", topic, port), func() error {
		if e, ok := dumpEntries(t, port, topic)[topic]; ok {
			return fmt.Errorf("still retained: %s", e.Payload)
		}
		return nil
	})
}

// startMosquitto runs Debian's mosquitto on a free loopback port, anonymous
// and without persistence, until the test ends.
func startMosquitto(t *testing.T) int {
	t.Helper()
	bin := needTool(t, "mosquitto", "mosquitto")
	port := freePorts(t, 1)[0]
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n", port)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	var logMu sync.Mutex
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = lockedBuffer{&logMu, &log}, lockedBuffer{&logMu, &log}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			logMu.Lock()
			t.Logf("--- log of mosquitto:\n%s", log.String())
			logMu.Unlock()
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return port
		}
		select {
		case <-done:
			logMu.Lock()
			defer logMu.Unlock()
			t.Fatalf("mosquitto exited during start-up:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto: port %d not listening after 10 s", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tcpProxy forwards connections from a loopback port of its own to a
// target port. Cut drops every connection through it and refuses new ones
// (accepted and closed at once) until Heal: a network split between the
// nodes on its two sides, with the processes left running.
type tcpProxy struct {
	t      *testing.T
	ln     net.Listener
	target int
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target int) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{t: t, ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// Port is where the proxy listens.
func (p *tcpProxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.target))
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := src.Read(buf)
				if n > 0 {
					if _, werr := dst.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		go pipe(up, c)
		go pipe(c, up)
	}
}

// Cut drops every connection and refuses new ones.
func (p *tcpProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Heal lets connections through again.
func (p *tcpProxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// meshViaProxies is meshCfgs with every link going through a proxy of its
// own: proxies[[2]int{i, j}] carries node i's link to node j.
func meshViaProxies(t *testing.T, dir string, ports []int) ([]e2eCfg, map[[2]int]*tcpProxy) {
	cfgs := meshCfgs(dir, ports)
	proxies := make(map[[2]int]*tcpProxy)
	for i := range cfgs {
		for k, l := range cfgs[i].peers {
			j := slices.IndexFunc(cfgs, func(c e2eCfg) bool { return c.name == l.name })
			p := newProxy(t, ports[j])
			proxies[[2]int{i, j}] = p
			cfgs[i].peers[k].port = p.Port()
		}
	}
	return cfgs, proxies
}

// isolate cuts (or heals) every proxy of a link to or from node n.
func isolate(proxies map[[2]int]*tcpProxy, n int, cut bool) {
	for k, p := range proxies {
		if k[0] == n || k[1] == n {
			if cut {
				p.Cut()
			} else {
				p.Heal()
			}
		}
	}
}

// waitIdentical waits until the nodes on ports hold identical trees (every
// entry but the status entries, which keep changing) and returns it.
func waitIdentical(t *testing.T, cfgs []e2eCfg, ports []int) map[string]entry {
	t.Helper()
	var final map[string]entry
	eventually(t, convergeWait, "identical trees after the heal", func() error {
		first := withoutStatus(dumpEntries(t, ports[0], "kv/#"))
		for i := 1; i < len(ports); i++ {
			if diff := cmp.Diff(first, withoutStatus(dumpEntries(t, ports[i], "kv/#"))); diff != "" {
				return fmt.Errorf("%s and %s differ (-%s +%s):\n%.3000s", cfgs[0].name, cfgs[i].name, cfgs[0].name, cfgs[i].name, diff)
			}
		}
		final = first
		return nil
	})
	return final
}
