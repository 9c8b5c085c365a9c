package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgekv/edgekv/tree"
)

// TestClientHangUpIsNotAnError: clients that hang up normally — edgekv's
// CLI, and a MoaT-KV-style client that closes with its config watch open
// and replies unread (a reset) — leave nothing in the node's log; a client
// that sends garbage still does.
func TestClientHangUpIsNotAnError(t *testing.T) {
	dir := t.TempDir()
	ps := freePorts(t, 2)
	p := startNodeCfg(t, dir, "", e2eCfg{name: "hu", port: ps[0], client: ps[1], data: filepath.Join(dir, "hu")})
	srv := fmt.Sprintf("127.0.0.1:%d", ps[1])
	cliAt(t, srv, 0, "set", "a.b", "1")
	for range 5 {
		cliAt(t, srv, 0, "get", "a.b")
		cliAt(t, srv, 0, "list", "a")
	}
	for range 5 { // MoaT-KV's CLI: hello, its config watch, a get, then a close that resets
		s := dialMoaT(t, srv)
		w := s.request("action", "watch", "nchain", int64(3), "path", tree.Path{tree.Str(".moat"), tree.Str("kv"), tree.Str("config")}, "fetch", true)
		for m := s.reply(w); m["state"] != "uptodate"; m = s.reply(w) {
		}
		s.request("action", "get_value", "path", tree.Path{tree.Str("a"), tree.Str("b")}, "nchain", false)
		time.Sleep(20 * time.Millisecond) // the reply is there, unread
		s.c.(*net.TCPConn).SetLinger(0)
		s.c.Close()
	}
	time.Sleep(300 * time.Millisecond)
	for _, line := range strings.Split(p.Log(), "\n") {
		if strings.Contains(line, "connection ended") || strings.Contains(line, "closing connection") || strings.Contains(line, "reset by peer") {
			t.Errorf("a client's normal hang-up was logged: %s", line)
		}
	}
	// Garbage is still worth a line.
	c, err := net.Dial("tcp", srv)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{0xc1, 0xc1, 0xc1})
	time.Sleep(300 * time.Millisecond)
	c.Close()
	until(t, 5*time.Second, "the bad client logged", func() bool { return strings.Contains(p.Log(), "closing connection") })
}
