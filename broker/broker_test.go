package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"
	mpackets "github.com/mochi-mqtt/server/v2/packets"
	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// MQTT v5 reason codes the tests expect.
const (
	rcSuccess       = 0x00
	rcUnspecified   = 0x80
	rcBadUserPw     = 0x86
	rcNotAuthorized = 0x87
	rcTopicInvalid  = 0x90
	rcQuota         = 0x97
	rcPayloadFormat = 0x99
)

func path(elems ...any) tree.Path {
	var p tree.Path
	for _, e := range elems {
		switch v := e.(type) {
		case string:
			p = append(p, tree.Str(v))
		case int:
			p = append(p, tree.Int(int64(v)))
		}
	}
	return p
}

func TestPublishEntryRetained(t *testing.T) {
	tb := startBroker(t, nil)
	// Published before any client: retained for late subscribers.
	val := msgp.AppendFloat64(nil, 21.5)
	if err := tb.put(path("home", "temp"), val, "n7", 3, 42); err != nil {
		t.Fatal(err)
	}
	obj := msgp.AppendString(msgp.AppendMapHeader(nil, 1), "on")
	obj = msgp.AppendBool(obj, true)
	if err := tb.put(path("home", "lamp", 2), obj, "n8", 9, 43); err != nil {
		t.Fatal(err)
	}
	sub := connect(t, tb.addr, "late", "", "")
	if rc := sub.subscribe(t, "kv/#"); rc[0] > 2 {
		t.Fatalf("SUBACK %x", rc)
	}
	got := map[string]*paho.Publish{}
	for range 2 {
		m := sub.expect(t)
		got[m.Topic] = m
	}
	m := got["kv/home/temp"]
	if m == nil {
		t.Fatalf("no retained message on kv/home/temp; got %v", got)
	}
	if string(m.Payload) != "21.5" || !m.Retain {
		t.Errorf("payload %q retain %v, want 21.5 retained", m.Payload, m.Retain)
	}
	if m.Properties == nil || m.Properties.ContentType != "application/json" {
		t.Errorf("content type = %+v, want application/json", m.Properties)
	} else {
		u := m.Properties.User
		if u.Get("node") != "n7" || u.Get("tick") != "3" || u.Get("tock") != "42" {
			t.Errorf("user properties = %+v", u)
		}
		if m.Properties.PayloadFormat == nil || *m.Properties.PayloadFormat != 1 {
			t.Errorf("payload format = %v, want 1 (UTF-8)", m.Properties.PayloadFormat)
		}
	}
	if m := got["kv/home/lamp/:2"]; m == nil || string(m.Payload) != `{"on":true}` {
		t.Errorf("kv/home/lamp/:2 = %+v", m)
	}

	// Deletion reaches current subscribers as an empty payload and clears
	// the retained message.
	if err := tb.put(path("home", "temp"), nil, "n7", 4, 44); err != nil {
		t.Fatal(err)
	}
	m = sub.expect(t)
	if m.Topic != "kv/home/temp" || len(m.Payload) != 0 {
		t.Fatalf("deletion: got %q %q", m.Topic, m.Payload)
	}
	if m.Properties == nil || m.Properties.User.Get("tick") != "4" {
		t.Errorf("deletion user properties = %+v", m.Properties)
	}
	late := connect(t, tb.addr, "later", "", "")
	late.subscribe(t, "kv/home/temp")
	late.expectNone(t, 300*time.Millisecond)
	late.subscribe(t, "kv/home/lamp/+")
	if m := late.expect(t); m.Topic != "kv/home/lamp/:2" {
		t.Fatalf("got %q", m.Topic)
	}
}

func TestPublishEntryErrors(t *testing.T) {
	tb := startBroker(t, nil)
	meta := tree.Path{tree.Nil(), tree.Str("acl")}
	if err := tb.PublishEntry(meta, msgp.AppendNil(nil), "n1", 1, 1); err != nil {
		t.Errorf("meta tree entry: %v, want nil (never published)", err)
	}
	if err := tb.PublishEntry(path("a\xff"), msgp.AppendNil(nil), "n1", 1, 1); !errors.Is(err, tree.ErrInvalidPath) {
		t.Errorf("invalid UTF-8 element: %v, want ErrInvalidPath", err)
	}
	if err := tb.PublishEntry(path("a"), []byte{0xc1}, "n1", 1, 1); err != nil {
		t.Errorf("bad msgpack, nobody subscribed: %v, want nil (nothing built)", err)
	}
	sub := connect(t, tb.addr, "sub", "", "")
	sub.subscribe(t, "kv/a")
	if err := tb.PublishEntry(path("a"), []byte{0xc1}, "n1", 1, 1); !errors.Is(err, tree.ErrInvalidValue) {
		t.Errorf("bad msgpack: %v, want ErrInvalidValue", err)
	}
}

func TestClientWrite(t *testing.T) {
	tb := startBroker(t, nil)
	watcher := connect(t, tb.addr, "watcher", "", "")
	watcher.subscribe(t, "kv/#")
	writer := connect(t, tb.addr, "writer", "", "")

	cases := []struct {
		name, topic, payload string
		path                 tree.Path
		value                []byte // nil: delete
	}{
		{"json number", "kv/home/temp", "21.5", path("home", "temp"), msgp.AppendFloat64(nil, 21.5)},
		{"json int", "kv/home/count/:3", "7", path("home", "count", 3), msgp.AppendUint64(nil, 7)},
		{"json object", "kv/cfg", `{"b":[1,"x"],"a":null}`, path("cfg"),
			msgp.AppendArrayHeader(msgp.AppendString(msgp.AppendNil(msgp.AppendString(msgp.AppendMapHeader(nil, 2), "a")), "b"), 2)},
		{"plain string", "kv/home/mode", "away", path("home", "mode"), msgp.AppendString(nil, "away")},
		{"escaped topic", "kv/:.$x/a:_b", `"v"`, path("$x", "a/b"), msgp.AppendString(nil, "v")},
		{"empty deletes", "kv/home/mode", "", path("home", "mode"), nil},
	}
	cases[2].value = msgp.AppendString(msgp.AppendUint64(cases[2].value, 1), "x")
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if rc := writer.publish(t, tc.topic, 1, []byte(tc.payload)); rc != rcSuccess {
				t.Fatalf("PUBACK reason %#x", rc)
			}
			w := tb.tree.written()
			if len(w) != i+1 {
				t.Fatalf("%d writes, want %d", len(w), i+1)
			}
			if !w[i].path.Equal(tc.path) || string(w[i].value) != string(tc.value) || (w[i].value == nil) != (tc.value == nil) {
				t.Errorf("Write(%#v, %x), want (%#v, %x)", w[i].path, w[i].value, tc.path, tc.value)
			}
		})
	}
	// The client's packets themselves are neither forwarded nor retained.
	watcher.expectNone(t, 300*time.Millisecond)
	late := connect(t, tb.addr, "late", "", "")
	late.subscribe(t, "kv/#")
	late.expectNone(t, 300*time.Millisecond)
}

// TestWriteThenPublishEntry wires the fake tree like the node: after a
// write it publishes the canonical entry (from within Write, on the
// publisher's goroutine).
func TestWriteThenPublishEntry(t *testing.T) {
	tb := startBroker(t, nil)
	tb.tree.mu.Lock()
	tb.tree.after = func(p tree.Path, v []byte) {
		if err := tb.put(p, v, testNode, 1, 1); err != nil {
			t.Errorf("PublishEntry: %v", err)
		}
	}
	tb.tree.mu.Unlock()
	sub := connect(t, tb.addr, "sub", "", "")
	sub.subscribe(t, "kv/#")
	pub := connect(t, tb.addr, "pub", "", "")
	if rc := pub.publish(t, "kv/x", 1, []byte(` {"b": 2, "a": 1.0} `)); rc != rcSuccess {
		t.Fatalf("PUBACK %#x", rc)
	}
	m := sub.expect(t)
	if m.Topic != "kv/x" || string(m.Payload) != `{"a":1.0,"b":2}` {
		t.Fatalf("got %q %q, want the canonical JSON", m.Topic, m.Payload)
	}
	sub.expectNone(t, 200*time.Millisecond)
}

func TestRefusedWrites(t *testing.T) {
	tb := startBroker(t, func(c *Config) { c.MaxPayloadBytes = 100 })
	tb.tree.setFail(func(p tree.Path, v []byte) error {
		switch p[0].StrVal() {
		case "conflict":
			return tree.ErrConflict
		case "badvalue":
			return tree.ErrInvalidValue
		case "badpath":
			return tree.ErrInvalidPath
		case "missing":
			return tree.ErrNotFound
		case "broken":
			return errors.New("disk on fire")
		}
		return nil
	})
	watcher := connect(t, tb.addr, "watcher", "", "")
	watcher.subscribe(t, "kv/#")
	c := connect(t, tb.addr, "writer", "", "")
	for _, tc := range []struct {
		name, topic string
		payload     []byte
		qos         byte
		want        byte
		wantWrite   bool
	}{
		{"unshielded dollar", "kv/$x", []byte("1"), 1, rcTopicInvalid, false},
		{"non-canonical int", "kv/:x10", []byte("1"), 1, rcTopicInvalid, false},
		{"empty level", "kv/a//b", []byte("1"), 1, rcTopicInvalid, false},
		{"too large", "kv/a", []byte(strings.Repeat("x", 101)), 1, rcQuota, false},
		{"invalid UTF-8", "kv/a", []byte("a\xffb"), 1, rcPayloadFormat, false},
		{"duplicate keys", "kv/a", []byte(`{"k":1,"k":2}`), 1, rcPayloadFormat, false},
		{"tree conflict", "kv/conflict", []byte("1"), 1, rcUnspecified, false},
		{"tree bad value", "kv/badvalue", []byte("1"), 1, rcPayloadFormat, false},
		{"tree bad path", "kv/badpath", []byte("1"), 1, rcTopicInvalid, false},
		{"tree other error", "kv/broken", []byte("1"), 1, rcUnspecified, false},
		{"qos 2 refused with PUBREC", "kv/$y", []byte("1"), 2, rcTopicInvalid, false},
		{"delete of nothing succeeds", "kv/missing", nil, 1, rcSuccess, false},
		{"qos 2 accepted", "kv/ok", []byte("1"), 2, rcSuccess, true},
		{"exactly the limit", "kv/ok", []byte(strings.Repeat("x", 100)), 1, rcSuccess, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(tb.tree.written())
			if rc := c.publish(t, tc.topic, tc.qos, tc.payload); rc != tc.want {
				t.Fatalf("reason %#x, want %#x", rc, tc.want)
			}
			if got := len(tb.tree.written()) - before; got != map[bool]int{false: 0, true: 1}[tc.wantWrite] {
				t.Fatalf("%d writes recorded", got)
			}
			if tc.want >= 0x80 {
				tb.logs.waitLog(t, "write refused", "topic="+tc.topic, "error=")
			}
		})
	}
	// The reason string says why.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pr, _ := c.Publish(ctx, &paho.Publish{Topic: "kv/a", QoS: 1, Payload: []byte("a\xff")})
	if pr == nil || pr.Properties == nil || !strings.Contains(pr.Properties.ReasonString, "payload format invalid: tree: invalid value: not valid UTF-8") {
		t.Errorf("PUBACK %+v: reason string missing", pr)
	}
	// QoS 0 refusals are dropped silently (and logged).
	c.publish(t, "kv/$z", 0, []byte("1"))
	tb.logs.waitLog(t, "write refused", "topic=kv/$z")
	watcher.expectNone(t, 300*time.Millisecond)
	late := connect(t, tb.addr, "late", "", "")
	late.subscribe(t, "kv/#")
	late.expectNone(t, 300*time.Millisecond)
}

// TestPubackAfterWrite: a QoS 1 PUBACK leaves only once Tree.Write has
// returned, and a slow write holds back only its own client.
func TestPubackAfterWrite(t *testing.T) {
	tb := startBroker(t, nil)
	gate := make(chan struct{})
	tb.tree.mu.Lock()
	tb.tree.gate = gate
	tb.tree.mu.Unlock()
	slow := connect(t, tb.addr, "slow", "", "")
	acked := make(chan byte, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pr, err := slow.Publish(ctx, &paho.Publish{Topic: "kv/slow", QoS: 1, Payload: []byte("1")})
		if err != nil {
			t.Errorf("publish: %v", err)
			acked <- 0xff
			return
		}
		acked <- pr.ReasonCode
	}()
	<-tb.tree.started
	// Meanwhile other clients are served.
	other := connect(t, tb.addr, "other", "", "")
	other.subscribe(t, "plain/#")
	other.publish(t, "plain/x", 1, []byte("hi"))
	if m := other.expect(t); m.Topic != "plain/x" {
		t.Fatalf("got %q", m.Topic)
	}
	select {
	case rc := <-acked:
		t.Fatalf("PUBACK (%#x) before Write returned", rc)
	case <-time.After(300 * time.Millisecond):
	}
	close(gate)
	select {
	case rc := <-acked:
		if rc != rcSuccess {
			t.Fatalf("PUBACK %#x", rc)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no PUBACK after Write returned")
	}
	if w := tb.tree.written(); len(w) != 1 || !w[0].path.Equal(path("slow")) {
		t.Fatalf("writes %+v", w)
	}
}

// TestV311 checks what an MQTT 3.1.1 client gets: writes work; refusals
// are acknowledged as usual and dropped; connection refusals use v3 codes.
func TestV311(t *testing.T) {
	tb := startBroker(t, nil)
	watcher := connect(t, tb.addr, "watcher", "", "")
	watcher.subscribe(t, "kv/#")
	c, ack := dialRaw(t, tb.addr, 4, mpackets.ConnectParams{ClientIdentifier: "v3", Clean: true})
	if ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %#x", ack.ReasonCode)
	}
	pk, err := c.publishRaw("kv/v3", 1, 1, []byte("5"), 5*time.Second)
	if err != nil || pk.FixedHeader.Type != mpackets.Puback || pk.PacketID != 1 {
		t.Fatalf("write: %+v %v", pk, err)
	}
	// Refused: bad payload, bad topic, too large (QoS 1 and 2): acked, dropped.
	pk, err = c.publishRaw("kv/v3", 1, 2, []byte("a\xff"), 5*time.Second)
	if err != nil || pk.FixedHeader.Type != mpackets.Puback || pk.PacketID != 2 {
		t.Fatalf("refused write: %+v %v", pk, err)
	}
	pk, err = c.publishRaw("kv/$v3", 2, 3, []byte("1"), 5*time.Second)
	if err != nil || pk.FixedHeader.Type != mpackets.Pubrec || pk.PacketID != 3 {
		t.Fatalf("refused QoS 2 write: %+v %v", pk, err)
	}
	c.send(mpackets.Packet{FixedHeader: mpackets.FixedHeader{Type: mpackets.Pubrel, Qos: 1}, PacketID: 3})
	if pk, err = c.read(); err != nil || pk.FixedHeader.Type != mpackets.Pubcomp {
		t.Fatalf("PUBCOMP: %+v %v", pk, err)
	}
	_, _ = c.publishRaw("kv/v3", 0, 0, []byte("a\xff"), 0)
	tb.logs.waitLog(t, "write refused", "topic=kv/$v3")
	time.Sleep(100 * time.Millisecond)
	if w := tb.tree.written(); len(w) != 1 || !w[0].path.Equal(path("v3")) {
		t.Fatalf("writes %+v, want only the valid one", w)
	}
	watcher.expectNone(t, 200*time.Millisecond)

	// Connection refusals in v3.1.1 codes.
	for _, tc := range []struct {
		name string
		cp   mpackets.ConnectParams
		want byte
	}{
		{"bad password", mpackets.ConnectParams{ClientIdentifier: "x", Clean: true, UsernameFlag: true, Username: []byte(peer1), PasswordFlag: true, Password: []byte("wrong")}, 0x04},
		{"unknown user", mpackets.ConnectParams{ClientIdentifier: "x", Clean: true, UsernameFlag: true, Username: []byte("nobody")}, 0x04},
		{"reserved client ID", mpackets.ConnectParams{ClientIdentifier: "inline", Clean: true}, 0x02},
		{"will on a KV topic", mpackets.ConnectParams{ClientIdentifier: "x", Clean: true, WillFlag: true, WillTopic: "kv/x", WillPayload: []byte("1")}, 0x05},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ack := dialRaw(t, tb.addr, 4, tc.cp)
			if ack.ReasonCode != tc.want {
				t.Fatalf("CONNACK %#x, want %#x", ack.ReasonCode, tc.want)
			}
		})
	}
}

func TestConnectAuth(t *testing.T) {
	tb := startBroker(t, nil)
	connect(t, tb.addr, "peer", peer1, peer1Pw)
	connect(t, tb.addr, "anon", "", "") // anonymous from loopback
	for _, tc := range []struct {
		name string
		cp   *paho.Connect
		want byte
	}{
		{"wrong password", connectPacket("x", peer1, "secret-2"), rcBadUserPw},
		{"other peer's password", connectPacket("x", peer2, peer1Pw), rcBadUserPw},
		{"no password", connectPacket("x", peer1, ""), rcBadUserPw},
		{"unknown user", connectPacket("x", "mallory", "pw"), rcBadUserPw},
		{"password only", connectPacket("x", "", "pw"), rcBadUserPw},
		{"reserved client ID", connectPacket("inline", "", ""), 0x85},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if rc := connectRefused(t, tb.addr, tc.cp); rc != tc.want {
				t.Fatalf("CONNACK %#x, want %#x", rc, tc.want)
			}
		})
	}
	t.Run("keepalive capped", func(t *testing.T) {
		for _, ka := range []uint16{0, 3600} {
			conn, err := net.Dial("tcp", tb.addr)
			if err != nil {
				t.Fatal(err)
			}
			cp := connectPacket("ka", "", "")
			cp.KeepAlive = ka
			_, ca, err := dialClient(t, conn, cp)
			if err != nil {
				t.Fatal(err)
			}
			if ca.Properties == nil || ca.Properties.ServerKeepAlive == nil || *ca.Properties.ServerKeepAlive != maxKeepalive {
				t.Errorf("keepalive %d: CONNACK properties %+v, want Server Keep Alive %d", ka, ca.Properties, maxKeepalive)
			}
		}
	})
	t.Run("will on sync topic", func(t *testing.T) {
		cp := connectPacket("x", peer1, peer1Pw)
		cp.WillMessage = &paho.WillMessage{Topic: "edgekv/sync/to/p2/from/n1/update", Payload: []byte("forged")}
		if rc := connectRefused(t, tb.addr, cp); rc != rcTopicInvalid {
			t.Fatalf("CONNACK %#x, want %#x", rc, rcTopicInvalid)
		}
	})
}

func TestAnonymousNotAllowed(t *testing.T) {
	tb := startBroker(t, func(c *Config) { c.AllowAnonymous = false })
	if rc := connectRefused(t, tb.addr, connectPacket("anon", "", "")); rc != rcNotAuthorized {
		t.Fatalf("CONNACK %#x, want %#x", rc, rcNotAuthorized)
	}
	connect(t, tb.addr, "peer", peer1, peer1Pw)
}

// TestAnonymousOnlyFromLoopback dials a non-loopback address of this
// machine, if it has one.
func TestAnonymousOnlyFromLoopback(t *testing.T) {
	var ip net.IP
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && !n.IP.IsLinkLocalUnicast() {
			ip = n.IP
			break
		}
	}
	if ip == nil {
		t.Skip("no non-loopback IPv4 address")
	}
	tb := startBroker(t, func(c *Config) { c.MQTT = []string{net.JoinHostPort(ip.String(), "0")} })
	if rc := connectRefused(t, tb.addr, connectPacket("anon", "", "")); rc != rcNotAuthorized {
		t.Fatalf("CONNACK %#x, want %#x", rc, rcNotAuthorized)
	}
	connect(t, tb.addr, "peer", peer1, peer1Pw)
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:1883":        true,
		"127.8.9.10:1":          true,
		"[::1]:1883":            true,
		"[::ffff:127.0.0.1]:80": true,
		"10.0.0.1:1883":         false,
		"[fe80::1%eth0]:1883":   false,
		"garbage":               false,
		"":                      false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestSyncHiddenFromOrdinaryClients(t *testing.T) {
	tb := startBroker(t, nil)
	snoop := connect(t, tb.addr, "snoop", "", "")
	rc := snoop.subscribe(t, "#", "+/sync/#", "edgekv/sync/#", "edgekv/sync/to/p1/#")
	if rc[0] > 2 || rc[1] > 2 || rc[2] != rcNotAuthorized || rc[3] != rcNotAuthorized {
		t.Fatalf("SUBACK %x, want wildcards granted and sync filters refused", rc)
	}
	p := connect(t, tb.addr, "peer-p1", peer1, peer1Pw)
	// A peer may subscribe only to its own sync topic.
	if rc := p.subscribe(t, "edgekv/sync/to/p2/#", "edgekv/sync/#"); rc[0] != rcNotAuthorized || rc[1] != rcNotAuthorized {
		t.Fatalf("peer SUBACK %x for others' sync topics", rc)
	}
	if rc := p.subscribe(t, "edgekv/sync/to/p1/#"); rc[0] > 2 {
		t.Fatalf("peer SUBACK %x", rc)
	}
	tb.sync.waitEvents(t, "up p1")
	if err := tb.SendToPeer(peer1, wire.KindUpdate, []byte("u1")); err != nil {
		t.Fatal(err)
	}
	m := p.expect(t)
	if m.Topic != "edgekv/sync/to/p1/from/n1/update" || string(m.Payload) != "u1" {
		t.Fatalf("peer got %q %q", m.Topic, m.Payload)
	}
	// The "#" subscriber sees a later ordinary message, and nothing before.
	other := connect(t, tb.addr, "other", "", "")
	other.publish(t, "plain/after", 1, []byte("x"))
	if m := snoop.expect(t); m.Topic != "plain/after" {
		t.Fatalf("snoop got %q %q", m.Topic, m.Payload)
	}
	snoop.expectNone(t, 200*time.Millisecond)
	// A second peer's "#" does not see p1's traffic either.
	p2 := connect(t, tb.addr, "peer-p2", peer2, peer2Pw)
	p2.subscribe(t, "#")
	if err := tb.SendToPeer(peer1, wire.KindInfo, []byte("i1")); err != nil {
		t.Fatal(err)
	}
	if m := p.expect(t); m.Topic != "edgekv/sync/to/p1/from/n1/info" {
		t.Fatalf("peer got %q", m.Topic)
	}
	p2.expectNone(t, 200*time.Millisecond)
	snoop.expectNone(t, 0)
}

func TestOrdinaryClientCannotPublishSync(t *testing.T) {
	tb := startBroker(t, nil)
	c := connect(t, tb.addr, "mallory", "", "")
	for _, topic := range []string{"edgekv/sync/to/n1/from/p1/update", "edgekv/sync/x", "edgekv/sync"} {
		if rc := c.publish(t, topic, 1, []byte("forged")); rc != rcNotAuthorized {
			t.Errorf("publish %q: reason %#x, want %#x", topic, rc, rcNotAuthorized)
		}
	}
	c.publish(t, "edgekv/sync/to/n1/from/p1/update", 0, []byte("forged"))
	select {
	case m := <-tb.sync.msgs:
		t.Fatalf("Receive(%+v) from an ordinary client", m)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestPeerPublishReachesReceive(t *testing.T) {
	tb := startBroker(t, nil)
	p := connect(t, tb.addr, "peer-p1", peer1, peer1Pw)
	watcher := connect(t, tb.addr, "peer-p2", peer2, peer2Pw)
	watcher.subscribe(t, "#", "edgekv/sync/to/p2/#")
	for _, tc := range []struct {
		suffix string
		kind   wire.Kind
	}{
		{"update", wire.KindUpdate},
		{"info", wire.KindInfo},
		{"edgekv/hello", wire.KindHello},
		{"edgekv/digest", wire.KindDigest},
		{"edgekv/heartbeat", wire.KindHeartbeat},
		{"edgekv/batch", wire.KindBatch},
	} {
		data := []byte("data-" + tc.suffix)
		if rc := p.publish(t, "edgekv/sync/to/n1/from/p1/"+tc.suffix, 1, data); rc != rcSuccess {
			t.Fatalf("%s: reason %#x", tc.suffix, rc)
		}
		select {
		case m := <-tb.sync.msgs:
			if m.peer != peer1 || m.kind != tc.kind || string(m.data) != string(data) {
				t.Fatalf("Receive(%q, %v, %q), want (p1, %v, %q)", m.peer, m.kind, m.data, tc.kind, data)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no Receive", tc.suffix)
		}
	}
	// Unknown suffix: acknowledged, dropped, logged.
	if rc := p.publish(t, "edgekv/sync/to/n1/from/p1/frobnicate", 1, []byte("x")); rc != rcSuccess {
		t.Fatalf("unknown suffix: reason %#x", rc)
	}
	tb.logs.waitLog(t, "sync message of unknown kind dropped", "peer=p1", "topic=edgekv/sync/to/n1/from/p1/frobnicate")
	// Impersonation and foreign targets are refused.
	for _, topic := range []string{"edgekv/sync/to/n1/from/p2/update", "edgekv/sync/to/n9/from/p1/update", "edgekv/sync/to/n1/from/p1"} {
		if rc := p.publish(t, topic, 1, []byte("x")); rc != rcNotAuthorized {
			t.Errorf("publish %q: reason %#x, want %#x", topic, rc, rcNotAuthorized)
		}
	}
	// Retained sync publishes are not stored either.
	p.Publish(context.Background(), &paho.Publish{Topic: "edgekv/sync/to/n1/from/p1/update", QoS: 1, Retain: true, Payload: []byte("r")})
	<-tb.sync.msgs
	select {
	case m := <-tb.sync.msgs:
		t.Fatalf("extra Receive %+v", m)
	case <-time.After(100 * time.Millisecond):
	}
	watcher.expectNone(t, 200*time.Millisecond)
	again := connect(t, tb.addr, "peer-p1b", peer1, peer1Pw)
	again.subscribe(t, "edgekv/sync/to/p1/#")
	again.expectNone(t, 200*time.Millisecond)
}

func TestPeerUpDown(t *testing.T) {
	tb := startBroker(t, nil)
	if err := tb.SendToPeer(peer1, wire.KindHello, nil); !errors.Is(err, ErrPeerNotConnected) {
		t.Fatalf("SendToPeer before connect: %v, want ErrPeerNotConnected", err)
	}
	if err := tb.SendToPeer("nobody", wire.KindHello, nil); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("SendToPeer to a stranger: %v, want ErrUnknownPeer", err)
	}
	p := connect(t, tb.addr, "link-p1", peer1, peer1Pw)
	tb.sync.waitEvents(t) // connected is not ready
	p.subscribe(t, "edgekv/sync/to/p1/#")
	tb.sync.waitEvents(t, "up p1")
	p.subscribe(t, "edgekv/sync/to/p1/#") // again: no new event
	if err := tb.SendToPeer(peer1, wire.KindHello, []byte("h")); err != nil {
		t.Fatal(err)
	}
	if m := p.expect(t); m.Topic != "edgekv/sync/to/p1/from/n1/edgekv/hello" {
		t.Fatalf("got %q", m.Topic)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"edgekv/sync/to/p1/#"}}); err != nil {
		t.Fatal(err)
	}
	tb.sync.waitEvents(t, "up p1", "down p1")
	p.subscribe(t, "edgekv/sync/to/p1/#")
	tb.sync.waitEvents(t, "up p1", "down p1", "up p1")
	_ = p.Disconnect(&paho.Disconnect{})
	tb.sync.waitEvents(t, "up p1", "down p1", "up p1", "down p1")

	// A new connection that replaces a live one (same client ID: mochi
	// takes the session over): the old one's end does not report PeerDown.
	old := connect(t, tb.addr, "link", peer1, peer1Pw)
	old.subscribe(t, "edgekv/sync/to/p1/#")
	tb.sync.waitEvents(t, "up p1", "down p1", "up p1", "down p1", "up p1")
	cur := connect(t, tb.addr, "link", peer1, peer1Pw)
	<-old.Done()
	cur.subscribe(t, "edgekv/sync/to/p1/#")
	tb.sync.waitEvents(t, "up p1", "down p1", "up p1", "down p1", "up p1", "down p1", "up p1")
	if err := tb.SendToPeer(peer1, wire.KindHello, []byte("h2")); err != nil {
		t.Fatal(err)
	}
	if m := cur.expect(t); string(m.Payload) != "h2" {
		t.Fatalf("got %q", m.Payload)
	}
}

// TestPeerSessionResumed: a peer whose resumed session already holds its
// sync subscription is ready without subscribing again; a second
// connection replacing the first reports PeerUp again, and only the
// current connection's end reports PeerDown.
func TestPeerSessionResumed(t *testing.T) {
	tb := startBroker(t, nil)
	expiry := uint32(60)
	cp := connectPacket("durable", peer1, peer1Pw)
	cp.CleanStart = false
	cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	conn, _ := net.Dial("tcp", tb.addr)
	first, _, err := dialClient(t, conn, cp)
	if err != nil {
		t.Fatal(err)
	}
	first.subscribe(t, "edgekv/sync/to/p1/#")
	tb.sync.waitEvents(t, "up p1")
	conn2, _ := net.Dial("tcp", tb.addr)
	second, ca, err := dialClient(t, conn2, cp)
	if err != nil || !ca.SessionPresent {
		t.Fatalf("resume: %v, %+v", err, ca)
	}
	<-first.Done()
	// The old connection's end may be seen before or after the new one
	// is ready; either way p1 ends up (and stays) up.
	tb.sync.waitFor(t, func(ev []string) bool {
		return slices.Equal(ev, []string{"up p1", "up p1"}) || slices.Equal(ev, []string{"up p1", "down p1", "up p1"})
	})
	if err := tb.SendToPeer(peer1, wire.KindHello, []byte("h")); err != nil {
		t.Fatal(err)
	}
	if m := second.expect(t); string(m.Payload) != "h" {
		t.Fatalf("got %q", m.Payload)
	}
	_ = second.Disconnect(&paho.Disconnect{})
	tb.sync.waitFor(t, func(ev []string) bool { return len(ev) >= 3 && ev[len(ev)-1] == "down p1" })
}

func TestWebSocketAndTLS(t *testing.T) {
	certFile, keyFile, pool := writeCert(t)
	tb := startBroker(t, func(c *Config) {
		c.WebSocket = []string{"127.0.0.1:0"}
		c.TLS = []TLSListener{{Addr: "127.0.0.1:0", Cert: certFile, Key: keyFile}}
	})
	addrs := tb.Addrs()
	if len(addrs) != 3 {
		t.Fatalf("Addrs = %v, want MQTT, WebSocket and TLS", addrs)
	}

	ws, _, err := (&websocket.Dialer{Subprotocols: []string{"mqtt"}}).Dial("ws://"+addrs[1].String()+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	wc, ca, err := dialClient(t, packets.NewThreadSafeConn(&wsConn{Conn: ws.NetConn(), ws: ws}), connectPacket("ws", "", ""))
	if err != nil {
		t.Fatalf("WebSocket connect: %v %+v", err, ca)
	}
	if rc := wc.publish(t, "kv/ws", 1, []byte("1")); rc != rcSuccess {
		t.Fatalf("WebSocket write: %#x", rc)
	}
	wc.subscribe(t, "plain/#")
	big := []byte(strings.Repeat("b", 100_000)) // spans several reads
	wc.publish(t, "plain/big", 1, big)
	if m := wc.expect(t); string(m.Payload) != string(big) {
		t.Fatalf("WebSocket round trip: %d bytes", len(m.Payload))
	}

	tc, err := tls.Dial("tcp", addrs[2].String(), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	tlsc, ca, err := dialClient(t, packets.NewThreadSafeConn(tc), connectPacket("tls", peer1, peer1Pw))
	if err != nil {
		t.Fatalf("TLS connect: %v %+v", err, ca)
	}
	if rc := tlsc.publish(t, "kv/tls", 1, []byte("2")); rc != rcSuccess {
		t.Fatalf("TLS write: %#x", rc)
	}
	w := tb.tree.written()
	if len(w) != 2 || !w[0].path.Equal(path("ws")) || !w[1].path.Equal(path("tls")) {
		t.Fatalf("writes %+v", w)
	}
}

// TestShutdown: Run returns promptly even while a client waits in
// Tree.Write (its context ends), and disconnects every client.
func TestShutdown(t *testing.T) {
	ft, fs := newFakeTree(), newFakeSync()
	ft.gate = make(chan struct{}) // never opened
	b, err := New(Config{Node: "n1", MQTT: []string{"127.0.0.1:0"}, AllowAnonymous: true}, ft, fs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	<-b.Ready()
	addr := b.Addrs()[0].String()
	idle := connect(t, addr, "idle", "", "")
	busy := connect(t, addr, "busy", "", "")
	pubCtx, pubCancel := context.WithCancel(context.Background())
	pubDone := make(chan struct{})
	defer func() { pubCancel(); <-pubDone }() // paho may wait on after the connection is gone
	go func() {
		defer close(pubDone)
		_, _ = busy.Publish(pubCtx, &paho.Publish{Topic: "kv/x", QoS: 1, Payload: []byte("1")})
	}()
	<-ft.started
	// A connection that never sends CONNECT (mochi waits for it on Close).
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(6 * time.Second):
		t.Fatal("Run did not return")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	for _, c := range []*client{idle, busy} {
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("client still connected after Run returned")
		}
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Error("listener still open after Run returned")
	}
	_ = silent.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("silent connection still open after Run returned: %v", err)
	}
	if err := b.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

func TestRunListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := New(Config{Node: "n1", MQTT: []string{"127.0.0.1:0", ln.Addr().String()}}, newFakeTree(), newFakeSync())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Run(context.Background()); err == nil {
		t.Fatal("Run on a busy port succeeded")
	}
	if a := b.Addrs(); a != nil {
		t.Errorf("Addrs = %v after a failed Run", a)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Node: "n1", PeerUsers: map[string]string{"p1": "pw"}}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	bad := Config{
		Node:            "a/b",
		KVPrefix:        "kv/#",
		SyncPrefix:      "$sync",
		MaxPayloadBytes: -1,
		PeerUsers:       map[string]string{"": "pw", "p+": "pw", "p2": ""},
		MQTT:            []string{"nocolon"},
		WebSocket:       []string{"x"},
		TLS:             []TLSListener{{Addr: "127.0.0.1:1"}},
	}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"Node", "KVPrefix", "SyncPrefix", "MaxPayloadBytes", `PeerUsers ""`, `PeerUsers "p+"`, "empty password", "MQTT[0]", "WebSocket[0]", "needs both Cert and Key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
	for _, c := range []Config{
		{Node: "n1", KVPrefix: "edgekv", SyncPrefix: "edgekv/sync"},
		{Node: "n1", KVPrefix: "a/b", SyncPrefix: "a"},
		{Node: "n1", KVPrefix: "same", SyncPrefix: "same"},
		{Node: "n1", PeerUsers: map[string]string{"n1": "pw"}},
		{Node: ""},
		{Node: "n1", MaxPayloadBytes: 1 << 20, MaxPacketBytes: 1 << 10},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
	if _, err := New(good, nil, newFakeSync()); err == nil {
		t.Error("New without a Tree succeeded")
	}
}

func TestSendToPeerInvalidKind(t *testing.T) {
	tb := startBroker(t, nil)
	if err := tb.SendToPeer(peer1, wire.Kind(0), nil); err == nil {
		t.Fatal("invalid kind accepted")
	}
}

func TestSysTopics(t *testing.T) {
	tb := startBroker(t, nil)
	c := connect(t, tb.addr, "sys", "", "")
	c.subscribe(t, "$SYS/broker/version")
	if m := c.expect(t); m.Topic != "$SYS/broker/version" || len(m.Payload) == 0 {
		t.Fatalf("got %q %q", m.Topic, m.Payload)
	}
}
