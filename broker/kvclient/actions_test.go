package kvclient

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/broker/kvproto"
	"github.com/edgekv/edgekv/tree"
)

// scripted is a server that answers each request with what answer
// returns for it, in MoaT-KV's shapes (including ones an edgekv server
// never sends, such as test_acl's ACL letters). The requests it saw go to
// seen.
type scripted struct {
	seen chan map[string]any
}

func serveScript(t *testing.T, answer func(req map[string]any, raw []byte) [][]byte) (*Client, *scripted) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{seen: make(chan map[string]any, 100)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.Write(kvproto.AppendHello(nil, kvproto.Hello{Node: "moat", Tick: 1, Tock: 1, QLen: 10}))
		rd := kvproto.NewReader(conn, 0)
		for {
			raw, err := rd.Next()
			if err != nil {
				return
			}
			v, err := decodeReq(raw)
			if err != nil {
				t.Errorf("request % x: %v", raw, err)
				return
			}
			if v["seq"] == int64(0) {
				continue // the answer to the greeting
			}
			s.seen <- v
			for _, b := range answer(v, raw) {
				if _, err := conn.Write(b); err != nil {
					return
				}
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return c, s
}

// decodeReq decodes a request map; extension values (paths, which msgp
// would take for complex numbers) are kept as raw bytes.
func decodeReq(b []byte) (map[string]any, error) {
	n, rest, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	for range n {
		var k string
		if k, rest, err = msgp.ReadStringBytes(rest); err != nil {
			return nil, err
		}
		var v any
		if c := rest[0]; c >= 0xc7 && c <= 0xc9 || c >= 0xd4 && c <= 0xd8 {
			r, err := msgp.Skip(rest)
			if err != nil {
				return nil, err
			}
			v, rest = rest[:len(rest)-len(r)], r
		} else if v, rest, err = msgp.ReadIntfBytes(rest); err != nil {
			return nil, err
		}
		m[k] = v
	}
	return m, nil
}

// msg builds a reply map from key/value pairs; []byte values are raw
// msgpack.
func msg(kv ...any) []byte {
	b := msgp.AppendMapHeader(nil, uint32(len(kv)/2))
	for i := 0; i < len(kv); i += 2 {
		b = msgp.AppendString(b, kv[i].(string))
		if raw, ok := kv[i+1].([]byte); ok {
			b = append(b, raw...)
			continue
		}
		b, _ = msgp.AppendIntf(b, kv[i+1])
	}
	return b
}

func TestActionsAgainstMoaTShapes(t *testing.T) {
	c, s := serveScript(t, func(req map[string]any, raw []byte) [][]byte {
		seq := req["seq"]
		switch req["action"] {
		case "enum_node":
			return [][]byte{msg("result", []any{int64(3), int64(5)}, "seq", seq, "tock", 9)}
		case "test_acl":
			if req["acl"] == "guest" {
				return [][]byte{msg("access", false, "seq", seq, "tock", 9)}
			}
			return [][]byte{msg("access", "rwx", "seq", seq, "tock", 9)}
		case "root":
			chain := msg("node", "moat", "tick", 4, "prev", nil)
			return [][]byte{msg("value", "here", "chain", chain, "tock", 7, "path", []byte{0xc7, 0, 3}, "seq", seq)}
		case "msg_send":
			return [][]byte{msg("seq", seq, "tock", 9)}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	ticks, err := c.EnumNode(ctx, "n1", 7, true)
	if err != nil || !slices.Equal(ticks, []uint64{3, 5}) {
		t.Errorf("EnumNode: %v %v", ticks, err)
	}
	if r := <-s.seen; r["node"] != "n1" || r["max"] != int64(7) || r["current"] != true {
		t.Errorf("enum_node request %v", r)
	}
	a, err := c.TestACL(ctx, tree.Path{tree.Str("a")}, "r", "")
	if err != nil || a != (Access{Allowed: true, Letters: "rwx"}) {
		t.Errorf("TestACL: %+v %v", a, err)
	}
	if r := <-s.seen; r["mode"] != "r" || r["acl"] != nil {
		t.Errorf("test_acl request %v", r)
	}
	if a, err := c.TestACL(ctx, tree.Path{tree.Str("a")}, "", "guest"); err != nil || a.Allowed {
		t.Errorf("TestACL guest: %+v %v", a, err)
	}
	if r := <-s.seen; r["mode"] != nil || r["acl"] != "guest" {
		t.Errorf("test_acl request %v", r)
	}
	e, err := c.Root(ctx, tree.Path{tree.Str("a")})
	if err != nil || string(e.Value) != "\xa4here" || e.Tock != 7 || len(e.Chain) != 1 || e.Chain[0] != (tree.Link{Node: "moat", Tick: 4}) {
		t.Errorf("Root: %+v %v", e, err)
	}
	if r := <-s.seen; r["action"] != "root" || string(r["path"].([]byte)) != string(tree.AppendPath(nil, tree.Path{tree.Str("a")})) {
		t.Errorf("root request %v", r)
	}
	if err := c.MsgSend(ctx, []string{":run", "x"}, msgp.AppendInt(nil, 5)); err != nil {
		t.Error(err)
	}
	if r := <-s.seen; !slices.Equal(r["topic"].([]any), []any{":run", "x"}) || r["data"] != int64(5) || r["raw"] != nil {
		t.Errorf("msg_send request %v", r)
	}
	if err := c.MsgSendRaw(ctx, []string{"t"}, []byte{0xff}); err != nil {
		t.Error(err)
	}
	if r := <-s.seen; string(r["raw"].([]byte)) != "\xff" || r["data"] != nil {
		t.Errorf("msg_send raw request %v", r)
	}
	if err := c.MsgSend(ctx, []string{"t"}, nil); err == nil {
		t.Error("MsgSend without data was sent")
	}
}

// TestMsgMonitorStream: the monitor stream as a MoaT-KV server sends it:
// start, messages (an undecodable one carries an error key and is a
// message, not a failure), acks after a third of the window, and an
// error reply that ends it.
func TestMsgMonitorStream(t *testing.T) {
	c, s := serveScript(t, func(req map[string]any, raw []byte) [][]byte {
		seq := req["seq"]
		if req["action"] != "msg_monitor" {
			return nil
		}
		out := [][]byte{msg("state", "start", "seq", seq, "wseq", 1, "tock", 1)}
		for i := range 4 {
			out = append(out, msg("topic", []any{"t", "a"}, "data", i, "seq", seq, "wseq", i+2, "tock", 2))
		}
		out = append(out, msg("topic", []any{"t"}, "raw", []byte{0xc4, 1, 0xc1}, "error", "ExtraData()", "seq", seq, "wseq", 6, "tock", 3))
		out = append(out, msg("error", "boom", "seq", seq, "tock", 4))
		return out
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []Message
	err := c.MsgMonitor(ctx, []string{"t", "#"}, false, func(m Message) error {
		got = append(got, m)
		return nil
	})
	var se *ServerError
	if !errors.As(err, &se) || se.Msg != "boom" {
		t.Errorf("monitor ended with %v", err)
	}
	if len(got) != 6 || !got[0].Started || got[1].Data[0] != 0 || strings.Join(got[4].Topic, "/") != "t/a" ||
		got[5].Err != "ExtraData()" || string(got[5].Raw) != "\xc1" || got[5].Data != nil {
		t.Errorf("messages %+v", got)
	}
	r := <-s.seen
	if r["action"] != "msg_monitor" || !slices.Equal(r["topic"].([]any), []any{"t", "#"}) || r["raw"] != false {
		t.Errorf("request %v", r)
	}
	// An ack for wseq 4 (more than 10/3 read), then stop.
	var acked, stopped bool
	for !stopped {
		select {
		case r := <-s.seen:
			acked = acked || r["state"] == "ack" && r["ack"] == int64(4)
			stopped = r["action"] == "stop"
		case <-time.After(5 * time.Second):
			t.Fatal("no stop after the monitor ended")
		}
	}
	if !acked {
		t.Error("no ack for wseq 4")
	}
}

func TestMsgMonitorSeq(t *testing.T) {
	c, _ := serveScript(t, func(req map[string]any, raw []byte) [][]byte {
		if req["action"] != "msg_monitor" {
			return nil
		}
		seq := req["seq"]
		return [][]byte{
			msg("state", "start", "seq", seq, "wseq", 1, "tock", 1),
			msg("topic", []any{"a"}, "raw", []byte{0xc4, 1, 'x'}, "seq", seq, "wseq", 2, "tock", 2),
			msg("topic", []any{"b"}, "raw", []byte{0xc4, 1, 'y'}, "seq", seq, "wseq", 3, "tock", 2),
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var topics []string
	for m, err := range c.MsgMonitorSeq(ctx, []string{"#"}, true) {
		if err != nil {
			t.Fatal(err)
		}
		if m.Started {
			continue
		}
		topics = append(topics, m.Topic[0]+string(m.Raw))
		if len(topics) == 2 {
			break
		}
	}
	if strings.Join(topics, ",") != "ax,by" {
		t.Errorf("got %v", topics)
	}
}
