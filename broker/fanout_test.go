package broker

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// A subscriber that does not read is disconnected once its queue would go
// over MaxQueueBytes, with the reason logged; a subscriber that reads gets
// every message; the queues' bytes are given back.
func TestSlowSubscriberCut(t *testing.T) {
	tb := startBroker(t, func(c *Config) { c.MaxQueueBytes = 4 << 20 })
	stuck, _ := dialRaw(t, tb.addr, 4, packets.ConnectParams{ClientIdentifier: "stuck", Clean: true, Keepalive: 600})
	stuck.subscribeRaw("cam/#", 0, 1)
	reader, _ := dialRaw(t, tb.addr, 4, packets.ConnectParams{ClientIdentifier: "reader", Clean: true, Keepalive: 600})
	reader.subscribeRaw("cam/#", 0, 1)
	const n, size = 400, 100 << 10 // 40 MB: more than loopback's socket buffers take
	got := make(chan int, 1)
	var read atomic.Int64
	go func() { got <- reader.countPublishesInto(n, &read) }()
	pub := connect(t, tb.addr, "pub", "", "")
	payload := make([]byte, size)
	for i := range n {
		// Never more than 2 MB ahead of the reader, whatever else the
		// machine is doing: the reader must stay within its 4 MiB.
		for deadline := time.Now().Add(10 * time.Second); int64(i)-read.Load() > 20 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		pub.publish(t, fmt.Sprintf("cam/%d", i%10), 1, payload)
	}
	if k := <-got; k != n {
		t.Fatalf("the reading subscriber got %d of %d", k, n)
	}
	tb.logs.waitLog(t, "does not read its messages fast enough", "client=stuck", "limit=limits.mqtt_queue")
	// The stuck client's connection has been closed: after what the
	// socket held, it ends.
	_ = stuck.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64<<10)
	for {
		if _, err := stuck.conn.Read(buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the stuck subscriber's connection is still open")
			}
			break
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for tb.out.total.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still counted in queues", tb.out.total.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// countPublishesInto reads until n PUBLISH packets have come or reading
// fails (10 s without one), keeping read up to date, and returns how many
// came.
func (c *rawClient) countPublishesInto(n int, read *atomic.Int64) int {
	got := 0
	for got < n {
		pk, err := c.readWithin(10 * time.Second)
		if err != nil {
			c.t.Logf("read after %d publishes: %v", got, err)
			return got
		}
		if pk.FixedHeader.Type == packets.Publish {
			got++
			read.Store(int64(got))
		}
	}
	return got
}

// All subscribers' queues share one packet, payload included.
func TestQueuedPayloadShared(t *testing.T) {
	tb := startBroker(t, func(c *Config) { c.MaxQueueBytes, c.MaxSendingBytes = 1<<30, 1<<30 })
	var subs []*rawClient
	for i := range 3 {
		c, _ := dialRaw(t, tb.addr, 4, packets.ConnectParams{ClientIdentifier: fmt.Sprintf("s%d", i), Clean: true, Keepalive: 600})
		c.subscribeRaw("big/#", 0, 1)
		subs = append(subs, c)
	}
	pub := connect(t, tb.addr, "pub", "", "")
	// Enough that the queues cannot drain into the sockets at once.
	for range 60 {
		pub.publish(t, "big/x", 1, make([]byte, 1<<20))
	}
	tb.out.mu.Lock()
	defer tb.out.mu.Unlock()
	seen := map[*byte]int{}
	queued := 0
	for _, q := range tb.out.queues {
		q.mu.Lock()
		for _, it := range q.items[q.head:] {
			seen[&it.pk.Payload[0]]++
			queued++
		}
		q.mu.Unlock()
	}
	if queued == 0 {
		t.Fatal("nothing queued: the test did not hold the subscribers back")
	}
	shared := 0
	for _, k := range seen {
		if k > 1 {
			shared += k
		}
	}
	t.Logf("%d messages queued, %d distinct payloads", queued, len(seen))
	if len(seen) > 60 || shared == 0 {
		t.Fatalf("%d distinct payloads for %d queued messages of 60 publishes: not shared", len(seen), queued)
	}
	_ = subs
}

// Live QoS 1 messages to a v5 client keep to its receive maximum, while
// the client sends packets of its own meanwhile (with mochi's send quota
// this could deadlock the client's reader and the publisher), and all
// arrive.
func TestLiveQos1ReceiveMaximum(t *testing.T) {
	tb := startBroker(t, nil)
	c, _ := dialRawProps(t, tb.addr, 5, packets.ConnectParams{ClientIdentifier: "rm2", Clean: true, Keepalive: 600}, packets.Properties{ReceiveMaximum: 2})
	c.subscribeRaw("live/#", 1, 1)
	const n = 300
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		p, _ := dialRaw(t, tb.addr, 4, packets.ConnectParams{ClientIdentifier: "livepub", Clean: true, Keepalive: 600})
		for i := range n {
			p.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: fmt.Sprintf("live/%d", i), Payload: []byte("x")})
		}
	}()
	var mu sync.Mutex
	unacked := map[uint16]bool{}
	most := 0
	for got := 0; got < n; {
		pk, err := c.readWithin(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d of %d: %v", got, n, err)
		}
		if pk.FixedHeader.Type != packets.Publish {
			continue
		}
		got++
		mu.Lock()
		unacked[pk.PacketID] = true
		most = max(most, len(unacked))
		mu.Unlock()
		// Ack all but the newest, and send a packet of our own between.
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "noise/x", Payload: []byte("n")})
		mu.Lock()
		for id := range unacked {
			if id != pk.PacketID || got == n {
				c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id})
				delete(unacked, id)
			}
		}
		mu.Unlock()
	}
	<-pubDone
	if most > 2 {
		t.Fatalf("%d messages unacknowledged at once, the client's receive maximum is 2", most)
	}
}

// A client that keeps its session gets the QoS 1 messages published while
// it was away when it comes back, as with mochi; QoS 0 ones are not kept.
func TestAwayClientGetsQos1(t *testing.T) {
	tb := startBroker(t, nil)
	cp := packets.ConnectParams{ClientIdentifier: "away", Clean: false, Keepalive: 600}
	c, _ := dialRaw(t, tb.addr, 4, cp)
	c.subscribeRaw("away/#", 1, 1)
	c.conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if cl, ok := tb.srv.Clients.Get("away"); ok && cl.Closed() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the broker has not seen the client go")
		}
		time.Sleep(5 * time.Millisecond)
	}
	pub := connect(t, tb.addr, "pub", "", "")
	for i := range 3 {
		pub.publish(t, fmt.Sprintf("away/%d", i), 1, []byte("kept"))
	}
	pub.publish(t, "away/qos0", 0, []byte("lost"))
	pub.barrier(t)
	back, ack := dialRaw(t, tb.addr, 4, cp)
	if !ack.SessionPresent {
		t.Fatal("session not present on return")
	}
	got := map[string]bool{}
	for range 3 {
		pk, err := back.readWithin(5 * time.Second)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		if pk.FixedHeader.Type == packets.Publish {
			got[pk.TopicName] = true
			back.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
		}
	}
	if len(got) != 3 || got["away/qos0"] {
		t.Fatalf("on return: %v, want away/0..2", got)
	}
	if pk, err := back.readWithin(300 * time.Millisecond); err == nil {
		t.Fatalf("one more message on return: %s", pk.TopicName)
	}
}
