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

// TestEnumEmpty: MoaT-KV's `empty` flag. Where a.w holds no value but has
// a child, enum and get_tree leave it out by default and give it with
// empty (enum's with_data: None); `edgekv list` shows it, marked.
func TestEnumEmpty(t *testing.T) {
	dir := t.TempDir()
	ps := freePorts(t, 2)
	startNodeCfg(t, dir, "", e2eCfg{name: "en", port: ps[0], client: ps[1], data: filepath.Join(dir, "en")})
	srv := fmt.Sprintf("127.0.0.1:%d", ps[1])
	cliAt(t, srv, 0, "set", "a.w.x", "1")
	cliAt(t, srv, 0, "set", "a.v", "2")
	s := dialMoaT(t, srv)
	a := tree.Path{tree.Str("a")}
	names := func(r map[string]any) string { return fmt.Sprint(r["result"]) }
	if r := s.reply(s.request("action", "enum", "path", a)); names(r) != "[v]" {
		t.Errorf("enum a: %v", r)
	}
	if r := s.reply(s.request("action", "enum", "path", a, "empty", true)); names(r) != "[v w]" {
		t.Errorf("enum a empty: %v", r)
	}
	if r := s.reply(s.request("action", "enum", "path", a, "empty", true, "with_data", true)); names(r) != "map[v:2 w:<nil>]" {
		t.Errorf("enum a empty with_data: %v", r)
	}
	tree1 := func(empty bool) []string {
		var got []string
		seq := s.request("action", "get_tree", "path", a, "empty", empty)
		for m := s.reply(seq); m["state"] != "end"; m = s.reply(seq) {
			if p, ok := m["path"].([]any); ok {
				_, has := m["value"]
				got = append(got, fmt.Sprint(p, has))
			}
		}
		return got
	}
	if got := fmt.Sprint(tree1(false)); got != "[[v] true [w x] true]" {
		t.Errorf("get_tree a: %s", got)
	}
	if got := fmt.Sprint(tree1(true)); got != "[[] false [v] true [w] false [x] true]" { // a itself, then below it
		t.Errorf("get_tree a empty: %s", got)
	}
	if got := cliAt(t, srv, 0, "list", "a"); got != "v\nw  (no value)\n" {
		t.Errorf("edgekv list a = %q", got)
	}
}

// TestChangeLog: MoaT-KV's `log` action (`edgekv dump log`). A node logs
// its tree and then every change, deletions included, to a file in its
// dump directory; a second log replaces the first once it is live;
// --stop ends it. Loaded into another node, the first log gives the tree
// as it was when the second began, the second the changes after.
func TestChangeLog(t *testing.T) {
	dir := t.TempDir()
	ps := freePorts(t, 4)
	startNodeCfg(t, dir, "", e2eCfg{name: "lg", port: ps[0], client: ps[1], data: filepath.Join(dir, "lg")})
	startNodeCfg(t, dir, "", e2eCfg{name: "other", port: ps[2], client: ps[3], data: filepath.Join(dir, "other")})
	srv, other := fmt.Sprintf("127.0.0.1:%d", ps[1]), fmt.Sprintf("127.0.0.1:%d", ps[3])
	cliAt(t, srv, 0, "set", "l.before", "1")
	cliAt(t, srv, 0, "set", "l.gone", "2")
	cliAt(t, srv, 0, "dump", "log", "0.dkv")
	cliAt(t, srv, 3, "dump", "log", "0.dkv") // exists
	cliAt(t, srv, 3, "dump", "log", "../x.dkv")
	cliAt(t, srv, 0, "set", "l.after", "3")
	cliAt(t, srv, 0, "set", "l.before", "4")
	cliAt(t, srv, 0, "delete", "l.gone")
	cliAt(t, srv, 0, "dump", "log", "1.dkv", "--incremental")
	cliAt(t, srv, 0, "set", "l.later", "5")
	time.Sleep(1500 * time.Millisecond) // flushed within a second
	cliAt(t, srv, 0, "dump", "log", "--stop")
	cliAt(t, srv, 0, "set", "l.unlogged", "6")
	dumps := filepath.Join(dir, "lg", "dumps")
	cliAt(t, other, 0, "dump", "load", filepath.Join(dumps, "0.dkv"))
	for p, want := range map[string]string{"l.before": "4", "l.after": "3"} {
		if got := strings.TrimSpace(cliAt(t, other, 0, "get", p)); got != want {
			t.Errorf("after loading the first log, %s = %q, want %q", p, got, want)
		}
	}
	cliAt(t, other, 1, "get", "l.gone")
	cliAt(t, other, 1, "get", "l.later") // in the second log
	cliAt(t, other, 0, "dump", "load", filepath.Join(dumps, "1.dkv"))
	if got := strings.TrimSpace(cliAt(t, other, 0, "get", "l.later")); got != "5" {
		t.Errorf("after the second log, l.later = %q", got)
	}
	cliAt(t, other, 1, "get", "l.unlogged")
}
