package broker

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/tinylib/msgp/msgp"
)

// BenchmarkHookPassThrough measures what edgekv's hook adds to a publish
// on a topic outside the KV and sync prefixes: OnPublish once, and the
// delivery ACL check for one subscriber.
func BenchmarkHookPassThrough(b *testing.B) {
	br, err := New(Config{Node: "n1", PeerUsers: map[string]string{"p1": "pw"}}, newFakeTree(), newFakeSync())
	if err != nil {
		b.Fatal(err)
	}
	h := br.hook
	cl := br.srv.NewClient(nil, "bench", "bench-client", false)
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   "sensors/kitchen/temperature",
		Payload:     []byte("21.5"),
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.OnPublish(cl, pk); err != nil {
			b.Fatal(err)
		}
		if !h.OnACLCheck(cl, pk.TopicName, false) {
			b.Fatal("denied")
		}
	}
}

// BenchmarkHookSyncACL measures the delivery ACL check of a sync message
// for its peer.
func BenchmarkHookSyncACL(b *testing.B) {
	br, err := New(Config{Node: "n1", PeerUsers: map[string]string{"p1": "pw"}}, newFakeTree(), newFakeSync())
	if err != nil {
		b.Fatal(err)
	}
	h := br.hook
	cl := br.srv.NewClient(nil, "bench", "bench-client", false)
	cl.Properties.Username = []byte("p1")
	topic := "edgekv/sync/to/p1/from/n1/update"
	b.ReportAllocs()
	for b.Loop() {
		if !h.OnACLCheck(cl, topic, false) {
			b.Fatal("denied")
		}
	}
}

// BenchmarkMsgpackToJSON converts a small sensor value (a map of a float,
// a string and an int) to the JSON payload MQTT subscribers get.
func BenchmarkMsgpackToJSON(b *testing.B) {
	v := msgp.AppendMapHeader(nil, 3)
	v = msgp.AppendFloat64(msgp.AppendString(v, "t"), 21.5)
	v = msgp.AppendString(msgp.AppendString(v, "unit"), "C")
	v = msgp.AppendInt64(msgp.AppendString(v, "at"), 1764950400)
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := MsgpackToJSON(v); err != nil {
			b.Fatal(err)
		}
	}
}
