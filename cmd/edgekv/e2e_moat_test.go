package main

import (
	"errors"
	"fmt"
	"io"
	"os"
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

// TestMoaTNodeActions: golden replies of kill_node, check_deleted and
// fake_info_send (reference spec §2.6, §2.7, §4.4), served by a node
// process on a MoaT-KV bus, and the info messages they put on the bus.
func TestMoaTNodeActions(t *testing.T) {
	hub := startMosquitto(t)
	dir := t.TempDir()
	ports := freePorts(t, 2)
	startNodeCfg(t, dir, "", e2eCfg{name: "edge1", port: ports[0], client: ports[1], data: filepath.Join(dir, "edge1"),
		hubs: []e2eLink{{"site", hub}}, syncExtra: "  prefix: moat/kv\n"})
	infos := make(chan wire.Info, 100)
	linked := make(chan struct{}, 1)
	spy := dialMQTT(t, hub, "spy", "", "", func(p *paho.Publish) {
		if m, err := wire.DecodeActor(p.Payload); p.Topic == "moat/kv/ping" && err == nil && m.Type == wire.ActorInit {
			select {
			case linked <- struct{}{}:
			default:
			}
		}
		if p.Topic == "moat/kv/info" {
			in, err := wire.DecodeInfo(p.Payload)
			if err != nil {
				t.Errorf("info on the bus: %v", err)
				return
			}
			infos <- in
		}
	})
	if _, err := spy.Subscribe(t.Context(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "moat/kv/info"}, {Topic: "moat/kv/ping"}}}); err != nil {
		t.Fatal(err)
	}
	select { // the node's link to the bus is up: it said init
	case <-linked:
	case <-time.After(10 * time.Second):
		t.Fatal("no init from edge1 on moat/kv/ping")
	}
	nextInfo := func(what string, ok func(wire.Info) bool) wire.Info {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case in := <-infos:
				if ok(in) {
					return in
				}
			case <-deadline:
				t.Fatalf("no %s on moat/kv/info", what)
			}
		}
	}
	s := dialMoaT(t, fmt.Sprintf("127.0.0.1:%d", ports[1]))
	keys := func(m map[string]any) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	wantKeys := func(what string, m map[string]any, want ...string) {
		t.Helper()
		if got := keys(m); !slices.Equal(got, want) {
			t.Fatalf("%s reply %v: keys %v, want %v", what, m, got, want)
		}
	}
	// foo.bar written by n9, then over it by n8: chain n8:1 → n9:1, as
	// MoaT-KV's test_kill has it (updates from MoaT-KV servers).
	link := func(node string, tick int64, prev any) tree.Map {
		return tree.Map{{Key: "node", Value: node}, {Key: "tick", Value: tick}, {Key: "prev", Value: prev}}
	}
	p := tree.Path{tree.Str("foo"), tree.Str("bar")}
	for _, up := range []struct {
		node string
		prev any
		tock int64
	}{{"n9", nil, 10}, {"n8", link("n9", 1, nil), 20}} {
		seq := s.request("action", "update", "node", up.node, "tick", int64(1), "prev", up.prev, "path", p, "value", up.node, "tock", up.tock)
		if r := s.reply(seq); r["changed"] != true {
			t.Fatalf("update from %s: %v", up.node, r)
		}
	}

	// kill_node of a node that heads an entry: an error naming it.
	seq := s.request("action", "kill_node", "node", "n8")
	r := s.reply(seq)
	wantKeys("kill_node n8", r, "error", "kind", "seq", "tock")
	if r["kind"] != "conflict" || !strings.Contains(fmt.Sprint(r["error"]), "foo.bar") {
		t.Errorf("kill_node n8: %v", r)
	}
	// kill_node of n9: {seq, tock}; the chain loses n9; info{node_drop}.
	seq = s.request("action", "kill_node", "node", "n9")
	wantKeys("kill_node n9", s.reply(seq), "seq", "tock")
	in := nextInfo("node_drop", func(in wire.Info) bool { return len(in.NodeDrop) > 0 })
	if !slices.Equal(in.NodeDrop, []string{"n9"}) || in.Node != "edge1" {
		t.Errorf("bus: %+v", in)
	}
	seq = s.request("action", "get_value", "path", p, "nchain", int64(3))
	r = s.reply(seq)
	if ch, _ := r["chain"].(map[string]any); ch["node"] != "n8" || ch["prev"] != nil {
		t.Errorf("chain after kill_node n9: %v", r["chain"])
	}
	seq = s.request("action", "kill_node")
	if r := s.reply(seq); r["kind"] != "invalid" || !strings.Contains(fmt.Sprint(r["error"]), `"node"`) {
		t.Errorf("kill_node without node: %v", r)
	}

	// check_deleted: n8's tick 1 heads foo.bar (not deleted); 2..4 were
	// never seen here (not reported, unlike MoaT-KV). Then n8 writes
	// foo.bar again: n8:1 is superseded and is reported.
	seq = s.request("action", "check_deleted", "nodes", map[string]any{"n8": []any{[]any{int64(1), int64(5)}}})
	r = s.reply(seq)
	wantKeys("check_deleted", r, "deleted", "seq", "tock")
	if d, _ := r["deleted"].(map[string]any); len(d) != 0 {
		t.Errorf("check_deleted reported %v", d)
	}
	seq = s.request("action", "update", "node", "n8", "tick", int64(2), "prev", nil, "path", p, "value", "n8 again", "tock", int64(40))
	if r := s.reply(seq); r["changed"] != true {
		t.Fatal(r)
	}
	seq = s.request("action", "check_deleted", "nodes", map[string]any{"n8": []any{[]any{int64(1), int64(5)}}})
	r = s.reply(seq)
	if d, _ := r["deleted"].(map[string]any); fmt.Sprint(d["n8"]) != "[1]" {
		t.Errorf("check_deleted after the overwrite: %v", r)
	}
	in = nextInfo("deleted", func(in wire.Info) bool { return in.Deleted != nil })
	if !in.Deleted["n8"].Equal(tree.RangeSetOf(tree.Range{Start: 1, End: 2})) {
		t.Errorf("bus: %+v", in)
	}
	seq = s.request("action", "check_deleted", "nodes", map[string]any{"n8": "all"})
	if r := s.reply(seq); r["kind"] != "invalid" || !strings.Contains(fmt.Sprint(r["error"]), `"nodes"`) {
		t.Errorf("check_deleted with a bad range set: %v", r)
	}

	// fake_info_send: {seq, tock}; on the bus with node "" and tick 0.
	seq = s.request("action", "fake_info_send", "known", map[string]any{"n8": []any{int64(5)}})
	wantKeys("fake_info_send", s.reply(seq), "seq", "tock")
	in = nextInfo("fake info", func(in wire.Info) bool { return in.Node == "" })
	if in.Tick != 0 || !in.Known["n8"].Equal(tree.RangeSetOf(tree.Range{Start: 5, End: 6})) || in.Tock == 0 {
		t.Errorf("bus: %+v", in)
	}
	// ... and applied here too, as a MoaT-KV server gets its own back.
	seq = s.request("action", "get_state", "known", true)
	if k, _ := s.reply(seq)["known"].(map[string]any); !strings.Contains(fmt.Sprint(k["n8"]), "5") {
		t.Errorf("fake_info_send's known not applied here: %v", k)
	}
	seq = s.request("action", "fake_info_send")
	if r := s.reply(seq); r["kind"] != "invalid" {
		t.Errorf("empty fake_info_send: %v", r)
	}

	// fake_info (local), as MoaT-KV's client sends it (no node): n8:2,
	// foo.bar's head, reported deleted drops the entry here.
	seq = s.request("action", "fake_info", "deleted", map[string]any{"n8": []any{int64(2)}})
	wantKeys("fake_info", s.reply(seq), "result", "seq", "tock")
	seq = s.request("action", "get_value", "path", p)
	if r := s.reply(seq); r["value"] != nil {
		t.Errorf("foo.bar after fake_info deleted n8:2: %v", r)
	}

	// log, as `moat kv log dest -i FILE` sends it: {result: true}.
	seq = s.request("action", "log", "path", "moat.dkv", "fetch", false)
	r = s.reply(seq)
	wantKeys("log", r, "result", "seq", "tock")
	if r["result"] != true {
		t.Errorf("log: %v", r)
	}
	recs := readDkv(t, filepath.Join(dir, "edge1", "dumps", "moat.dkv"))
	if len(recs) == 0 || recs[0].Kind != wire.RecordState {
		t.Errorf("moat.dkv starts with %+v, want a state record", recs)
	}
}

// readDkv waits for a change log to hold its first record and decodes it.
func readDkv(t *testing.T, path string) []wire.Record {
	t.Helper()
	var recs []wire.Record
	eventually(t, 10*time.Second, path+" written", func() error {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		recs = recs[:0]
		rd := wire.NewDKVReader(data)
		for {
			r, err := rd.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			recs = append(recs, r)
		}
		if len(recs) == 0 {
			return fmt.Errorf("empty")
		}
		return nil
	})
	return recs
}

// busFixture is one captured MoaT-KV bus message (testdata/moatkv).
type busFixture struct {
	file, phase, broker, topic string
	data                       []byte
}

func busFixtures(t *testing.T) []busFixture {
	t.Helper()
	dir := "../../testdata/moatkv"
	idx, err := os.ReadFile(filepath.Join(dir, "bus-index.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	var out []busFixture
	for i, line := range strings.Split(strings.TrimSpace(string(idx)), "\n") {
		if i == 0 {
			continue
		}
		col := strings.Split(line, "\t")
		data, err := os.ReadFile(filepath.Join(dir, col[0]))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, busFixture{file: col[0], phase: col[1], broker: col[2], topic: col[3], data: data})
	}
	return out
}

// TestE2EMoaTScriptedPeer: a node process on mosquitto (MoaT-KV's prefix,
// the default sync settings) and a scripted MoaT-KV peer that publishes
// the captured two-server traffic byte for byte — chunked updates in their
// chunks — as if the node stood where ref2 stood in the partition: ref1's
// partition writes never reach it. ref1's ping after the heal tells the
// node of ticks 38..40; the node must ask for them with info{missing}; the
// peer then publishes ref1's captured re-sends. ref1's own info{missing}
// for ref2's partition ticks must be answered by the node with updates for
// exactly those entries. The node ends with the tree both MoaT-KV servers
// ended with.
func TestE2EMoaTScriptedPeer(t *testing.T) {
	hub := startMosquitto(t)
	dir := t.TempDir()
	ports := freePorts(t, 2)
	startNodeCfg(t, dir, "", e2eCfg{name: "edge", port: ports[0], client: ports[1], data: filepath.Join(dir, "edge"),
		hubs: []e2eLink{{"site", hub}}, heartbeat: "default", syncExtra: "  prefix: moat/kv\n"})
	var mu sync.Mutex
	var missing []wire.Info
	var answers []tree.Event
	linked := make(chan struct{}, 1)
	peer := dialMQTT(t, hub, "ref", "", "", func(p *paho.Publish) {
		mu.Lock()
		defer mu.Unlock()
		switch p.Topic {
		case "moat/kv/ping":
			if m, err := wire.DecodeActor(p.Payload); err == nil && m.Type == wire.ActorInit && m.Node == "edge" {
				select {
				case linked <- struct{}{}:
				default:
				}
			}
		case "moat/kv/info":
			if in, err := wire.DecodeInfo(p.Payload); err == nil && in.Node == "edge" && len(in.Missing) > 0 {
				missing = append(missing, in)
			}
		case "moat/kv/update":
			if u, err := wire.DecodeUpdate(p.Payload); err == nil {
				answers = append(answers, u.Event)
			} else {
				t.Errorf("the node sent an update MoaT-KV cannot read: %v", err)
			}
		}
	})
	if _, err := peer.Subscribe(t.Context(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "moat/kv/#", NoLocal: true}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-linked:
	case <-time.After(10 * time.Second):
		t.Fatal("the node never said init on moat/kv/ping")
	}
	send := func(f busFixture) {
		t.Helper()
		if _, err := peer.Publish(t.Context(), &paho.Publish{Topic: f.topic, QoS: 1, Payload: f.data}); err != nil {
			t.Fatalf("%s: %v", f.file, err)
		}
	}
	fixtures := busFixtures(t)
	var resends []busFixture
	var ref1Asks busFixture
	for _, f := range fixtures {
		switch {
		case f.phase == "partition" && f.broker == "A":
			// ref1's side of the split: never reaches the node.
		case f.phase == "heal":
			switch {
			case f.file == "bus-2node-065-ping-ping.bin":
				send(f) // ref1's ping [222, 40]
			case f.file == "bus-2node-072-info-missing.bin":
				ref1Asks = f
			case f.file >= "bus-2node-069" && f.file < "bus-2node-072" && strings.Contains(f.file, "update-recovery"):
				resends = append(resends, f) // ref1's re-sends of 38..40
			}
		default:
			send(f)
		}
	}
	if len(resends) != 3 || ref1Asks.data == nil {
		t.Fatalf("fixtures: %d re-sends", len(resends))
	}
	var asked wire.Info
	eventually(t, 20*time.Second, "the node's info{missing} for ref1's ticks 38..40", func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, in := range missing {
			if in.Missing["ref1"].Equal(tree.RangeSetOf(tree.Range{Start: 38, End: 41})) {
				asked = in
				return nil
			}
		}
		return fmt.Errorf("asked %+v", missing)
	})
	if len(asked.Missing) != 1 {
		t.Errorf("the node asked for more than ref1's partition ticks: %v", asked.Missing)
	}
	for _, f := range resends {
		send(f)
	}
	mu.Lock()
	answers = answers[:0]
	mu.Unlock()
	send(ref1Asks) // ref1: info{missing: {ref2: [[6, 9]]}}
	eventually(t, 10*time.Second, "the node's answer to ref1's info{missing}", func() error {
		mu.Lock()
		defer mu.Unlock()
		var got []string
		for _, ev := range answers {
			if h, _ := ev.Chain.Head(); h.Node == "ref2" && h.Tick >= 6 && h.Tick <= 8 {
				got = append(got, h.String())
			}
		}
		slices.Sort(got)
		got = slices.Compact(got)
		if !slices.Equal(got, []string{"ref2:6", "ref2:7", "ref2:8"}) {
			return fmt.Errorf("answered %v", got)
		}
		return nil
	})

	// The node's tree against every captured update applied in order.
	want := tree.New(tree.Config{Self: "observer"})
	re := wire.NewReassembler(0, 0)
	for _, f := range fixtures {
		if f.topic != "moat/kv/update" {
			continue
		}
		whole, done, err := re.Add(f.data)
		if err != nil || !done {
			continue
		}
		u, err := wire.DecodeUpdate(whole)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := want.Apply(u.Event); err != nil {
			t.Fatal(err)
		}
	}
	wantValues := map[string]string{}
	want.Walk(nil, func(e *tree.Entry) bool {
		if v, ok := e.Value(); ok && (len(e.Path()) == 0 || !e.Path()[0].IsNil()) {
			dv, _ := tree.DecodeValue(v)
			wantValues[e.Path().String()] = fmt.Sprint(dv)
		}
		return true
	})
	s := dialMoaT(t, fmt.Sprintf("127.0.0.1:%d", ports[1]))
	eventually(t, 10*time.Second, "the node's tree equal to the MoaT-KV servers'", func() error {
		got := map[string]string{}
		seq := s.request("action", "get_tree", "path", tree.Path{}, "nchain", int64(0))
		var prev tree.Path
		for {
			m := s.reply(seq)
			if st, ok := m["state"]; ok {
				if st == "end" {
					break
				}
				continue
			}
			depth := int(m["depth"].(int64))
			var rel tree.Path
			switch p := m["path"].(type) {
			case tree.Path:
				rel = p
			case []any:
				for _, e := range p {
					rel = append(rel, elemOf(t, e))
				}
			}
			full := append(slices.Clone(prev[:depth]), rel...)
			prev = full
			if len(full) > 0 && full[0] == tree.Str(".edgekv") { // the node's status
				continue
			}
			got[full.String()] = fmt.Sprint(m["value"])
		}
		for p := range got {
			if _, ok := wantValues[p]; !ok {
				return fmt.Errorf("%s = %s: not on the MoaT-KV servers", p, got[p])
			}
		}
		for p, v := range wantValues {
			if got[p] != v {
				return fmt.Errorf("%s = %q, want %q", p, got[p], v)
			}
		}
		return nil
	})
}

// elemOf turns a decoded path element back into a tree.Elem.
func elemOf(t *testing.T, v any) tree.Elem {
	t.Helper()
	switch v := v.(type) {
	case string:
		return tree.Str(v)
	case int64:
		return tree.Int(v)
	case bool:
		return tree.Bool(v)
	case float64:
		return tree.Float(v)
	case []byte:
		return tree.Bytes(v)
	case nil:
		return tree.Nil()
	}
	t.Fatalf("path element %T", v)
	return tree.Elem{}
}
