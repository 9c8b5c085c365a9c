package broker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgekv/edgekv/internal/testcert"
	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// TestMain fails the run if goroutines of mochi, paho or this package
// outlive the tests (STYLE.md: goroutine-leak check in I/O packages).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaks := leakedGoroutines(5 * time.Second); leaks != "" {
			fmt.Fprintf(os.Stderr, "goroutines leaked by the tests:\n%s\n", leaks)
			code = 1
		}
	}
	os.Exit(code)
}

func leakedGoroutines(wait time.Duration) string {
	deadline := time.Now().Add(wait)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		stacks := strings.Split(string(buf), "\n\n")[1:] // [0] is this goroutine
		var leaks []string
		for _, s := range stacks {
			if strings.Contains(s, "mochi-mqtt/server") || strings.Contains(s, "paho.golang") ||
				strings.Contains(s, "edgekv/broker.") {
				leaks = append(leaks, s)
			}
		}
		if len(leaks) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaks, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fakeTree records writes; fail (if set) decides errors; gate (if set)
// holds each write until it is closed or the context ends.
type fakeTree struct {
	mu      sync.Mutex
	writes  []treeWrite
	fail    func(tree.Path, []byte) error
	gate    chan struct{}
	started chan struct{}               // receives one value per Write call
	after   func(p tree.Path, v []byte) // called after a recorded write

	// The entries that Entries walks (testBroker.put), guarded by emu
	// as the engine's goroutine orders cursors and published changes.
	emu        sync.Mutex
	entries    map[string]Entry
	beforeNext func(chunk int) // if set, called before each cursor step (not under emu)
}

// Entries implements Tree over the entries put.
func (f *fakeTree) Entries(p tree.Path, depth int) EntryCursor {
	return &fakeCursor{f: f, root: p.Clone(), depth: depth}
}

// fakeCursor visits the entries after the last one it gave, in canonical
// order, 256 at a time.
type fakeCursor struct {
	f       *fakeTree
	root    tree.Path
	depth   int
	started bool
	last    tree.Path
	chunks  int
}

func (c *fakeCursor) Next(ctx context.Context, fn func([]Entry)) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if c.f.beforeNext != nil {
		c.f.beforeNext(c.chunks)
	}
	c.chunks++
	c.f.emu.Lock()
	defer c.f.emu.Unlock()
	var es []Entry
	for _, e := range c.f.entries {
		if !e.Path.HasPrefix(c.root) || (c.depth >= 0 && len(e.Path)-len(c.root) > c.depth) {
			continue
		}
		if c.started && e.Path.Compare(c.last) <= 0 {
			continue
		}
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b Entry) int { return a.Path.Compare(b.Path) })
	more := len(es) > 256
	es = es[:min(len(es), 256)]
	if len(es) > 0 {
		c.started, c.last = true, es[len(es)-1].Path
	}
	fn(es)
	return more, nil
}

// put sets the entry at p (value nil: deletes it) and publishes the
// change, as the node does: in order with the cursors' steps.
func (tb *testBroker) put(p tree.Path, value []byte, node string, tick, tock uint64) error {
	f := tb.tree
	f.emu.Lock()
	defer f.emu.Unlock()
	if f.entries == nil {
		f.entries = map[string]Entry{}
	}
	if value == nil {
		delete(f.entries, p.String())
	} else {
		f.entries[p.String()] = Entry{Path: p.Clone(), Value: slices.Clone(value), Node: node, Tick: tick, Tock: tock}
	}
	return tb.PublishEntry(p, value, node, tick, tock)
}

type treeWrite struct {
	path  tree.Path
	value []byte
}

func newFakeTree() *fakeTree { return &fakeTree{started: make(chan struct{}, 100)} }

func (f *fakeTree) Write(ctx context.Context, p tree.Path, v []byte) error {
	select {
	case f.started <- struct{}{}:
	default:
	}
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	if f.fail != nil {
		if err := f.fail(p, v); err != nil {
			f.mu.Unlock()
			return err
		}
	}
	f.writes = append(f.writes, treeWrite{p.Clone(), slices.Clone(v)})
	after := f.after
	f.mu.Unlock()
	if after != nil {
		after(p, v)
	}
	return nil
}

func (f *fakeTree) setFail(fn func(tree.Path, []byte) error) {
	f.mu.Lock()
	f.fail = fn
	f.mu.Unlock()
}

func (f *fakeTree) written() []treeWrite {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.writes)
}

// fakeSync records peer events and messages.
type fakeSync struct {
	mu     sync.Mutex
	events []string
	msgs   chan syncMsg
}

type syncMsg struct {
	peer string
	kind wire.Kind
	data []byte
}

func newFakeSync() *fakeSync { return &fakeSync{msgs: make(chan syncMsg, 100)} }

func (f *fakeSync) PeerUp(peer string) {
	f.mu.Lock()
	f.events = append(f.events, "up "+peer)
	f.mu.Unlock()
}

func (f *fakeSync) PeerDown(peer string) {
	f.mu.Lock()
	f.events = append(f.events, "down "+peer)
	f.mu.Unlock()
}

func (f *fakeSync) Receive(peer string, kind wire.Kind, data []byte) {
	f.msgs <- syncMsg{peer, kind, data}
}

// waitEvents waits until the peer events are exactly want, and checks
// that they stay so for a moment.
func (f *fakeSync) waitEvents(t *testing.T, want ...string) {
	t.Helper()
	f.waitFor(t, func(got []string) bool { return slices.Equal(got, want) })
	time.Sleep(20 * time.Millisecond)
	if got := f.peerEvents(); !slices.Equal(got, want) {
		t.Fatalf("peer events = %q, want %q", got, want)
	}
}

func (f *fakeSync) peerEvents() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

// waitFor waits until ok(peer events).
func (f *fakeSync) waitFor(t *testing.T, ok func([]string) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := f.peerEvents()
		if ok(got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer events = %q", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitLog waits until the log has a line containing every part.
func (s *syncBuffer) waitLog(t *testing.T, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range strings.Split(s.String(), "\n") {
			if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line contains all of %q; log:\n%s", parts, s.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type testBroker struct {
	*Broker
	tree *fakeTree
	sync *fakeSync
	logs *syncBuffer
	addr string // the first listener's address
}

const (
	testNode = "n1"
	peer1    = "p1"
	peer1Pw  = "secret-1"
	peer2    = "p2"
	peer2Pw  = "secret-2"
)

// startBroker runs a broker for the test on 127.0.0.1:0 (anonymous
// loopback clients allowed, peers p1 and p2) and stops it at cleanup,
// checking that Run returns nil in time.
func startBroker(t *testing.T, mod func(*Config)) *testBroker {
	t.Helper()
	logs := &syncBuffer{}
	cfg := Config{
		Node:           testNode,
		MQTT:           []string{"127.0.0.1:0"},
		PeerUsers:      map[string]string{peer1: peer1Pw, peer2: peer2Pw},
		AllowAnonymous: true,
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	tb := &testBroker{tree: newFakeTree(), sync: newFakeSync(), logs: logs}
	b, err := New(cfg, tb.tree, tb.sync)
	if err != nil {
		t.Fatal(err)
	}
	tb.Broker = b
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	addrs := b.Addrs()
	if len(addrs) == 0 {
		cancel()
		t.Fatalf("broker did not start: %v", <-done)
	}
	tb.addr = addrs[0].String()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
				var stacks strings.Builder
				_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
				t.Logf("goroutines:\n%s", stacks.String())
			}
		case <-time.After(6 * time.Second):
			t.Errorf("Run did not return 6 s after its context ended")
		}
		if t.Failed() || os.Getenv("BROKER_TEST_LOG") != "" {
			t.Logf("broker log:\n%s", logs.String())
		}
	})
	return tb
}

// client is a paho MQTT v5 client with a queue of received messages.
type client struct {
	*paho.Client
	msgs chan *paho.Publish
}

// dialClient connects over conn; on failure it returns the CONNACK (if
// any) and the error, and the client is closed.
func dialClient(t *testing.T, conn net.Conn, cp *paho.Connect) (*client, *paho.Connack, error) {
	t.Helper()
	c := &client{msgs: make(chan *paho.Publish, 100)}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				c.msgs <- pr.Packet
				return true, nil
			},
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		return nil, ca, err
	}
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{})
		<-c.Done()
	})
	return c, ca, nil
}

func connectPacket(id, user, pass string) *paho.Connect {
	return &paho.Connect{
		ClientID:     id,
		KeepAlive:    30,
		CleanStart:   true,
		Username:     user,
		UsernameFlag: user != "",
		Password:     []byte(pass),
		PasswordFlag: pass != "",
	}
}

// connect dials addr over TCP and fails the test unless the broker admits
// the client.
func connect(t *testing.T, addr, id, user, pass string) *client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, ca, err := dialClient(t, conn, connectPacket(id, user, pass))
	if err != nil {
		t.Fatalf("connect %s as %q: %v (CONNACK %+v)", id, user, err, ca)
	}
	return c
}

// connectRefused dials and returns the CONNACK reason code of a refusal.
func connectRefused(t *testing.T, addr string, cp *paho.Connect) byte {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, ca, err := dialClient(t, conn, cp)
	if err == nil {
		_ = c.Disconnect(&paho.Disconnect{})
		t.Fatalf("connect %+v succeeded, want a refusal", cp)
	}
	if ca == nil {
		t.Fatalf("connect %+v: %v, and no CONNACK", cp, err)
	}
	return ca.ReasonCode
}

func (c *client) subscribe(t *testing.T, filters ...string) []byte {
	t.Helper()
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, s)
	if sa == nil {
		t.Fatalf("subscribe %q: %v", filters, err)
	}
	// mochi sends the SUBACK before the retained messages: a message
	// retained in between would come twice (live, then as retained).
	c.barrier(t)
	return sa.Reasons
}

// barrier returns once the broker has finished with this client's earlier
// packets. mochi acknowledges a subscribe before sending its retained
// messages, and a QoS 1 publish before handing it to the subscribers,
// but it handles one client's packets in order: once an UNSUBACK for a
// filter never subscribed is back, the earlier packets are done. (That
// UNSUBACK says "no subscription existed": paho returns it with an
// error.)
func (c *client) barrier(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ua, err := c.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"edgekv-test/barrier"}}); ua == nil {
		t.Fatalf("unsubscribe barrier: %v", err)
	}
}

// publish sends a message and returns the reason code of its
// acknowledgement (0 for QoS 0).
func (c *client) publish(t *testing.T, topic string, qos byte, payload []byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
	if pr == nil {
		t.Fatalf("publish %q: %v", topic, err)
	}
	return pr.ReasonCode
}

// publishRetained publishes payload on topic at QoS 1 with the retain flag.
func (c *client) publishRetained(t *testing.T, topic string, payload []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: payload}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

func (c *client) expect(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("no message received")
		return nil
	}
}

func (c *client) expectNone(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case m := <-c.msgs:
		t.Fatalf("unexpected message on %q: %q", m.Topic, m.Payload)
	case <-time.After(d):
	}
}

// rawClient speaks MQTT with mochi's packet codec, for MQTT 3.1.1 (paho
// here is v5 only) and for looking at raw acknowledgements.
type rawClient struct {
	t       *testing.T
	conn    net.Conn
	r       *bufio.Reader
	version byte
}

func dialRaw(t *testing.T, addr string, version byte, cp packets.ConnectParams) (*rawClient, packets.Packet) {
	t.Helper()
	return dialRawProps(t, addr, version, cp, packets.Properties{})
}

// dialRawProps is dialRaw with CONNECT properties (v5).
func dialRawProps(t *testing.T, addr string, version byte, cp packets.ConnectParams, props packets.Properties) (*rawClient, packets.Packet) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawClient{t: t, conn: conn, r: bufio.NewReader(conn), version: version}
	cp.ProtocolName = []byte("MQTT")
	if cp.Keepalive == 0 {
		cp.Keepalive = 30
	}
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: cp, Properties: props})
	ack, err := c.read()
	if err != nil || ack.FixedHeader.Type != packets.Connack {
		t.Fatalf("no CONNACK: %v %+v", err, ack)
	}
	return c, ack
}

func (c *rawClient) send(pk packets.Packet) {
	c.t.Helper()
	pk.ProtocolVersion = c.version
	buf := new(bytes.Buffer)
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(buf)
	case packets.Publish:
		err = pk.PublishEncode(buf)
	case packets.Pubrel:
		err = pk.PubrelEncode(buf)
	case packets.Puback:
		err = pk.PubackEncode(buf)
	case packets.Unsubscribe:
		err = pk.UnsubscribeEncode(buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(buf)
	default:
		c.t.Fatalf("rawClient cannot send packet type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(buf.Bytes()); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next packet within 5 s.
func (c *rawClient) read() (packets.Packet, error) {
	return c.readWithin(5 * time.Second)
}

func (c *rawClient) readWithin(d time.Duration) (packets.Packet, error) {
	var pk packets.Packet
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	hb, err := c.r.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(hb); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(c.r)
	if err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n
	pk.ProtocolVersion = c.version
	body := make([]byte, n)
	if _, err := ioReadFull(c.r, body); err != nil {
		return pk, err
	}
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pubrec:
		err = pk.PubrecDecode(body)
	case packets.Pubcomp:
		err = pk.PubcompDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Unsuback:
		err = pk.UnsubackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	default:
		err = fmt.Errorf("unexpected packet type %d", pk.FixedHeader.Type)
	}
	return pk, err
}

func ioReadFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// publishRaw sends a publish and returns the acknowledgement (an error for
// QoS 0, or when none comes within d).
func (c *rawClient) publishRaw(topic string, qos byte, id uint16, payload []byte, d time.Duration) (packets.Packet, error) {
	c.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName:   topic,
		PacketID:    id,
		Payload:     payload,
	})
	if qos == 0 {
		return packets.Packet{}, errors.New("QoS 0 has no acknowledgement")
	}
	return c.readWithin(d)
}

// writeCert makes a self-signed certificate for 127.0.0.1 and returns the
// PEM file names and a pool that trusts it.
func writeCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	p := testcert.Write(t, t.TempDir())
	return p.CertFile, p.KeyFile, p.Pool()
}
