package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// TestE2EMoaTRecovery: two edgekv nodes on Debian's mosquitto with
// MoaT-KV's topic prefix, and edgekv's own catch-up turned off
// (sync.moat.only: no digests, no ticks from heartbeats, no periodic
// missing requests). One node is killed, the other writes, sets over an
// old value and deletes; the killed node restarts and must catch up by
// MoaT-KV's recovery alone: the other's ping carries its tick, the
// restarted node asks with info{missing} when it is "it" (or recovering),
// the holder re-sends. The test listens on the bus and checks the
// messages' MoaT-KV shapes. The ping group runs at a 2 s cycle (MoaT-KV's
// default is 10 s) to keep the test short.
func TestE2EMoaTRecovery(t *testing.T) {
	hub := startMosquitto(t)
	dir := t.TempDir()
	ports := freePorts(t, 2)
	syncKeys := "  prefix: moat/kv\n  moat:\n    only: true\n    cycle: 2s\n    gap: 500ms\n"
	cfgs := make([]e2eCfg, 2)
	procs := make([]*proc, 2)
	for i, name := range []string{"m1", "m2"} {
		cfgs[i] = e2eCfg{name: name, port: ports[i], data: filepath.Join(dir, name), hubs: []e2eLink{{"site", hub}},
			heartbeat: "default", syncExtra: syncKeys}
		procs[i] = startNodeCfg(t, dir, "", cfgs[i])
	}

	// A listener on the bus, as a MoaT-KV server would be.
	var mu sync.Mutex
	var pings []wire.ActorMsg
	var infos []wire.Info
	var badMsgs []string
	spy := dialMQTT(t, hub, "spy", "", "", func(p *paho.Publish) {
		mu.Lock()
		defer mu.Unlock()
		switch p.Topic {
		case "moat/kv/ping":
			m, err := wire.DecodeActor(p.Payload)
			if err != nil {
				badMsgs = append(badMsgs, fmt.Sprintf("ping: %v", err))
				return
			}
			pings = append(pings, m)
		case "moat/kv/info":
			in, err := wire.DecodeInfo(p.Payload)
			if err != nil {
				badMsgs = append(badMsgs, fmt.Sprintf("info: %v", err))
				return
			}
			infos = append(infos, in)
		case "moat/kv/update":
			if _, err := wire.DecodeUpdate(p.Payload); err != nil {
				badMsgs = append(badMsgs, fmt.Sprintf("update: %v", err))
			}
		}
	})
	if _, err := spy.Subscribe(t.Context(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "moat/kv/#"}}}); err != nil {
		t.Fatal(err)
	}

	pub(t, ports[0], "kv/moat/before", `"both saw this"`)
	pub(t, ports[0], "kv/moat/old", `"old"`)
	pub(t, ports[0], "kv/moat/doomed", `"doomed"`)
	waitValue(t, ports[1], "kv/moat/before", `"both saw this"`, syncWait)
	waitValue(t, ports[1], "kv/moat/old", `"old"`, syncWait)
	waitValue(t, ports[1], "kv/moat/doomed", `"doomed"`, syncWait)
	procs[1].stop(syscall.SIGKILL)

	pub(t, ports[0], "kv/moat/while", `"written while m2 was down"`)
	pub(t, ports[0], "kv/moat/old", `"new"`)
	pub(t, ports[0], "kv/moat/doomed", "")
	mu.Lock()
	infos = infos[:0]
	mu.Unlock()

	t0 := time.Now()
	procs[1].restart()
	waitValue(t, ports[1], "kv/moat/while", `"written while m2 was down"`, 30*time.Second)
	waitValue(t, ports[1], "kv/moat/old", `"new"`, 10*time.Second)
	waitGone(t, ports[1], "kv/moat/doomed", 10*time.Second)
	took := time.Since(t0)
	waitValue(t, ports[1], "kv/moat/before", `"both saw this"`, 5*time.Second)

	mu.Lock()
	defer mu.Unlock()
	if len(badMsgs) > 0 {
		t.Errorf("messages MoaT-KV could not read: %v", badMsgs)
	}
	var asked bool
	for _, in := range infos {
		if in.Node == "m2" && in.Missing["m1"].Len() > 0 {
			asked = true
		}
	}
	if !asked {
		t.Errorf("m2 never asked for m1's ticks with info{missing}: %+v", infos)
	}
	byNode := map[string]int{}
	for _, p := range pings {
		if p.Type == wire.ActorPing {
			byNode[p.Node]++
			if !p.Value.Set || len(p.History) == 0 || p.History[0] != p.Node {
				t.Errorf("ping %+v: want value [tock, tick] and the sender first in its history", p)
			}
		}
	}
	if byNode["m1"] == 0 || byNode["m2"] == 0 || !slices.ContainsFunc(pings, func(m wire.ActorMsg) bool { return m.Type == wire.ActorInit && m.Node == "m2" }) {
		t.Errorf("pings per node %v; want both, and m2's init after its restart", byNode)
	}
	t.Logf("m2 caught up %.1f s after its restart by MoaT-KV's recovery (cycle 2 s); pings %v", took.Seconds(), byNode)
}

// TestMoaTFetchData: a MoaT-KV server that joins a bus where only edgekv
// nodes hold the data fetches it over the client protocol, as its
// fetch_data does: get_tree and get_tree_internal of the whole tree with
// full chains, then get_state {nodes, known, deleted}. The requests here
// are fetch_data's, byte for byte in content; the test rebuilds the tree
// from the streamed replies (path shortening, chains) and checks that the
// fetcher would have everything: every value, and per node every tick
// from 1 to its tick either on a fetched chain, in known or in deleted
// (which MoaT-KV's report_deleted makes superseded; edgekv's
// skipped ticks included: otherwise the fetcher would ask for them
// forever and never become ready).
func TestMoaTFetchData(t *testing.T) {
	dir := t.TempDir()
	ports := freePorts(t, 2)
	startNodeCfg(t, dir, "", e2eCfg{name: "edge1", port: ports[0], client: ports[1], data: filepath.Join(dir, "edge1")})
	srv := fmt.Sprintf("127.0.0.1:%d", ports[1])
	pub(t, ports[0], "kv/fx/str", `"hello"`)
	pub(t, ports[0], "kv/fx/str", `"hello again"`)
	pub(t, ports[0], "kv/fx/gone", `1`)
	pub(t, ports[0], "kv/fx/gone", "")
	pub(t, ports[0], "kv/fx/deep/l3", `[1, 2]`)
	s := dialMoaT(t, srv)
	seq := s.request("action", "set_internal", "path", tree.Path{tree.Str("hostmap"), tree.Str("edge1")}, "value", []any{"127.0.0.1", int64(ports[1])})
	if r := s.reply(seq); r["error"] != nil {
		t.Fatalf("set_internal: %v", r)
	}

	type got struct {
		value any
		chain map[string]any
	}
	fetch := func(action string) map[string]got {
		out := map[string]got{}
		seq := s.request("action", action, "iter", true, "from_server", "ref9", "nchain", int64(-1), "path", tree.Path{})
		var prev []string
		for {
			m := s.reply(seq)
			if m["error"] != nil {
				t.Fatalf("%s: %v", action, m)
			}
			if st, ok := m["state"]; ok {
				if st == "end" {
					if _, ok := m["tock"].(int64); !ok {
						t.Errorf("%s: end without tock: %v", action, m)
					}
					return out
				}
				continue
			}
			depth := int(m["depth"].(int64))
			var rel []string
			switch p := m["path"].(type) {
			case tree.Path:
				if depth != 0 {
					t.Fatalf("%s: a Path with depth %d", action, depth)
				}
				for _, e := range p {
					rel = append(rel, e.StrVal())
				}
			case []any:
				for _, e := range p {
					rel = append(rel, e.(string))
				}
			default:
				t.Fatalf("%s: path %T", action, m["path"])
			}
			full := append(slices.Clone(prev[:depth]), rel...)
			prev = full
			ch, _ := m["chain"].(map[string]any)
			out[strings.Join(full, ".")] = got{m["value"], ch}
		}
	}
	data := fetch("get_tree")
	meta := fetch("get_tree_internal")
	for path, want := range map[string]any{"fx.str": "hello again", "fx.deep.l3": []any{int64(1), int64(2)}} {
		if g, ok := data[path]; !ok || fmt.Sprint(g.value) != fmt.Sprint(want) || g.chain == nil {
			t.Errorf("get_tree %s = %+v, want %v with a chain", path, g, want)
		}
	}
	if g, ok := data["fx.gone"]; ok && g.value != nil {
		t.Errorf("deleted fx.gone fetched with a value: %+v", g)
	}
	if g := meta["hostmap.edge1"]; fmt.Sprint(g.value) != fmt.Sprint([]any{"127.0.0.1", int64(ports[1])}) {
		t.Errorf("get_tree_internal hostmap.edge1 = %+v", g)
	}

	seq = s.request("action", "get_state", "nodes", true, "from_server", "ref9", "known", true, "deleted", true, "iter", false)
	st := s.reply(seq)
	nodes, _ := st["nodes"].(map[string]any)
	tick, _ := nodes["edge1"].(int64)
	if tick < 5 {
		t.Fatalf("get_state nodes = %v", st["nodes"])
	}
	// What the fetcher holds of edge1's ticks: chains and known.
	var have tree.RangeSet
	for _, g := range []map[string]got{data, meta} {
		for _, e := range g {
			for c := e.chain; c != nil; {
				if c["node"] == "edge1" {
					have.Add(uint64(c["tick"].(int64)))
				}
				c, _ = c["prev"].(map[string]any)
			}
		}
	}
	// MoaT-KV's report_deleted counts deleted ticks as superseded.
	known, _ := st["known"].(map[string]any)
	deleted, _ := st["deleted"].(map[string]any)
	for _, set := range []any{known["edge1"], deleted["edge1"]} {
		rs, _ := set.([]any)
		for _, r := range rs {
			switch r := r.(type) {
			case int64:
				have.Add(uint64(r))
			case []any:
				have.AddRange(uint64(r[0].(int64)), uint64(r[1].(int64)))
			}
		}
	}
	all := tree.RangeSetOf(tree.Range{Start: 1, End: uint64(tick) + 1})
	if miss := all.Minus(have); !miss.IsEmpty() {
		t.Errorf("a MoaT-KV fetcher would miss edge1's ticks %v (tick %d, known %v)", miss, tick, known["edge1"])
	}
}
