package kvproto

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgekv/edgekv/tree"
)

// loadWire reads testdata/moatkv-wire.hex: the captured MoaT-KV 0.70.22
// messages of moatkv-wire.md, by name.
func loadWire(t testing.TB) map[string][]byte {
	t.Helper()
	f, err := os.Open("testdata/moatkv-wire.hex")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hx, _ := strings.Cut(line, " ")
		b, err := hex.DecodeString(strings.ReplaceAll(hx, " ", ""))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = b
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// conn is the client end of a test connection to a Server.
type conn struct {
	t    *testing.T
	c    net.Conn
	r    *Reader
	done chan error
}

func dial(t *testing.T, tr Tree) *conn {
	t.Helper()
	cli, srv := net.Pipe()
	done := serveConn(t, &Server{Tree: tr}, cli, srv)
	return &conn{t: t, c: cli, r: NewReader(cli, 0), done: done}
}

// serveConn serves srv with s until the test ends; then it closes cli and
// checks that ServeConn returns. The channel gets ServeConn's result.
func serveConn(t *testing.T, s *Server, cli, srv net.Conn) chan error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(ctx, srv) }()
	t.Cleanup(func() {
		cli.Close()
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("ServeConn did not return")
		}
	})
	return done
}

func (c *conn) send(b []byte) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.c.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *conn) recv() []byte {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := c.r.Next()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

func (c *conn) expect(name string, want []byte) {
	c.t.Helper()
	got := c.recv()
	if !bytes.Equal(got, want) {
		c.t.Errorf("%s:\n got  % x\n want % x", name, got, want)
	}
}

// TestGoldenMoaTSession replays the captured MoaT-KV session (a), (c), (d)
// against a fake tree set to the same node, tick and tocks, and compares
// every server message byte for byte.
func TestGoldenMoaTSession(t *testing.T) {
	w := loadWire(t)
	ft := newFakeTree("ref1", 2007, 6144)
	c := dial(t, ft)

	// (a) greeting; the client acknowledges qlen.
	c.expect("a.hello.s2c", w["a.hello.s2c"])
	if got := AppendQLenReply(nil, 10); !bytes.Equal(got, w["a.qlen.c2s"]) {
		t.Errorf("AppendQLenReply = % x, want % x", got, w["a.qlen.c2s"])
	}
	c.send(w["a.qlen.c2s"])

	// (b) raised the tock to 6149 on the MoaT-KV server (the config watch).
	ft.setTock(6149)

	// (c) set_value of a new entry: tick 2008, tock 6150.
	c.send(w["c.set.c2s"])
	c.expect("c.set.s2c", w["c.set.s2c"])

	// (d) get_value: present, with chain, missing.
	c.send(w["d.get.c2s"])
	c.expect("d.get.s2c", w["d.get.s2c"])
	c.send(w["d.getchain.c2s"])
	c.expect("d.getchain.s2c", w["d.getchain.s2c"])
	ft.setTock(6151) // the MoaT-KV server read its tock once more in between
	c.send(w["d.getmissing.c2s"])
	c.expect("d.getmissing.s2c", w["d.getmissing.s2c"])
}

// TestGoldenEncoders checks the encoders alone against the captures.
func TestGoldenEncoders(t *testing.T) {
	w := loadWire(t)
	val := []byte("\xa5hello")
	for _, tc := range []struct {
		name string
		got  []byte
	}{
		{"a.hello.s2c", AppendHello(nil, Hello{Node: "ref1", Tick: 2007, Tock: 6145, QLen: 10})},
		{"c.set.s2c", AppendWriteReply(nil, 2, true, Result{Tock: 6150}, 0, true)},
		{"d.get.s2c", AppendGetReply(nil, 3, Entry{Value: val, Chain: chainOf("ref1", 2008), Tock: 6150}, 0, 0)},
		{"d.getchain.s2c", AppendGetReply(nil, 4, Entry{Value: val, Chain: chainOf("ref1", 2008), Tock: 6150}, 2, 0)},
		{"d.getmissing.s2c", AppendGetReply(nil, 5, Entry{}, 0, 6152)},
	} {
		if !bytes.Equal(tc.got, w[tc.name]) {
			t.Errorf("%s:\n got  % x\n want % x", tc.name, tc.got, w[tc.name])
		}
	}
}

// TestGoldenRequests parses every captured client message.
func TestGoldenRequests(t *testing.T) {
	w := loadWire(t)
	for name, b := range w {
		if !strings.HasSuffix(name, ".c2s") {
			continue
		}
		req, err := ParseRequest(b)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if name == "e.set.c2s" {
			if req.Action != "set_value" || req.Seq != 6 || req.NChain != 1 || len(req.Path) != 2 {
				t.Errorf("%s: %+v", name, req)
			}
			want := "\x82\xa1x\x01\xa1y\x95\x01\xcb\x40\x04\x00\x00\x00\x00\x00\x00\xc4\x02\x00\x01\xc0\xc3"
			if string(req.Value) != want {
				t.Errorf("%s: value % x", name, req.Value)
			}
		}
		if name == "b.watch.c2s" && (req.Action != "watch" || req.Seq != 1 || req.NChain != 3 || len(req.Path) != 3) {
			t.Errorf("%s: %+v", name, req)
		}
	}
}

// TestGoldenDeleteReconstructed replays (e) and the delete_value of (f).
// The capture shows that reply only decoded, so the expected bytes are
// built by hand from it: {changed: true, prev: <the value set in (e)>,
// chain: {node: ref1, tick: 2011, prev: nil}, tock: 6165, seq: 10}.
func TestGoldenDeleteReconstructed(t *testing.T) {
	w := loadWire(t)
	ft := newFakeTree("ref1", 2008, 6144)
	c := dial(t, ft)
	c.recv()
	c.send(w["a.qlen.c2s"])
	ft.setTock(6153)
	c.send(w["e.set.c2s"]) // tick 2009
	if m := decode(t, c.recv()); m["changed"] != true || fmt.Sprint(m["tock"]) != "6154" {
		t.Fatalf("set: %v", m)
	}
	// Another client's set of cap.a (tick 2010).
	c.send(req("path", pa, "value", "changed", "action", "set_value", "seq", 8))
	c.recv()
	ft.setTock(6164)
	c.send(req("path", tree.Path{tree.Str("cap"), tree.Str("b")}, "nchain", 1, "action", "delete_value", "seq", 10))
	value := []byte("\x82\xa1x\x01\xa1y\x95\x01\xcb\x40\x04\x00\x00\x00\x00\x00\x00\xc4\x02\x00\x01\xc0\xc3")
	want := []byte("\x85\xa7changed\xc3\xa4prev")
	want = append(want, value...)
	want = append(want, "\xa5chain\x83\xa4node\xa4ref1\xa4tick\xcd\x07\xdb\xa4prev\xc0\xa4tock\xcd\x18\x15\xa3seq\x0a"...)
	c.expect("delete", want)
}

// TestIdemNoOp checks MoaT-KV's idem reply {tock, changed: false, chain, seq}.
func TestIdemNoOp(t *testing.T) {
	c, _ := start(t)
	c.send(req("path", pa, "value", "v", "action", "set_value", "seq", 1))
	c.recv()
	c.send(req("path", pa, "value", "v", "idem", true, "nchain", 1, "action", "set_value", "seq", 2))
	got := c.recv()
	want := req("tock", []byte{0xcd, 0x18, 0x02}, "changed", false, "chain", AppendChain(nil, chainOf("ref1", 2008), 1), "seq", 2)
	if !bytes.Equal(got, want) {
		t.Errorf("got  % x\nwant % x", got, want)
	}
	// Without idem the same value is written again, changed: false.
	c.send(req("path", pa, "value", "v", "nchain", 0, "action", "set_value", "seq", 3))
	if m := decode(t, c.recv()); m["changed"] != false || m["prev"] != "v" {
		t.Errorf("rewrite: %v", m)
	}
}
