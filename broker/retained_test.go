package broker

import (
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/tinylib/msgp/msgp"
)

// fillEntries publishes n retained entries kv/r/<i>.
func fillEntries(t *testing.T, tb *testBroker, n int) {
	t.Helper()
	for i := range n {
		if err := tb.put(path("r", i), msgp.AppendInt(nil, i), "n1", uint64(i+1), uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
}

// subscribeRaw subscribes to filter and checks that the SUBACK comes first
// and grants qos.
func (c *rawClient) subscribeRaw(filter string, qos byte, id uint16) {
	c.t.Helper()
	c.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		PacketID:    id,
		Filters:     packets.Subscriptions{{Filter: filter, Qos: qos}},
	})
	pk, err := c.read()
	if err != nil || pk.FixedHeader.Type != packets.Suback {
		c.t.Fatalf("SUBACK expected first, got %v (type %d)", err, pk.FixedHeader.Type)
	}
	if len(pk.ReasonCodes) != 1 || pk.ReasonCodes[0] != qos {
		c.t.Fatalf("SUBACK codes %v, want [%d]", pk.ReasonCodes, qos)
	}
}

// collect reads publishes until want distinct topics have come (acking
// QoS 1 ones) or none comes for 5 s; it returns the distinct topics seen.
func (c *rawClient) collect(want int, qos byte) map[string]bool {
	c.t.Helper()
	seen := make(map[string]bool, want)
	var last []uint16
	for len(seen) < want {
		pk, err := c.read()
		if err != nil {
			c.t.Logf("read after %d distinct topics: %v last %v", len(seen), err, last)
			return seen
		}
		if pk.FixedHeader.Type != packets.Publish {
			c.t.Fatalf("unexpected packet type %d", pk.FixedHeader.Type)
		}
		if !pk.FixedHeader.Retain || pk.FixedHeader.Qos != qos {
			c.t.Fatalf("%s: retain %v qos %d, want retained at QoS %d", pk.TopicName, pk.FixedHeader.Retain, pk.FixedHeader.Qos, qos)
		}
		seen[pk.TopicName] = true
		last = append(last, pk.PacketID)
		if len(last) > 25 {
			last = last[1:]
		}
		if qos > 0 {
			c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
		}
	}
	return seen
}

// TestRetainedDeliveryComplete: a new "kv/#" subscriber gets every one of
// 50,000 retained entries, at QoS 0 and at QoS 1 over MQTT 3.1.1 and 5
// (mochi alone delivered about 40,000, exactly 8,192 and 40).
func TestRetainedDeliveryComplete(t *testing.T) {
	tb := startBroker(t, nil)
	const n = 50_000
	fillEntries(t, tb, n)
	for _, tc := range []struct {
		name    string
		version byte
		qos     byte
		props   packets.Properties
	}{
		{"qos0-v5", 5, 0, packets.Properties{}},
		{"qos1-v311", 4, 1, packets.Properties{}},
		{"qos1-v5-rm20", 5, 1, packets.Properties{ReceiveMaximum: 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := dialRawProps(t, tb.addr, tc.version, packets.ConnectParams{ClientIdentifier: tc.name, Clean: true}, tc.props)
			c.subscribeRaw("kv/#", tc.qos, 1)
			seen := c.collect(n, tc.qos)
			if len(seen) != n {
				t.Fatalf("%d of %d retained entries received", len(seen), n)
			}
			for _, i := range []int{0, n / 2, n - 1} {
				topic, err := TopicForPath("kv", path("r", i))
				if err != nil {
					t.Fatal(err)
				}
				if !seen[topic] {
					t.Errorf("%s missing", topic)
				}
			}
		})
	}
}

// TestRetainedDeliveryPaced: a v5 client with receive maximum 5 never has
// more than 5 retained messages unacknowledged; each PUBACK lets one more
// go, and a QoS 0 client that stops reading stalls only its own delivery.
func TestRetainedDeliveryPaced(t *testing.T) {
	tb := startBroker(t, nil)
	fillEntries(t, tb, 200)

	c, _ := dialRawProps(t, tb.addr, 5, packets.ConnectParams{ClientIdentifier: "rm5", Clean: true}, packets.Properties{ReceiveMaximum: 5})
	c.subscribeRaw("kv/r/+", 1, 1)
	var ids []uint16
	for range 5 {
		pk, err := c.read()
		if err != nil || pk.FixedHeader.Type != packets.Publish {
			t.Fatalf("publish expected: %v", err)
		}
		ids = append(ids, pk.PacketID)
	}
	if pk, err := c.readWithin(300 * time.Millisecond); err == nil {
		t.Fatalf("a 6th message came with 5 unacknowledged: %s", pk.TopicName)
	}
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: ids[0]})
	if pk, err := c.read(); err != nil || pk.FixedHeader.Type != packets.Publish {
		t.Fatalf("no message after a PUBACK freed a slot: %v", err)
	}
	if pk, err := c.readWithin(300 * time.Millisecond); err == nil {
		t.Fatalf("a message beyond the window came: %s", pk.TopicName)
	}

	// A QoS 0 client that never reads: another subscriber is not held up.
	fillEntries(t, tb, 20_000)
	stuck, _ := dialRaw(t, tb.addr, 4, packets.ConnectParams{ClientIdentifier: "stuck", Clean: true})
	stuck.subscribeRaw("kv/#", 0, 1)
	other, _ := dialRaw(t, tb.addr, 4, packets.ConnectParams{ClientIdentifier: "other", Clean: true})
	other.subscribeRaw("kv/#", 0, 1)
	if got := len(other.collect(20_000, 0)); got != 20_000 {
		t.Fatalf("other subscriber got %d of 20,000 while one did not read", got)
	}
}

// TestRetainedDeliveryStopsOnUnsubscribe: after UNSUBSCRIBE (and its
// UNSUBACK) no more retained messages of that filter arrive.
func TestRetainedDeliveryStopsOnUnsubscribe(t *testing.T) {
	tb := startBroker(t, nil)
	fillEntries(t, tb, 1000)
	c, _ := dialRawProps(t, tb.addr, 5, packets.ConnectParams{ClientIdentifier: "u", Clean: true}, packets.Properties{ReceiveMaximum: 2})
	c.subscribeRaw("kv/#", 1, 1)
	var ids []uint16
	for range 2 {
		pk, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, pk.PacketID)
	}
	c.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1},
		PacketID:    60000, // mochi refuses ids it has in flight itself (0x91)
		Filters:     packets.Subscriptions{{Filter: "kv/#"}},
	})
	if pk, err := c.read(); err != nil || pk.FixedHeader.Type != packets.Unsuback || len(pk.ReasonCodes) != 1 || pk.ReasonCodes[0] != 0 {
		t.Fatalf("UNSUBACK with success expected: %v type %d codes %v", err, pk.FixedHeader.Type, pk.ReasonCodes)
	}
	// Acknowledge both: the delivery must not go on.
	for _, id := range ids {
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id})
	}
	got := 0
	for {
		pk, err := c.readWithin(500 * time.Millisecond)
		if err != nil {
			break
		}
		if pk.FixedHeader.Type == packets.Publish {
			t.Logf("after UNSUBACK: %s id %d (acked %v)", pk.TopicName, pk.PacketID, ids)
			got++
		}
	}
	if got > 0 {
		t.Fatalf("%d retained messages after UNSUBACK", got)
	}
}
