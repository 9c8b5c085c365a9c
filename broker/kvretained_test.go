package broker

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

func TestKVRoot(t *testing.T) {
	for _, tc := range []struct {
		prefix, filter string
		root           tree.Path
		depth          int
		ok             bool
	}{
		{"kv", "#", tree.Path{}, -1, true},
		{"kv", "kv/#", tree.Path{}, -1, true},
		{"kv", "+/#", tree.Path{}, -1, true},
		{"kv", "kv", tree.Path{}, 0, true},
		{"kv", "kv/a/b", path("a", "b"), 0, true},
		{"kv", "kv/a/+", path("a"), 1, true},
		{"kv", "kv/a/+/c", path("a"), 2, true},
		{"kv", "kv/a/+/#", path("a"), -1, true},
		{"kv", "kv/:3/x", tree.Path{tree.Int(3), tree.Str("x")}, 0, true},
		{"kv", "other/#", nil, 0, false},
		{"kv", "kvx/a", nil, 0, false},
		{"kv", "kv/:x10", nil, 0, false}, // no entry has this topic
		{"moat/kv", "moat/+/a", path("a"), 0, true},
		{"moat/kv", "moat", nil, 0, false},
		{"moat/kv", "moat/#", tree.Path{}, -1, true},
		{"moat/kv", "+/+/#", tree.Path{}, -1, true},
	} {
		root, depth, ok := kvRoot(tc.prefix, tc.filter)
		if ok != tc.ok || (ok && (!root.Equal(tc.root) || depth != tc.depth)) {
			t.Errorf("kvRoot(%q, %q) = %v %d %v, want %v %d %v", tc.prefix, tc.filter, root, depth, ok, tc.root, tc.depth, tc.ok)
		}
	}
}

func TestMatchTopic(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"#", "a", true},
		{"#", "a/b", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"a/+", "a/b", true},
		{"a/+", "a", false},
		{"a/+", "a/b/c", false},
		{"+/+", "a/b", true},
		{"a/b", "a/b", true},
		{"a/b", "a/bc", false},
		{"a/+/c", "a//c", true},
		{"+", "", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
	} {
		if got := matchTopic(tc.filter, tc.topic); got != tc.want {
			t.Errorf("matchTopic(%q, %q) = %v, want %v", tc.filter, tc.topic, got, tc.want)
		}
	}
}

// TestKVRetainedHeldChanges: changes made while a walk is under way reach
// the new subscriber once each, and never an older value after a newer:
// a change of an entry already walked goes out live after the walk's
// message; a change of an entry not reached yet is not sent live, the
// walk sends its new value (once, retained); an entry created ahead of the
// walk comes from the walk.
func TestKVRetainedHeldChanges(t *testing.T) {
	tb := startBroker(t, nil)
	const n = 600 // three chunks of the fake cursor
	for i := range n {
		if err := tb.put(path("r", i), msgp.AppendInt(nil, i), "n1", uint64(i+1), uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	tb.tree.beforeNext = func(chunk int) {
		if chunk != 1 { // between the first chunk (r/0..r/255) and the second
			return
		}
		for _, w := range []struct {
			i, v int
		}{{0, 1000}, {500, 1500}, {500, 2500}, {700, 700}} {
			if err := tb.put(path("r", w.i), msgp.AppendInt(nil, w.v), "n1", 9999, 9999); err != nil {
				t.Error(err)
			}
		}
	}
	c, _ := dialRawProps(t, tb.addr, 5, packets.ConnectParams{ClientIdentifier: "held", Clean: true}, packets.Properties{})
	c.subscribeRaw("kv/r/+", 0, 1)
	type msg struct {
		payload  string
		retained bool
	}
	got := map[string][]msg{}
	var order []string
	for total := 0; total < n+2; total++ { // n+1 entries, r/0 twice
		pk, err := c.readWithin(5 * time.Second)
		if err != nil {
			t.Fatalf("after %d messages: %v", total, err)
		}
		got[pk.TopicName] = append(got[pk.TopicName], msg{string(pk.Payload), pk.FixedHeader.Retain})
		order = append(order, pk.TopicName)
	}
	if pk, err := c.readWithin(300 * time.Millisecond); err == nil {
		t.Fatalf("one message too many: %s %q", pk.TopicName, pk.Payload)
	}
	topic := func(i int) string { s, _ := TopicForPath("kv", path("r", i)); return s }
	if m := got[topic(0)]; len(m) != 2 || m[0] != (msg{"0", true}) || m[1] != (msg{"1000", false}) {
		t.Errorf("r/0 (walked, then changed): %v, want the walk's 0 retained, then 1000 live", m)
	}
	if m := got[topic(500)]; len(m) != 1 || m[0] != (msg{"2500", true}) {
		t.Errorf("r/500 (changed twice before the walk reached it): %v, want 2500 once, retained", m)
	}
	if m := got[topic(700)]; len(m) != 1 || m[0] != (msg{"700", true}) {
		t.Errorf("r/700 (created ahead of the walk): %v, want 700 once, retained", m)
	}
	for i := range n {
		if i == 0 || i == 500 {
			continue
		}
		if m := got[topic(i)]; len(m) != 1 || m[0] != (msg{strconv.Itoa(i), true}) {
			t.Fatalf("r/%d: %v, want %d once, retained", i, m, i)
		}
	}
	// The live change of r/0 came after the first chunk's messages.
	for k, tp := range order {
		if tp == topic(0) && k > 0 {
			if k < 256 {
				t.Errorf("r/0's live change came at position %d, inside the first chunk", k)
			}
			break
		}
	}
}

// TestKVRetainedNotInMochi: entries are never put in mochi's retained
// store; other retained topics still are.
func TestKVRetainedNotInMochi(t *testing.T) {
	tb := startBroker(t, nil)
	sub := connect(t, tb.addr, "sub", "", "")
	sub.subscribe(t, "#")
	if err := tb.put(path("a"), msgp.AppendInt(nil, 1), "n1", 1, 1); err != nil {
		t.Fatal(err)
	}
	if m := sub.expect(t); m.Topic != "kv/a" {
		t.Fatalf("got %q", m.Topic)
	}
	pub := connect(t, tb.addr, "pub", "", "")
	pub.publishRetained(t, "plain/x", []byte("y"))
	if m := sub.expect(t); m.Topic != "plain/x" {
		t.Fatalf("got %q", m.Topic)
	}
	if _, ok := tb.srv.Topics.Retained.Get("kv/a"); ok {
		t.Errorf("kv/a is in mochi's retained store")
	}
	if _, ok := tb.srv.Topics.Retained.Get("plain/x"); !ok {
		t.Errorf("plain/x is not in mochi's retained store")
	}
	late := connect(t, tb.addr, "late", "", "")
	late.subscribe(t, "#")
	seen := map[string]bool{}
	for range 2 {
		m := late.expect(t)
		if !m.Retain {
			t.Errorf("%s not retained", m.Topic)
		}
		seen[m.Topic] = true
	}
	if !seen["kv/a"] || !seen["plain/x"] {
		t.Errorf("late '#' got %v, want kv/a and plain/x", seen)
	}
	late.expectNone(t, 200*time.Millisecond)
}

// TestKVRetainedAccounting: walks that end every way (done, unsubscribed,
// subscribed again, cut off by a disconnect in the middle, with changes
// held) give back every byte they counted and leave no walk registered.
func TestKVRetainedAccounting(t *testing.T) {
	tb := startBroker(t, nil)
	const n = 2000
	for i := range n {
		if err := tb.put(path("r", i), msgp.AppendInt(nil, i), "n1", uint64(i+1), uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // changes all the while: some are held by walks
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := tb.put(path("r", i%n), msgp.AppendInt(nil, -i), "n1", uint64(n+i+1), uint64(n+i+1)); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(50 * time.Microsecond)
		}
	}()
	// Unsubscribed in the middle of a paced QoS 1 walk.
	a, _ := dialRawProps(t, tb.addr, 5, packets.ConnectParams{ClientIdentifier: "a", Clean: true}, packets.Properties{ReceiveMaximum: 5})
	a.subscribeRaw("kv/#", 1, 1)
	a.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: 60000,
		Filters: packets.Subscriptions{{Filter: "kv/#"}}})
	// Gone in the middle of a QoS 0 walk.
	b, _ := dialRaw(t, tb.addr, 5, packets.ConnectParams{ClientIdentifier: "b", Clean: true})
	b.subscribeRaw("kv/r/+", 0, 1)
	b.conn.Close()
	// Subscribed again, then read to the end.
	c, _ := dialRaw(t, tb.addr, 5, packets.ConnectParams{ClientIdentifier: "c", Clean: true})
	c.subscribeRaw("kv/r/+", 1, 1)
	// (mochi refuses a SUBSCRIBE whose packet id one of its own QoS 1
	// messages to the client has in flight, as the first walk's may:
	// hence an id far above theirs.)
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 60001,
		Filters: packets.Subscriptions{{Filter: "kv/r/+", Qos: 1}}})
	seen := 0
	for seen < n {
		pk, err := c.readWithin(5 * time.Second)
		if err != nil {
			t.Fatalf("c: %v after %d retained messages", err, seen)
		}
		if pk.FixedHeader.Type == packets.Publish {
			if pk.FixedHeader.Retain {
				seen++
			}
			if pk.FixedHeader.Qos > 0 {
				c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
			}
		}
	}
	close(stop)
	<-done
	a.conn.Close()
	c.conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for tb.out.filling.Load() != 0 || tb.out.total.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after every client left: %d walks registered, %d bytes counted", tb.out.filling.Load(), tb.out.total.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKVSubs: the broker builds nothing for a change nobody can receive,
// and never skips one somebody can: ordinary, shared and other-topic
// subscriptions, a session that stays while its client is away, a
// session taken over by a new connection (whose predecessor's end must
// not drop what it inherited), and monitors.
func TestKVSubs(t *testing.T) {
	tb := startBroker(t, nil)
	k := tb.out.kvSubs
	eventually := func(want bool, what string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for k.any() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: anyone subscribes to KV = %v, want %v", what, k.any(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	eventually(false, "at start")
	a := connect(t, tb.addr, "a", "", "")
	a.subscribe(t, "other/#")
	eventually(false, "a filter outside kv")
	a.subscribe(t, "+/x")
	eventually(true, "+/x")
	if _, err := a.Unsubscribe(context.Background(), &paho.Unsubscribe{Topics: []string{"+/x"}}); err != nil {
		t.Fatal(err)
	}
	eventually(false, "after the unsubscribe")
	a.subscribe(t, "$share/g/kv/#")
	eventually(true, "a shared subscription")
	_ = a.Disconnect(&paho.Disconnect{})
	eventually(false, "after a clean session ended")

	// A session of a client that is away stays (its QoS 1 messages are kept).
	dial := func(id string, clean bool, expiry uint32) *client {
		conn, err := net.Dial("tcp", tb.addr)
		if err != nil {
			t.Fatal(err)
		}
		cp := connectPacket(id, "", "")
		cp.CleanStart = clean
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
		c, _, err := dialClient(t, conn, cp)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	p := dial("p", true, 600)
	p.subscribe(t, "kv/#")
	_ = p.Disconnect(&paho.Disconnect{})
	time.Sleep(100 * time.Millisecond)
	eventually(true, "a persistent session while its client is away")

	// Taken over: the old connection's session would expire at its end,
	// the new one resumes it; changes must still reach the new one.
	old := dial("t", true, 0)
	old.subscribe(t, "kv/take/#")
	nw := dial("t", false, 0)
	time.Sleep(100 * time.Millisecond) // the old connection's end is handled
	if err := tb.put(path("take", "x"), msgp.AppendInt(nil, 7), "n1", 1, 1); err != nil {
		t.Fatal(err)
	}
	if m := nw.expect(t); m.Topic != "kv/take/x" || string(m.Payload) != "7" {
		t.Fatalf("after the takeover: %s %q", m.Topic, m.Payload)
	}

	// Monitors.
	q := dial("p", true, 0) // ends p's stored session
	_ = q.Disconnect(&paho.Disconnect{})
	_ = nw.Disconnect(&paho.Disconnect{})
	eventually(false, "every client gone")
	m, err := tb.Monitor("#", 4)
	if err != nil {
		t.Fatal(err)
	}
	eventually(true, "a monitor on #")
	m.Close()
	m.Close()
	eventually(false, "the monitor closed (twice)")
}

// TestKVSubsTakeoverOrder: whichever order mochi reports a takeover in,
// the end of the old connection's session does not drop the filters the
// new one inherited.
func TestKVSubsTakeoverOrder(t *testing.T) {
	tb := startBroker(t, nil)
	for _, oldEndsFirst := range []bool{false, true} {
		k := newKVSubs("kv")
		old := tb.srv.NewClient(nil, "tcp", "same-id", false)
		nw := tb.srv.NewClient(nil, "tcp", "same-id", false)
		sub := packets.Subscription{Filter: "kv/#", Qos: 1}
		k.established(old)
		k.subscribed(old, packets.Packet{Filters: packets.Subscriptions{sub}}, []byte{1})
		nw.State.Subscriptions.Add(sub.Filter, sub) // inherited
		if oldEndsFirst {
			k.ended(old)
			k.established(nw)
		} else {
			k.established(nw)
			k.ended(old)
		}
		if !k.any() {
			t.Fatalf("old ends first %v: the inherited subscription was dropped", oldEndsFirst)
		}
		k.ended(nw)
		if k.any() {
			t.Fatalf("old ends first %v: subscriptions counted after both sessions ended", oldEndsFirst)
		}
	}
}
