package broker

import (
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestPacketIDsClearOfClients: mochi keeps one set of packet ids in flight
// for both directions. The broker's QoS 1 messages to a client keep clear
// of the ids after the client's last, so that its next SUBSCRIBE is not
// refused as "in use"; and a client PUBLISH that reuses an id of ours
// still in flight (mochi then drops our message from flight) leaves no
// bytes counted.
func TestPacketIDsClearOfClients(t *testing.T) {
	tb := startBroker(t, nil)
	c, _ := dialRawProps(t, tb.addr, 5, packets.ConnectParams{ClientIdentifier: "ids", Clean: true}, packets.Properties{ReceiveMaximum: 10})
	c.subscribeRaw("t/#", 1, 1)
	pub := connect(t, tb.addr, "pub", "", "")
	for range 5 {
		pub.publish(t, "t/x", 1, []byte("m"))
	}
	var ids []uint16
	for len(ids) < 5 {
		pk, err := c.read()
		if err != nil {
			t.Fatalf("after %d messages: %v", len(ids), err)
		}
		if pk.FixedHeader.Type == packets.Publish {
			ids = append(ids, pk.PacketID)
		}
	}
	for _, id := range ids {
		if d := id - 1; d < idGuard { // the client's last id was 1
			t.Fatalf("message ids %v: %d is within %d after the client's last id, 1", ids, id, idGuard)
		}
	}
	// The client's next ids: a SUBSCRIBE, unacknowledged messages in
	// flight all the while.
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 2,
		Filters: packets.Subscriptions{{Filter: "u/#", Qos: 1}}})
	if pk, err := c.read(); err != nil || pk.FixedHeader.Type != packets.Suback || pk.ReasonCodes[0] != 1 {
		t.Fatalf("SUBACK: %v type %d codes %v", err, pk.FixedHeader.Type, pk.ReasonCodes)
	}
	// A PUBLISH whose id one of ours has in flight: mochi drops ours.
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "v/y", PacketID: ids[0], Payload: []byte("z")})
	if pk, err := c.read(); err != nil || pk.FixedHeader.Type != packets.Puback {
		t.Fatalf("PUBACK: %v type %d", err, pk.FixedHeader.Type)
	}
	for _, id := range ids {
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id})
	}
	deadline := time.Now().Add(5 * time.Second)
	for tb.out.total.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still counted after every message was acknowledged", tb.out.total.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
