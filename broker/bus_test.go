package broker

import (
	"errors"
	"testing"
	"time"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// recvMsg waits for a monitor's next message.
func recvMsg(t *testing.T, m *Monitor) Message {
	t.Helper()
	select {
	case msg, ok := <-m.Messages():
		if !ok {
			t.Fatal("monitor channel closed")
		}
		return msg
	case <-time.After(5 * time.Second):
		t.Fatal("no message on the monitor")
		return Message{}
	}
}

func noMsg(t *testing.T, m *Monitor, d time.Duration) {
	t.Helper()
	select {
	case msg := <-m.Messages():
		t.Fatalf("unexpected message on %q: %q", msg.Topic, msg.Payload)
	case <-time.After(d):
	}
}

// TestPublishMessage: an MQTT client subscribed to the topic receives
// PublishMessage's payload; the broker's own topics are refused.
func TestPublishMessage(t *testing.T) {
	tb := startBroker(t, nil)
	sub := connect(t, tb.addr, "sub", "", "")
	sub.subscribe(t, "t/#", "kv/#")
	if err := tb.PublishMessage("t/a", []byte{0x92, 0xa5, 'H', 'e', 'l', 'l', 'o', 42}); err != nil {
		t.Fatal(err)
	}
	if m := sub.expect(t); m.Topic != "t/a" || string(m.Payload) != "\x92\xa5Hello*" || m.Retain {
		t.Fatalf("got %q %q retain=%v", m.Topic, m.Payload, m.Retain)
	}
	for _, topic := range []string{"kv", "kv/x", "edgekv/sync/to/p1/from/n1/update", "$SYS/x"} {
		if err := tb.PublishMessage(topic, []byte("x")); !errors.Is(err, ErrReservedTopic) {
			t.Errorf("%q: %v, want ErrReservedTopic", topic, err)
		}
	}
	for _, topic := range []string{"", "a/+", "a/#", "a\x00", string([]byte{0xff})} {
		if err := tb.PublishMessage(topic, []byte("x")); !errors.Is(err, ErrTopic) {
			t.Errorf("%q: %v, want ErrTopic", topic, err)
		}
	}
	sub.expectNone(t, 200*time.Millisecond)
	// Sync prefix topics other than the peers' are the node's bus.
	if err := tb.PublishMessage("edgekv/sync/ping", []byte("p")); err != nil {
		t.Errorf("edgekv/sync/ping: %v", err)
	}
}

// TestPublishRetained: a retained message is delivered to a client that
// subscribes later, with the retain flag; an empty one removes it.
func TestPublishRetained(t *testing.T) {
	tb := startBroker(t, nil)
	if err := tb.PublishRetained("ha/sensor/x/config", []byte(`{"name":"x"}`)); err != nil {
		t.Fatal(err)
	}
	sub := connect(t, tb.addr, "late", "", "")
	sub.subscribe(t, "ha/#")
	if m := sub.expect(t); m.Topic != "ha/sensor/x/config" || string(m.Payload) != `{"name":"x"}` || !m.Retain {
		t.Fatalf("got %q %q retain=%v", m.Topic, m.Payload, m.Retain)
	}
	if err := tb.PublishRetained("ha/sensor/x/config", nil); err != nil {
		t.Fatal(err)
	}
	sub.expect(t) // the empty publish itself, live
	again := connect(t, tb.addr, "later", "", "")
	again.subscribe(t, "ha/#")
	again.expectNone(t, 200*time.Millisecond)
	if err := tb.PublishRetained("kv/x", []byte("1")); !errors.Is(err, ErrReservedTopic) {
		t.Errorf("kv/x: %v, want ErrReservedTopic", err)
	}
}

// TestMonitor: a monitor sees client publishes, PublishMessage and the
// node's KV publishes on matching topics, from when it started (no
// retained replay), never peer sync traffic; Close ends it.
func TestMonitor(t *testing.T) {
	tb := startBroker(t, nil)
	cl := connect(t, tb.addr, "pub", "", "")
	cl.publish(t, "t/old", 1, []byte("retained")) // plain publish, not retained
	cl.barrier(t)                                 // handed to its subscribers (none) before the monitors start
	if err := tb.put(tree.Path{tree.Str("r")}, []byte{0x01}, "n1", 1, 1); err != nil {
		t.Fatal(err)
	}
	all, err := tb.Monitor("#", 10)
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	sub, err := tb.Monitor("t/+", 10)
	if err != nil {
		t.Fatal(err)
	}
	noMsg(t, all, 100*time.Millisecond) // the retained kv/r is not replayed

	cl.publish(t, "t/a", 1, []byte("one"))
	for _, m := range []*Monitor{all, sub} {
		if msg := recvMsg(t, m); msg.Topic != "t/a" || string(msg.Payload) != "one" {
			t.Fatalf("got %q %q", msg.Topic, msg.Payload)
		}
	}
	if err := tb.PublishMessage("u", []byte("two")); err != nil {
		t.Fatal(err)
	}
	if msg := recvMsg(t, all); msg.Topic != "u" {
		t.Fatalf("got %q", msg.Topic)
	}
	if err := tb.put(tree.Path{tree.Str("k")}, []byte{0x05}, "n1", 2, 2); err != nil {
		t.Fatal(err)
	}
	if msg := recvMsg(t, all); msg.Topic != "kv/k" || string(msg.Payload) != "5" {
		t.Fatalf("KV publish seen as %q %q", msg.Topic, msg.Payload)
	}
	// Peer sync traffic reaches the peer, not the monitor.
	p := connect(t, tb.addr, "link-p1", peer1, peer1Pw)
	p.subscribe(t, "edgekv/sync/to/p1/#")
	tb.sync.waitEvents(t, "up p1")
	if err := tb.SendToPeer(peer1, wire.KindUpdate, []byte("u1")); err != nil {
		t.Fatal(err)
	}
	if m := p.expect(t); string(m.Payload) != "u1" {
		t.Fatalf("peer got %q", m.Payload)
	}
	noMsg(t, all, 200*time.Millisecond)
	noMsg(t, sub, 0)
	// Closed: nothing more, and the channel stays open.
	sub.Close()
	cl.publish(t, "t/b", 1, []byte("three"))
	if msg := recvMsg(t, all); msg.Topic != "t/b" {
		t.Fatalf("got %q", msg.Topic)
	}
	noMsg(t, sub, 200*time.Millisecond)
	if sub.Overflowed() {
		t.Error("a closed monitor reports an overflow")
	}
}

// TestMonitorOverflow: a monitor that is not read never holds up a
// publisher: past its queue it takes nothing more and closes its channel
// after the queued messages; other monitors are unaffected.
func TestMonitorOverflow(t *testing.T) {
	tb := startBroker(t, nil)
	before := MonitorOverflows()
	slow, err := tb.Monitor("x", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast, err := tb.Monitor("x", 100)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	cl := connect(t, tb.addr, "pub", "", "")
	for i := range 10 {
		cl.publish(t, "x", 1, []byte{byte(i)}) // QoS 1: acknowledged after delivery
	}
	var got []byte
	for msg := range slow.Messages() {
		got = append(got, msg.Payload[0])
	}
	if string(got) != "\x00\x01\x02" || !slow.Overflowed() || MonitorOverflows() != before+1 {
		t.Errorf("slow monitor: got %v, overflowed %v, count %d", got, slow.Overflowed(), MonitorOverflows()-before)
	}
	for i := range 10 {
		if msg := recvMsg(t, fast); msg.Payload[0] != byte(i) {
			t.Fatalf("fast monitor message %d: %v", i, msg.Payload)
		}
	}
	tb.logs.waitLog(t, "bus monitor fell behind", "topic=x")
}

func TestMonitorFilters(t *testing.T) {
	tb := startBroker(t, nil)
	for _, f := range []string{"", "a/#/b", "a+", "a/b#", "$share/g/x", "$SHARE/g/x", "a\x00"} {
		if _, err := tb.Monitor(f, 1); !errors.Is(err, ErrTopic) {
			t.Errorf("%q: %v, want ErrTopic", f, err)
		}
	}
	for _, f := range []string{"#", "+", "a/+/c", "a/#", "$SYS/#"} {
		m, err := tb.Monitor(f, 1)
		if err != nil {
			t.Errorf("%q: %v", f, err)
			continue
		}
		m.Close()
	}
}
