package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/broker/kvclient"
	"github.com/edgekv/edgekv/broker/kvproto"
	"github.com/edgekv/edgekv/tree"
)

// mqttPublishHead is the start of a QoS 0 MQTT PUBLISH of size payload
// bytes on topic: fixed header, topic, and n bytes of the payload.
func mqttPublishHead(topic string, size, n int) []byte {
	body := append([]byte{byte(len(topic) >> 8), byte(len(topic))}, topic...)
	rem := len(body) + size
	b := []byte{0x30}
	for {
		d := byte(rem & 0x7f)
		rem >>= 7
		if rem > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if rem == 0 {
			break
		}
	}
	b = append(b, body...)
	return append(b, make([]byte, n)...)
}

// mqttConnect is an MQTT 3.1.1 CONNECT packet (clean session, keepalive
// 600 s) for id.
func mqttConnect(id string) []byte {
	vh := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0x02, 0x58, byte(len(id) >> 8), byte(len(id))}
	vh = append(vh, id...)
	return append([]byte{0x10, byte(len(vh))}, vh...)
}

// halfSender writes msg to c on its own goroutine (a node that stops
// reading blocks it) and reports, on done, whether the node ended the
// connection and the fatal error it sent first, if any (client protocol).
type halfResult struct {
	closed bool
	fatal  string
}

func sendHalf(c net.Conn, msg []byte, kv bool, done chan<- halfResult) {
	go func() { _, _ = c.Write(msg) }()
	go func() {
		var res halfResult
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if kv {
			r := kvproto.NewReader(c, 0)
			for {
				m, err := r.Next()
				if err != nil {
					res.closed = !isTimeout(err)
					break
				}
				if bytes.Contains(m, []byte("error")) {
					res.fatal = string(m)
				}
			}
		} else {
			_, err := io.Copy(io.Discard, c)
			res.closed = !isTimeout(err)
		}
		done <- res
	}()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Probe: 30 client-protocol connections each send half of a 16 MB request
// (a set_value whose value is 16,000,000 bytes) and 30 MQTT connections
// half of a 4 MB PUBLISH, and stop there. The node holds those of them
// that fit its receiving budget (limits.receiving, 64 MiB by default)
// and closes the others after receiving_wait (5 s) with a reason (the
// client-protocol ones get a fatal error naming limits.receiving); its
// RSS stays within probeBudgetKiB(receiving) of before, and another
// client's requests are answered throughout. (Before: about 16 MB per
// connection, no connection cap, no bound.)
func TestProbeHalfFrames(t *testing.T) {
	p, port, addr := probeNode(t, "halves", "")
	pid := p.cmd.Process.Pid
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := kvclient.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.Get(ctx, tree.Path{tree.Str("k")}, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	before := rssKiB(t, pid)
	stop := rssSampler(pid)

	const n = 30
	done := make(chan halfResult, 2*n)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	big := rawRequest("path", tree.Path{tree.Str("big")}, "action", "set_value", "seq", 1)
	// The value, a 16,000,000-byte bin, as the last pair of the map.
	big[0]++ // one pair more in the fixmap
	big = msgp.AppendString(big, "value")
	big = msgp.AppendBytesHeader(big, 16_000_000)
	big = append(big, make([]byte, 8_000_000)...)
	for i := range n {
		kc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, kc)
		sendHalf(kc, big, true, done)
		mc, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, mc)
		head := append(mqttConnect(fmt.Sprintf("half%d", i)), mqttPublishHead("big/half", 4_000_000, 2_000_000)...)
		sendHalf(mc, head, false, done)
	}

	// Another client goes on working meanwhile.
	var lat []time.Duration
	var mu sync.Mutex
	stopGets := make(chan struct{})
	getsDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stopGets:
				getsDone <- nil
				return
			case <-time.After(50 * time.Millisecond):
			}
			start := time.Now()
			if _, _, err := c.Get(ctx, tree.Path{tree.Str("k")}, 0); err != nil {
				getsDone <- fmt.Errorf("get: %v", err)
				return
			}
			mu.Lock()
			lat = append(lat, time.Since(start))
			mu.Unlock()
		}
	}()
	time.Sleep(9 * time.Second) // receiving_wait (5 s) and some
	close(stopGets)
	if err := <-getsDone; err != nil {
		t.Fatal(err)
	}
	peak := stop()
	held := rssKiB(t, pid)
	// What the node has closed by now; then the probe closes the rest.
	var closed, fatal int
	var reason string
	count := func(r halfResult, byNode bool) {
		if r.closed && byNode {
			closed++
		}
		if r.fatal != "" {
			fatal++
			reason = r.fatal
		}
	}
	got := 0
	for drained := false; !drained; {
		select {
		case r := <-done:
			count(r, true)
			got++
		default:
			drained = true
		}
	}
	for _, c := range conns {
		c.Close()
	}
	for ; got < 2*n; got++ {
		count(<-done, false)
	}
	mu.Lock()
	var worst time.Duration
	for _, d := range lat {
		worst = max(worst, d)
	}
	mu.Unlock()
	limit := probeBudgetKiB(64 << 20)
	t.Logf("%d client-protocol and %d MQTT connections sent half a 16 MB / 4 MB message: %d closed by the node within 9 s (%d with a fatal error, e.g. %q); RSS %d KiB before, peak %d KiB (%+d KiB, budget %d KiB), %d KiB at 9 s; %d gets meanwhile, slowest %v",
		n, n, closed, fatal, printable(reason), before, peak, peak-before, limit, held, len(lat), worst)
	if peak-before > limit {
		t.Errorf("RSS rose by %d KiB, over limits.receiving + GC headroom + 32 MB (%d KiB)", peak-before, limit)
	}
	// 64 MiB hold a few of the halves (a client-protocol one takes 1 to 8
	// MiB as its buffer grows, an MQTT one 4 MB at once): most of the 60
	// must have been closed.
	// (A client still writing when the node closes may see a reset
	// instead of the fatal error: not every one arrives.)
	if closed < n || fatal == 0 || !strings.Contains(reason, "limits.receiving") {
		t.Errorf("%d connections closed by the node, %d fatal errors (%q): want at least %d of the 60 closed, with a reason naming limits.receiving", closed, fatal, reason, n)
	}
	if p.stop(syscall.SIGTERM); p.exited() != nil {
		t.Fatalf("the node did not stop cleanly: %v", p.exited())
	}
}

// probeBudgetKiB is the documented bound on a node's RSS growth while
// clients hold held bytes of it (README, "Hostile and careless clients"):
// those bytes, plus the garbage the collector may keep before it runs
// (memtrim's headroom, 64 MiB), plus 64 MiB for the rest: messages being
// decoded (mochi holds two copies of a packet while it reads it),
// buffers, goroutines, pages the runtime has not yet given back.
func probeBudgetKiB(held int) int { return (held + 64<<20 + 64<<20) >> 10 }

// pahoPublisher connects an MQTT v5 client (paho) to port as id; it is
// disconnected when the test ends.
func pahoPublisher(t *testing.T, ctx context.Context, port int, id string) *paho.Client {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	pc := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn})
	if _, err := pc.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 60, CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Disconnect(&paho.Disconnect{}) })
	return pc
}

// printable keeps the readable runs of a msgpack message, for a log line.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return ' '
		}
		return r
	}, s)
}

// Probe: a client retains 200 messages of 4 MB on topics outside the tree
// (MQTT v5, QoS 1). The node keeps those that fit limits.retained (16 MiB
// by default) and refuses the rest with "quota exceeded" naming the
// limit; its RSS stays within probeBudgetKiB(retained) of before. (Before:
// 200 × 4 MB pinned 2.1 GB.)
func TestProbeRetainedOutsideTree(t *testing.T) {
	p, port, _ := probeNode(t, "retains", "")
	pid := p.cmd.Process.Pid
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pc := pahoPublisher(t, ctx, port, "retainer")
	time.Sleep(1500 * time.Millisecond)
	before := rssKiB(t, pid)
	stop := rssSampler(pid)
	payload := bytes.Repeat([]byte{'x'}, 4_000_000)
	var kept, refused int
	var reason string
	for i := range 200 {
		pr, err := pc.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("cam/%d/jpeg", i), QoS: 1, Retain: true, Payload: payload})
		if pr == nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if pr.ReasonCode == 0 {
			kept++
		} else {
			refused++
			reason = pr.Properties.ReasonString
		}
	}
	peak := stop()
	time.Sleep(3 * time.Second)
	settled := rssKiB(t, pid)
	limit := probeBudgetKiB(16 << 20)
	t.Logf("200 retained messages of 4 MB outside the tree: %d kept, %d refused (%q); RSS %d KiB before, peak %d KiB (%+d KiB, budget %d KiB), %d KiB (%+d KiB) 3 s later",
		kept, refused, reason, before, peak, peak-before, limit, settled, settled-before)
	if kept != 4 || refused != 196 || !strings.Contains(reason, "limits.retained") {
		t.Errorf("%d kept, %d refused (%q): want 4 kept (16 MiB), the rest refused naming limits.retained", kept, refused, reason)
	}
	if peak-before > limit {
		t.Errorf("RSS rose by %d KiB, over %d KiB", peak-before, limit)
	}
	if p.stop(syscall.SIGTERM); p.exited() != nil {
		t.Fatalf("the node did not stop cleanly: %v", p.exited())
	}
}

// Probe: one client-protocol connection sends 3,000,000 acks for distinct
// seqs that name no open stream (about 30 MB). The node keeps no state for
// them: RSS within 16 MB of before, and the connection still answers.
// (Before: +237 MB, kept until the connection closed.)
func TestProbeAcks(t *testing.T) {
	p, _, addr := probeNode(t, "acks", "")
	pid := p.cmd.Process.Pid
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := kvproto.NewReader(conn, 0)
	if _, err := r.Next(); err != nil { // greeting
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	before := rssKiB(t, pid)
	stop := rssSampler(pid)
	const n = 3_000_000
	var sent int
	buf := make([]byte, 0, 1<<20)
	for seq := 1; seq <= n; seq++ {
		buf = append(buf, rawRequest("seq", seq+10, "state", "ack", "ack", 1)...)
		if len(buf) > 1<<20-64 || seq == n {
			if _, err := conn.Write(buf); err != nil {
				t.Fatal(err)
			}
			sent += len(buf)
			buf = buf[:0]
		}
	}
	if _, err := conn.Write(rawRequest("path", tree.Path{tree.Str("k")}, "action", "get_value", "seq", 1)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	m, err := r.Next()
	if err != nil {
		t.Fatalf("after the acks: %v", err)
	}
	if !bytes.Contains(m, []byte("seq")) {
		t.Fatalf("after the acks: %q", m)
	}
	time.Sleep(500 * time.Millisecond)
	peak, after := stop(), rssKiB(t, pid)
	t.Logf("%d acks (%d MB) on one connection: RSS %d KiB before, peak %d KiB (%+d KiB), %d KiB after, connection still answers",
		n, sent>>20, before, peak, peak-before, after)
	if after-before > 16*1024 {
		t.Errorf("RSS rose by %d KiB with the connection open, want ≤ 16 MB", after-before)
	}
	if p.stop(syscall.SIGTERM); p.exited() != nil {
		t.Fatalf("the node did not stop cleanly: %v", p.exited())
	}
}

// Probe: five MQTT clients subscribe to "#" and never read; another
// client publishes 60 messages of 4 MB (240 MB, at 40 MB/s) while a sixth
// subscriber reads. The node disconnects each non-reader once its queue would pass
// limits.mqtt_queue (16 MiB by default), logging why; the reader gets all
// 60; the queues share one copy of each payload, and the node's RSS stays
// within probeBudgetKiB(limits.sending) of before. (Before, with mochi's
// queues of 8,192 packets and a payload copy per subscriber: 1.48 GB.)
func TestProbeSlowSubscribers(t *testing.T) {
	p, port, _ := probeNode(t, "slowsubs", "")
	pid := p.cmd.Process.Pid
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var stuck []net.Conn
	defer func() {
		for _, c := range stuck {
			c.Close()
		}
	}()
	for i := range 5 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		stuck = append(stuck, c)
		sub := []byte{0x82, 6, 0, 1, 0, 1, '#', 0}
		if _, err := c.Write(append(mqttConnect(fmt.Sprintf("stuck%d", i)), sub...)); err != nil {
			t.Fatal(err)
		}
		// CONNACK (4 bytes) and SUBACK (5 bytes); then it reads no more.
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 9)); err != nil {
			t.Fatalf("stuck%d: %v", i, err)
		}
	}
	var got sync.WaitGroup
	got.Add(60)
	var received atomic.Int64
	mqttClient(t, port, "reader", "cam/#", func(topic string, payload []byte) {
		if received.Add(1) <= 60 {
			got.Done()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pc := pahoPublisher(t, ctx, port, "flood")
	time.Sleep(1500 * time.Millisecond)
	before := rssKiB(t, pid)
	stop := rssSampler(pid)
	payload := bytes.Repeat([]byte{'x'}, 4_000_000)
	start := time.Now()
	for i := range 60 {
		if pr, err := pc.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("cam/%d", i%8), QoS: 1, Payload: payload}); pr == nil || pr.ReasonCode != 0 {
			t.Fatalf("publish %d: %v %v", i, pr, err)
		}
		// 40 MB/s: a reader that keeps up stays within its 16 MiB queue
		// even in a test binary built with -race; one that does not read
		// at all falls behind at once.
		time.Sleep(100 * time.Millisecond)
	}
	waited := make(chan struct{})
	go func() { got.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the reading subscriber got %d of 60 in 30 s", received.Load())
	}
	took := time.Since(start)
	peak := stop()
	// Each non-reader has been disconnected: after what its socket holds,
	// its connection ends.
	cut := 0
	for _, c := range stuck {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); !isTimeout(err) {
			cut++
		}
	}
	log := p.Log()
	limit := probeBudgetKiB(128 << 20)
	t.Logf("5 subscribers to # that never read, 60 × 4 MB published in %v: reader got %d; %d non-readers disconnected (%d log lines say why, none for the reader: %v); RSS %d KiB before, peak %d KiB (%+d KiB, budget %d KiB)",
		took.Round(time.Millisecond), received.Load(), cut, strings.Count(log, "does not read its messages fast enough"), !strings.Contains(log, "client=reader"), before, peak, peak-before, limit)
	if cut != 5 || !strings.Contains(log, "limit=limits.mqtt_queue") {
		t.Errorf("%d of 5 non-readers disconnected, want all with the reason logged", cut)
	}
	if strings.Contains(log, "client=reader") {
		t.Errorf("the subscriber that reads was disconnected")
	}
	if peak-before > limit {
		t.Errorf("RSS rose by %d KiB, over %d KiB", peak-before, limit)
	}
	if p.stop(syscall.SIGTERM); p.exited() != nil {
		t.Fatalf("the node did not stop cleanly: %v", p.exited())
	}
}
