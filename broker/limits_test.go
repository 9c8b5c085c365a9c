package broker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgekv/edgekv/internal/budget"
)

// Retained messages outside the tree are bounded in bytes: one that does
// not fit is refused with "quota exceeded" and a reason naming the limit,
// clearing a topic makes room, and KV topics do not count.
func TestRetainedBytesBounded(t *testing.T) {
	tb := startBroker(t, func(c *Config) { c.MaxRetainedBytes = 1 << 20 })
	pub := connect(t, tb.addr, "pub", "", "")
	retain := func(topic string, size int) *paho.PublishResponse {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pr, err := pub.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: bytes.Repeat([]byte{'x'}, size)})
		if pr == nil {
			t.Fatalf("publish %s: %v", topic, err)
		}
		return pr
	}
	for _, topic := range []string{"cam/a", "cam/b"} {
		if pr := retain(topic, 400<<10); pr.ReasonCode != 0 {
			t.Fatalf("%s: reason %#x, want success", topic, pr.ReasonCode)
		}
	}
	pr := retain("cam/c", 400<<10)
	if pr.ReasonCode != packets.ErrQuotaExceeded.Code || !strings.Contains(pr.Properties.ReasonString, "limits.retained") {
		t.Fatalf("third 400 KiB retained message: reason %#x %q, want quota exceeded naming limits.retained", pr.ReasonCode, pr.Properties.ReasonString)
	}
	if got := tb.retain.bytes(); got > 1<<20 {
		t.Fatalf("%d retained bytes counted, over the 1 MiB limit", got)
	}
	// Replacing a message by one of the same size fits; so does any
	// message once a topic is cleared.
	if pr := retain("cam/a", 400<<10); pr.ReasonCode != 0 {
		t.Fatalf("replacing cam/a: reason %#x", pr.ReasonCode)
	}
	if pr := retain("cam/b", 0); pr.ReasonCode != 0 {
		t.Fatalf("clearing cam/b: reason %#x", pr.ReasonCode)
	}
	if pr := retain("cam/c", 400<<10); pr.ReasonCode != 0 {
		t.Fatalf("cam/c after clearing cam/b: reason %#x %q", pr.ReasonCode, pr.Properties.ReasonString)
	}
	sub := connect(t, tb.addr, "sub", "", "")
	sub.subscribe(t, "cam/#")
	got := map[string]int{}
	for range 2 {
		m := sub.expect(t)
		got[m.Topic] = len(m.Payload)
	}
	sub.expectNone(t, 200*time.Millisecond)
	if got["cam/a"] != 400<<10 || got["cam/c"] != 400<<10 {
		t.Fatalf("retained on subscribe: %v, want cam/a and cam/c", got)
	}
}

// Clients beyond MaxConns are refused with a CONNACK "server busy";
// a few more beyond that are closed at once; a closed connection makes
// room.
func TestMaxConnsMQTT(t *testing.T) {
	tb := startBroker(t, func(c *Config) { c.MaxConns = 2 })
	a := connect(t, tb.addr, "a", "", "")
	connect(t, tb.addr, "b", "", "")
	if code := connectRefused(t, tb.addr, connectPacket("c", "", "")); code != packets.ErrServerBusy.Code {
		t.Fatalf("third client: CONNACK %#x, want server busy", code)
	}
	// Hold MaxConns + connecting connections without CONNECT: the next is
	// closed without a word.
	var held []net.Conn
	for range connecting {
		c, err := net.Dial("tcp", tb.addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for tb.limits.open.Load() < int64(2+connecting) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections counted, want %d", tb.limits.open.Load(), 2+connecting)
		}
		time.Sleep(5 * time.Millisecond)
	}
	over, err := net.Dial("tcp", tb.addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = over.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := over.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a connection over the limit: read %d, %v; want it closed", n, err)
	}
	over.Close()
	tb.logs.waitLog(t, "MQTT connections refused", "limit=2")
	for _, c := range held {
		c.Close()
	}
	_ = a.Disconnect(&paho.Disconnect{})
	deadline = time.Now().Add(5 * time.Second)
	for tb.limits.open.Load() > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still counted", tb.limits.open.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	connect(t, tb.addr, "d", "", "")
}

// publishHead returns the start of a QoS 0 PUBLISH packet on topic whose
// payload is size bytes: the fixed header and topic, n bytes of payload.
func publishHead(topic string, size, n int) []byte {
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

// Large packets still arriving share the node's budget: a connection that
// announces one that does not fit waits, then is closed with the reason
// logged; the budget comes back when the holder goes.
func TestPacketBudget(t *testing.T) {
	b := budget.New("limits.receiving", 1<<20, 300*time.Millisecond)
	tb := startBroker(t, func(c *Config) { c.Budget = b })
	raw := func(id string) *rawClient {
		c, ack := dialRaw(t, tb.addr, 4, packets.ConnectParams{ClientIdentifier: id, Clean: true, Keepalive: 30})
		if ack.ReasonCode != 0 {
			t.Fatalf("%s: CONNACK %#x", id, ack.ReasonCode)
		}
		return c
	}
	holder := raw("holder")
	if _, err := holder.conn.Write(publishHead("big/a", 900<<10, 100<<10)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.Used() < 900<<10 {
		if time.Now().After(deadline) {
			t.Fatalf("holder took %d bytes", b.Used())
		}
		time.Sleep(5 * time.Millisecond)
	}
	late := raw("late")
	start := time.Now()
	if _, err := late.conn.Write(publishHead("big/b", 600<<10, 10<<10)); err != nil {
		t.Fatal(err)
	}
	_ = late.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := late.conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("late connection over budget: read %v, want it closed", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("closed after %s, before the budget's wait", d)
	}
	tb.logs.waitLog(t, "MQTT connection closed", "no room to receive it", "limits.receiving")
	if u := b.Used(); u > 1<<20 {
		t.Fatalf("budget used %d", u)
	}
	holder.conn.Close()
	deadline = time.Now().Add(5 * time.Second)
	for b.Used() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still taken after the holder closed", b.Used())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A large packet that arrives whole passes, and gives its bytes back.
	sub := connect(t, tb.addr, "sub", "", "")
	sub.subscribe(t, "big/#")
	pub := connect(t, tb.addr, "pub", "", "")
	pub.publish(t, "big/c", 1, make([]byte, 700<<10))
	if m := sub.expect(t); len(m.Payload) != 700<<10 {
		t.Fatalf("got %d bytes", len(m.Payload))
	}
	if u := b.Used(); u != 0 {
		t.Fatalf("%d bytes taken after a whole packet", u)
	}
}

// A large packet that stops arriving is cut off once it falls behind
// budget.MinRate (after budget.Grace), though the keepalive allows more.
func TestPacketStalledCut(t *testing.T) {
	if testing.Short() {
		t.Skip("waits budget.Grace")
	}
	b := budget.New("limits.receiving", 64<<20, time.Second)
	tb := startBroker(t, func(c *Config) { c.Budget = b })
	c, ack := dialRaw(t, tb.addr, 4, packets.ConnectParams{ClientIdentifier: "slow", Clean: true, Keepalive: 300})
	if ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %#x", ack.ReasonCode)
	}
	start := time.Now()
	if _, err := c.conn.Write(publishHead("big/slow", 3<<20, 256<<10)); err != nil {
		t.Fatal(err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(budget.Grace + 15*time.Second))
	if _, err := c.conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled packet: read %v, want the connection closed", err)
	}
	if d := time.Since(start); d < budget.Grace {
		t.Fatalf("closed after %s, before the grace of %s", d, budget.Grace)
	}
	tb.logs.waitLog(t, "MQTT connection closed", "slower than the 64 KiB/s")
	deadline := time.Now().Add(5 * time.Second)
	for b.Used() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still taken", b.Used())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
