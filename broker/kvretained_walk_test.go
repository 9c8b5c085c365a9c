package broker

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/tinylib/msgp/msgp"
)

// putRange puts n entries r/0 … r/n-1, each value the msgpack string of
// its index padded to size bytes.
func putRange(t *testing.T, tb *testBroker, n, size int) {
	t.Helper()
	for i := range n {
		v := []byte(strconv.Itoa(i))
		if pad := size - len(v); pad > 0 {
			v = append(v, bytes.Repeat([]byte{'.'}, pad)...)
		}
		if err := tb.put(path("r", i), msgp.AppendStringFromBytes(nil, v), "n1", uint64(i+1), uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestKVRetainedWalkWhileAcksPending: a client whose QoS 1 messages fill
// its queue, unacknowledged, subscribes at QoS 0 to KV topics. The walk
// must wait for the acknowledgements without stopping the client's reader
// that reads them (a walk on the reader goroutine deadlocked here).
func TestKVRetainedWalkWhileAcksPending(t *testing.T) {
	tb := startBroker(t, nil)
	const n = 300
	putRange(t, tb, n, 16)
	c, _ := dialRawProps(t, tb.addr, 5, packets.ConnectParams{ClientIdentifier: "slow", Clean: true}, packets.Properties{ReceiveMaximum: 4})
	c.subscribeRaw("big/#", 1, 1)
	pub := connect(t, tb.addr, "pub", "", "")
	big := bytes.Repeat([]byte("x"), 100<<10)
	for range 4 { // 400 KiB in flight, more than fillRoom
		pub.publish(t, "big/x", 1, big)
	}
	var ids []uint16
	for len(ids) < 4 {
		pk, err := c.read()
		if err != nil {
			t.Fatalf("big messages: %v after %d", err, len(ids))
		}
		ids = append(ids, pk.PacketID)
	}
	// Subscribe while all four wait for their acknowledgements, then
	// acknowledge them: the reader must still be reading.
	// (mochi refuses a packet id that one of its own messages in flight
	// has, hence 1000.)
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1000,
		Filters: packets.Subscriptions{{Filter: "kv/r/+", Qos: 0}}})
	if pk, err := c.read(); err != nil || pk.FixedHeader.Type != packets.Suback || len(pk.ReasonCodes) != 1 || pk.ReasonCodes[0] != 0 {
		t.Fatalf("SUBACK: %v %v %v", err, pk.FixedHeader.Type, pk.ReasonCodes)
	}
	for _, id := range ids {
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id})
	}
	seen := map[string]bool{}
	for len(seen) < n {
		pk, err := c.read()
		if err != nil {
			t.Fatalf("retained messages: %v after %d of %d", err, len(seen), n)
		}
		if pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Retain {
			seen[pk.TopicName] = true
		}
	}
}

// TestKVRetainedOwnPublishAfterWalk: a client that subscribes to KV topics
// and to a topic of its own, then publishes to that topic, gets its
// publish back after every retained message of the walk (mochi's order,
// on which "dump until my sentinel comes back" clients rely), at QoS 0
// and 1, with a walk larger than the queue's room.
func TestKVRetainedOwnPublishAfterWalk(t *testing.T) {
	tb := startBroker(t, nil)
	const n = 2000 // ~0.8 MB of queued messages: the walk waits for room
	putRange(t, tb, n, 100)
	for _, qos := range []byte{0, 1} {
		id := "own" + strconv.Itoa(int(qos))
		c, _ := dialRaw(t, tb.addr, 5, packets.ConnectParams{ClientIdentifier: id, Clean: true})
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
			Filters: packets.Subscriptions{{Filter: "kv/#", Qos: qos}, {Filter: "self/" + id, Qos: qos}}})
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "self/" + id, Payload: []byte("sentinel")})
		retained := 0
		for {
			pk, err := c.read()
			if err != nil {
				t.Fatalf("QoS %d: %v after %d retained messages", qos, err, retained)
			}
			if pk.FixedHeader.Type != packets.Publish {
				continue
			}
			if pk.FixedHeader.Qos > 0 {
				c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
			}
			if pk.TopicName == "self/"+id {
				break
			}
			retained++
		}
		if retained != n {
			t.Errorf("QoS %d: the client's own publish came back after %d of %d retained messages", qos, retained, n)
		}
	}
}

// TestKVRetainedHoldOtherSubscription: a change of an entry that a new
// walk has not reached goes out live when another subscription of the
// client matches it, so that unsubscribing the walk's filter loses
// nothing.
func TestKVRetainedHoldOtherSubscription(t *testing.T) {
	tb := startBroker(t, nil)
	const n = 600
	putRange(t, tb, n, 4)
	c, _ := dialRaw(t, tb.addr, 5, packets.ConnectParams{ClientIdentifier: "two", Clean: true})
	c.subscribeRaw("kv/#", 0, 1)
	for got := 0; got < n; got++ {
		if _, err := c.read(); err != nil {
			t.Fatalf("kv/#: %v after %d", err, got)
		}
	}
	changed := make(chan struct{})
	gate := make(chan struct{})
	tb.tree.beforeNext = func(chunk int) {
		if chunk != 1 {
			return
		}
		if err := tb.put(path("r", 500), msgp.AppendString(nil, "new"), "n1", 9999, 9999); err != nil {
			t.Error(err)
		}
		close(changed)
		<-gate
	}
	c.subscribeRaw("kv/r/+", 0, 2)
	var live bool
	read := func(d time.Duration) bool {
		pk, err := c.readWithin(d)
		if err != nil {
			return false
		}
		if pk.FixedHeader.Type == packets.Publish && string(pk.Payload) == `"new"` && !pk.FixedHeader.Retain {
			live = true
		}
		return true
	}
	for {
		select {
		case <-changed:
		default:
			if !read(5 * time.Second) {
				t.Fatal("walk of kv/r/+ did not reach its second chunk")
			}
			continue
		}
		break
	}
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: 3,
		Filters: packets.Subscriptions{{Filter: "kv/r/+"}}})
	for {
		pk, err := c.read()
		if err != nil {
			t.Fatalf("UNSUBACK: %v", err)
		}
		if pk.FixedHeader.Type == packets.Unsuback {
			break
		}
		if string(pk.Payload) == `"new"` && !pk.FixedHeader.Retain {
			live = true
		}
	}
	close(gate)
	for !live && read(time.Second) {
	}
	if !live {
		t.Fatal("the change of r/500 never came live, though kv/# stayed subscribed")
	}
}

// TestKVRetainedHeldNewerThanVisit: a held change newer than what the
// walk then reads of the entry is not dropped; it follows the walk's at
// once, before a later change that goes out live.
func TestKVRetainedHeldNewerThanVisit(t *testing.T) {
	tb := startBroker(t, nil)
	const n = 600
	putRange(t, tb, n, 4)
	old := tb.tree.entries[path("r", 500).String()]
	tb.tree.beforeNext = func(chunk int) {
		switch chunk {
		case 1:
			if err := tb.put(path("r", 500), msgp.AppendString(nil, "new"), "n1", 9999, 9999); err != nil {
				t.Error(err)
			}
			tb.tree.emu.Lock() // the walk is to read the older version
			tb.tree.entries[old.Path.String()] = old
			tb.tree.emu.Unlock()
		case 2: // the walk has passed r/500: a change goes out live
			if err := tb.put(path("r", 500), msgp.AppendString(nil, "newest"), "n1", 10000, 10000); err != nil {
				t.Error(err)
			}
		}
	}
	c, _ := dialRaw(t, tb.addr, 5, packets.ConnectParams{ClientIdentifier: "newer", Clean: true})
	c.subscribeRaw("kv/r/+", 0, 1)
	topic, _ := TopicForPath("kv", path("r", 500))
	var got []string
	for i := 0; i < n+2; i++ {
		pk, err := c.read()
		if err != nil {
			t.Fatalf("%v after %d messages", err, i)
		}
		if pk.TopicName == topic {
			got = append(got, string(pk.Payload))
		}
	}
	if len(got) != 3 || got[1] != `"new"` || got[2] != `"newest"` {
		t.Fatalf("r/500: %q, want the walk's older value, then \"new\", then \"newest\"", got)
	}
}

// TestKVRetainedWalksEndWithClient: several walks of one client, all
// waiting for room in its queue, end when it disconnects (one wake-up
// each, not one for all).
func TestKVRetainedWalksEndWithClient(t *testing.T) {
	tb := startBroker(t, nil)
	putRange(t, tb, 3000, 1000) // 3 MB a walk: more than the socket's buffers
	c, _ := dialRaw(t, tb.addr, 5, packets.ConnectParams{ClientIdentifier: "walks", Clean: true})
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "kv/#"}, {Filter: "kv/r/+"}, {Filter: "kv/+/+"}, {Filter: "+/r/#"}}})
	deadline := time.Now().Add(5 * time.Second)
	for tb.out.walking.Load() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d walks running, want 4", tb.out.walking.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if w := tb.out.walking.Load(); w != 4 {
		t.Fatalf("%d walks running before the client left, want 4 waiting for room", w)
	}
	c.conn.Close()
	deadline = time.Now().Add(5 * time.Second)
	for tb.out.walking.Load() != 0 || tb.out.filling.Load() != 0 || tb.out.total.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after the client left: %d walks running, %d registered, %d bytes counted",
				tb.out.walking.Load(), tb.out.filling.Load(), tb.out.total.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
