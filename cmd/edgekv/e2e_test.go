package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/google/go-cmp/cmp"
	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// End-to-end tests of issue 3 ("Proof (real processes, real clients)"):
// real edgekv binaries on loopback ports, driven and read by Debian's
// mosquitto_pub/mosquitto_sub and by paho. Every config lives in
// t.TempDir() with ports from freePorts. Status entries (kv/.edgekv/...) are
// left out wherever trees are compared: each node rewrites its own as links
// and counters change.

// Generous bounds: a 2-core CI box runs three nodes plus the test (under
// -race too).
const (
	syncWait     = 15 * time.Second // a change crossing the links
	convergeWait = 30 * time.Second // catch-up after a heal or restart
)

// meshCfgs returns the configs of a three-node full mesh in dir: board1
// dials board2 and board3, board2 dials board3.
func meshCfgs(dir string, ports []int) []e2eCfg {
	names := []string{"board1", "board2", "board3"}
	cfgs := make([]e2eCfg, 3)
	for i, n := range names {
		cfgs[i] = e2eCfg{name: n, port: ports[i], data: filepath.Join(dir, "data-"+n)}
		for j := i + 1; j < 3; j++ {
			cfgs[i].peers = append(cfgs[i].peers, e2eLink{names[j], ports[j]})
		}
		cfgs[i].peerUsers = names[:i]
	}
	return cfgs
}

// TestE2EMesh: a value published to board1 is read retained from board3
// with its JSON kept; a delete on board3 removes the retained message on
// board1; SIGTERM stops each node cleanly within 5 s.
func TestE2EMesh(t *testing.T) {
	dir := t.TempDir()
	cfgs := meshCfgs(dir, freePorts(t, 3))
	var procs []*proc
	for _, c := range cfgs {
		procs = append(procs, startNodeCfg(t, dir, "", c))
	}
	p1, p2, p3 := cfgs[0].port, cfgs[1].port, cfgs[2].port

	// JSON survives the trip: integers, floats, nested objects and arrays,
	// strings, null; keys come back sorted (the canonical form).
	pub(t, p1, "kv/mesh/obj", `{ "s": "text", "n": 42, "f": 2.5, "neg": -7, "o": {"a": [1, "x", true, null]} }`)
	pub(t, p1, "kv/mesh/num", `21.5`)
	pub(t, p1, "kv/mesh/str", `hello world`) // not JSON: stored as a string
	wantObj := `{"f":2.5,"n":42,"neg":-7,"o":{"a":[1,"x",true,null]},"s":"text"}`
	eventually(t, syncWait, "board1's values retained on board3", func() error {
		got, ok := retained(t, p3, "kv/mesh/obj", time.Second) // mosquitto_sub
		if !ok || got != wantObj {
			return fmt.Errorf("kv/mesh/obj on board3: %q (retained: %v)", got, ok)
		}
		return nil
	})
	for topic, want := range map[string]string{"kv/mesh/num": "21.5", "kv/mesh/str": `"hello world"`} {
		if got, ok := retained(t, p3, topic, 5*time.Second); !ok || got != want {
			t.Fatalf("%s on board3: %q (retained: %v), want %q", topic, got, ok, want)
		}
	}
	// The version travels with it: written by board1, same tock everywhere.
	e1 := dumpEntries(t, p1, "kv/mesh/obj")["kv/mesh/obj"]
	e3 := dumpEntries(t, p3, "kv/mesh/obj")["kv/mesh/obj"]
	if e3.Node != "board1" || e3.Tick == 0 || e3.Tock == 0 || e3 != e1 {
		t.Fatalf("kv/mesh/obj: board1 has %+v, board3 has %+v; want the same version, node board1", e1, e3)
	}

	// A delete (empty payload) on board3 clears the retained message on
	// board1 and board2.
	pub(t, p3, "kv/mesh/obj", "")
	waitGone(t, p1, "kv/mesh/obj", syncWait)
	waitGone(t, p2, "kv/mesh/obj", syncWait)
	if d := dumpRetained(t, p1, "kv/mesh"); d["kv/mesh/obj"] != "" || d["kv/mesh/num"] != "21.5" {
		t.Fatalf("board1 after the delete (mosquitto_sub): %v", d)
	}

	// SIGTERM: each node exits with status 0 within 5 s.
	for i, p := range procs {
		took := p.stop(syscall.SIGTERM)
		if err := p.exited(); err != nil {
			t.Errorf("%s: exit after SIGTERM: %v", cfgs[i].name, err)
		}
		if took > 5*time.Second {
			t.Errorf("%s: SIGTERM took %v to stop, want ≤ 5 s", cfgs[i].name, took)
		}
		if !strings.Contains(p.Log(), "msg=stopped") {
			t.Errorf("%s: no \"stopped\" line in its log", cfgs[i].name)
		}
		t.Logf("%s stopped in %v", cfgs[i].name, took.Round(time.Millisecond))
	}
}

// TestE2ELine: in a – b – c (no a–c link) an update on a reaches c through
// b, and the sync traffic stays bounded: no loop.
func TestE2ELine(t *testing.T) {
	dir := t.TempDir()
	ports := freePorts(t, 3)
	pa, pb, pc := ports[0], ports[1], ports[2]
	startNodeCfg(t, dir, "", e2eCfg{name: "a", port: pa, data: filepath.Join(dir, "a"), peers: []e2eLink{{"b", pb}}})
	startNodeCfg(t, dir, "", e2eCfg{name: "b", port: pb, data: filepath.Join(dir, "b"), peers: []e2eLink{{"c", pc}}, peerUsers: []string{"a"}})
	startNodeCfg(t, dir, "", e2eCfg{name: "c", port: pc, data: filepath.Join(dir, "c"), peerUsers: []string{"b"}})

	pub(t, pa, "kv/line/hello", `"from a"`)
	waitValue(t, pc, "kv/line/hello", `"from a"`, syncWait)

	const n = 50
	ca := dialMQTT(t, pa, "", "", "", nil)
	for i := range n {
		mustPublish(t, ca, fmt.Sprintf("kv/line/v/%d", i), strconv.Itoa(i))
	}
	eventually(t, syncWait, fmt.Sprintf("all %d values on c", n), func() error {
		d := dumpEntries(t, pc, "kv/line/v/#")
		for i := range n {
			if e := d[fmt.Sprintf("kv/line/v/%d", i)]; e.Payload != strconv.Itoa(i) || e.Node != "a" {
				return fmt.Errorf("kv/line/v/%d on c: %+v (%d of %d there)", i, e, len(d), n)
			}
		}
		return nil
	})

	// Wait for the counters to settle: each node rewrites its sync counters
	// (every 5 heartbeats = 1 s) only after changes other than status
	// entries, so once the burst has passed they stop moving. Updates
	// circling in a loop would keep them moving.
	var settled map[string]entry
	eventually(t, syncWait, "sync counters settled", func() error {
		d1 := dumpEntries(t, pb, "kv/#")
		for _, node := range []string{"a", "b", "c"} {
			if syncCounters(t, d1, node) == nil {
				return fmt.Errorf("no sync counters of %s yet", node)
			}
		}
		if got := syncCounters(t, d1, "c")["applied"]; got < n+1 {
			return fmt.Errorf("c has applied %d updates, want ≥ %d", got, n+1)
		}
		time.Sleep(1500 * time.Millisecond) // more than one status period
		d2 := dumpEntries(t, pb, "kv/#")
		if diff := cmp.Diff(d1, d2); diff != "" {
			return fmt.Errorf("still changing:\n%s", diff)
		}
		settled = d2
		return nil
	})

	// Each node's tick is the number of changes it made (its writes and its
	// status entries); with nothing deleted, the highest tick among the
	// entries a node wrote is its current tick.
	ticks := map[string]uint64{}
	for _, e := range settled {
		ticks[e.Node] = max(ticks[e.Node], e.Tick)
	}
	var changes uint64
	for _, node := range []string{"a", "b", "c"} {
		changes += ticks[node]
	}
	var sent, dups int
	cnt := map[string]map[string]int{}
	for _, node := range []string{"a", "b", "c"} {
		cnt[node] = syncCounters(t, settled, node)
		sent += cnt[node]["updates_sent"]
		dups += cnt[node]["duplicates"]
	}
	t.Logf("ticks %v (%d changes), counters %v", ticks, changes, cnt)
	if ticks["a"] < n+1 {
		t.Fatalf("a's tick is %d, want ≥ %d (its own writes)", ticks["a"], n+1)
	}
	// In a line every change crosses each of the 2 links exactly once:
	// its origin sends it to its neighbours, a node relays it only to its
	// other link. So updates sent ≤ 2 × changes (about 110 for 58 changes
	// here). The slack covers resends that are not loops: the digest
	// exchange at link-up can resend an entry also sent live, and a
	// request for ticks announced by a heartbeat before their update
	// arrived resends those. A loop is far outside it: sending an update
	// back on the link it came from as well would make it 4 × changes,
	// relaying it on and on would never let the counters settle. (The
	// counters were recorded before each node's last status write, so
	// they undercount, never overcount.)
	slack := 10 + int(changes)/4
	if limit := 2*int(changes) + slack; sent > limit {
		t.Errorf("updates sent by all nodes: %d, want ≤ 2 × %d changes + %d = %d: messages loop", sent, changes, slack, limit)
	}
	// a's 51 writes alone crossed both links.
	if sent < 2*(n+1) {
		t.Errorf("updates sent by all nodes: %d, want ≥ %d (a's writes over 2 links)", sent, 2*(n+1))
	}
	// The ends of the line have one link each: nothing to relay to, in
	// particular nothing back towards a. b relays a's updates to c.
	if r := cnt["a"]["relayed"]; r != 0 {
		t.Errorf("a relayed %d updates, want 0 (one link)", r)
	}
	if r := cnt["c"]["relayed"]; r != 0 {
		t.Errorf("c relayed %d updates, want 0 (one link; a's updates end here)", r)
	}
	if r := cnt["b"]["relayed"]; r < n+1 {
		t.Errorf("b relayed %d updates, want ≥ %d (a's writes on to c)", r, n+1)
	}
	// Each node receives each change once; a bounce or a loop would show
	// up as duplicates, about one per change or more.
	if dups > slack {
		t.Errorf("duplicates across nodes: %d, want ≤ %d", dups, slack)
	}
}

// sideVersion is one side's version of a key during a partition: a value with
// its tock, or a deletion whose tock lies strictly between lo and hi (the
// tocks of marker writes made just before and after it on the same node).
type sideVersion struct {
	node    string
	deleted bool
	value   string
	tock    uint64 // values
	lo, hi  uint64 // deletions
}

// beats reports whether v wins over w under edgekv's rule for concurrent
// versions: higher (tock, node name); tombstones compete like values. ok is
// false when the tocks observed cannot decide it.
func (v sideVersion) beats(w sideVersion) (win, ok bool) {
	switch {
	case !v.deleted && !w.deleted:
		if v.tock != w.tock {
			return v.tock > w.tock, true
		}
		return v.node > w.node, v.node != w.node
	case v.deleted && !w.deleted:
		if w.tock <= v.lo {
			return true, true // v's tock > lo ≥ w's
		}
		if w.tock >= v.hi {
			return false, true // w's tock ≥ hi > v's
		}
		return false, false
	case !v.deleted && w.deleted:
		win, ok := w.beats(v)
		return !win, ok
	}
	return true, true // both deleted: the key is gone either way
}

// sideWriter writes on one node and records the versions it makes.
type sideWriter struct {
	t     *testing.T
	node  string
	port  int
	c     *paho.Client
	dels  map[string][2]string // key → marker topics before and after
	marks int
}

func newSideWriter(t *testing.T, node string, port int) *sideWriter {
	return &sideWriter{t: t, node: node, port: port, c: dialMQTT(t, port, "", "", "", nil), dels: map[string][2]string{}}
}

func (w *sideWriter) set(key, value string) { mustPublish(w.t, w.c, key, value) }

func (w *sideWriter) marker() string {
	w.marks++
	m := fmt.Sprintf("kv/part/mark/%s/%d", w.node, w.marks)
	mustPublish(w.t, w.c, m, "1")
	return m
}

// del deletes key between two marker writes.
func (w *sideWriter) del(key string) {
	before := w.marker()
	mustPublish(w.t, w.c, key, "")
	w.dels[key] = [2]string{before, w.marker()}
}

func (w *sideWriter) pump(n int) {
	for i := range n {
		mustPublish(w.t, w.c, fmt.Sprintf("kv/part/pump/%s/%d", w.node, i), strconv.Itoa(i))
	}
}

// versions reads the versions this writer made of keys from dump (the
// side's settled tree).
func (w *sideWriter) versions(dump map[string]entry, keys []string, into map[string]sideVersion) {
	for _, k := range keys {
		if m, ok := w.dels[k]; ok {
			lo, hi := dump[m[0]], dump[m[1]]
			if lo.Node != w.node || hi.Node != w.node {
				w.t.Fatalf("markers of the delete of %s on %s: %+v, %+v", k, w.node, lo, hi)
			}
			into[k] = sideVersion{node: w.node, deleted: true, lo: lo.Tock, hi: hi.Tock}
			continue
		}
		e, ok := dump[k]
		if !ok || e.Node != w.node {
			w.t.Fatalf("%s: %s's write is not in its side's tree: %+v", k, w.node, e)
		}
		into[k] = sideVersion{node: w.node, value: e.Payload, tock: e.Tock}
	}
}

// TestE2EPartition: board2 is cut off from a three-node mesh (its links go
// through proxies that drop every connection; the processes keep running),
// both sides write, including conflicting writes and deletes of the same
// keys; after the heal all three hold identical trees, and every conflict
// went to the higher (tock, node).
func TestE2EPartition(t *testing.T) {
	dir := t.TempDir()
	ports := freePorts(t, 3)
	cfgs, proxies := meshViaProxies(t, dir, ports)
	for _, c := range cfgs {
		startNodeCfg(t, dir, "", c)
	}
	p1, p2, p3 := ports[0], ports[1], ports[2]
	p2cut := p2

	// Base keys k1…k6, known everywhere.
	c1 := dialMQTT(t, p1, "", "", "", nil)
	for i := 1; i <= 6; i++ {
		mustPublish(t, c1, fmt.Sprintf("kv/part/k%d", i), fmt.Sprintf(`"base%d"`, i))
	}
	for _, p := range []int{p2, p3} {
		waitValue(t, p, "kv/part/k6", `"base6"`, syncWait)
	}

	// Cut board2 off: every connection to or from it drops, and new
	// ones are refused.
	isolate(proxies, 1, true)

	// Side B (board2) first: raise its tock with 60 writes, then write and
	// delete, so its versions of k1, k2 beat side A's later, low-tock ones.
	b := newSideWriter(t, "board2", p2cut)
	b.pump(60)
	b.set("kv/part/k1", `"B"`)    // vs A's value: B wins (higher tock)
	b.del("kv/part/k2")           // vs A's value: B's delete wins
	b.set("kv/part/k3", `"B"`)    // vs A's later value: A wins
	b.set("kv/part/k4", `"B"`)    // vs A's later delete: the delete wins
	b.del("kv/part/k5")           // deleted on both sides
	b.del("kv/part/k6")           // deleted on B only
	b.set("kv/part/onlyB", `"B"`) // no conflict

	// Side A (board1 and board3): k1, k2 while A's tock is still low, then
	// 120 writes to pass B, then the rest (some on board3).
	a1 := newSideWriter(t, "board1", p1)
	a3 := newSideWriter(t, "board3", p3)
	a1.set("kv/part/k1", `"A"`)
	a3.set("kv/part/k2", `"A3"`)
	a1.pump(120)
	waitValue(t, p3, "kv/part/pump/board1/119", "119", syncWait) // board3's tock has seen the pump
	a3.set("kv/part/k3", `"A3"`)
	a1.del("kv/part/k4")
	a3.del("kv/part/k5")
	a1.set("kv/part/onlyA", `"A"`)

	keys := []string{"kv/part/k1", "kv/part/k2", "kv/part/k3", "kv/part/k4", "kv/part/k5", "kv/part/k6", "kv/part/onlyA", "kv/part/onlyB"}
	// Each side's versions, from its settled tree (board1 and board3 agree).
	var sideA map[string]entry
	eventually(t, syncWait, "board1 and board3 agree during the partition", func() error {
		d1, d3 := withoutStatus(dumpEntries(t, p1, "kv/#")), withoutStatus(dumpEntries(t, p3, "kv/#"))
		if diff := cmp.Diff(d1, d3); diff != "" {
			return fmt.Errorf("board1 and board3 differ (-board1 +board3):\n%s", diff)
		}
		sideA = d1
		return nil
	})
	sideB := withoutStatus(dumpEntries(t, p2cut, "kv/#"))
	if _, ok := sideB["kv/part/onlyA"]; ok {
		t.Fatal("board2 saw side A's write while cut off: the partition leaks")
	}
	if _, ok := sideA["kv/part/onlyB"]; ok {
		t.Fatal("side A saw board2's write while it was cut off: the partition leaks")
	}
	verA, verB := map[string]sideVersion{}, map[string]sideVersion{}
	b.versions(sideB, []string{"kv/part/k1", "kv/part/k2", "kv/part/k3", "kv/part/k4", "kv/part/k5", "kv/part/k6", "kv/part/onlyB"}, verB)
	a1.versions(sideA, []string{"kv/part/k1", "kv/part/k4", "kv/part/onlyA"}, verA)
	a3.versions(sideA, []string{"kv/part/k2", "kv/part/k3", "kv/part/k5"}, verA)

	// The winners by the rule, from the observed tocks; the scenario was
	// built so that each side wins some conflicts and tombstones both win
	// and lose.
	want := map[string]sideVersion{}
	for _, k := range keys {
		va, inA := verA[k]
		vb, inB := verB[k]
		switch {
		case inA && inB:
			win, ok := va.beats(vb)
			if !ok {
				t.Fatalf("test setup: the tocks do not decide %s: A %+v, B %+v", k, va, vb)
			}
			want[k] = vb
			if win {
				want[k] = va
			}
		case inA:
			want[k] = va
		default:
			want[k] = vb
		}
	}
	designed := map[string]string{
		"kv/part/k1": `"B"`, "kv/part/k2": "", "kv/part/k3": `"A3"`, "kv/part/k4": "",
		"kv/part/k5": "", "kv/part/k6": "", "kv/part/onlyA": `"A"`, "kv/part/onlyB": `"B"`,
	}
	for k, v := range designed {
		if got := want[k]; got.value != v || got.deleted != (v == "") {
			t.Fatalf("test setup: by the observed tocks %s goes to %+v, the scenario meant %q (A %+v, B %+v)", k, got, v, verA[k], verB[k])
		}
	}

	// Heal.
	isolate(proxies, 1, false)

	final := waitIdentical(t, cfgs, []int{p1, p2, p3})
	for _, k := range keys {
		w := want[k]
		e, ok := final[k]
		switch {
		case w.deleted && ok:
			t.Errorf("%s: %+v survived, but the delete on %s wins", k, e, w.node)
		case !w.deleted && (!ok || e.Payload != w.value || e.Node != w.node || e.Tock != w.tock):
			t.Errorf("%s: got %+v (present %v), want %s's %s at tock %d", k, e, ok, w.node, w.value, w.tock)
		}
	}
	// Nothing else was lost: both sides' pumps and markers are all there.
	for _, side := range []map[string]entry{sideA, sideB} {
		for k, e := range side {
			if strings.HasPrefix(k, "kv/part/pump/") || strings.HasPrefix(k, "kv/part/mark/") {
				if final[k] != e {
					t.Errorf("%s: %+v before the heal, %+v after", k, e, final[k])
				}
			}
		}
	}
	t.Logf("winners: %v", want)
}

// TestE2ECrash: kill -9 a node with sync "always" during a stream of QoS 1
// writes; after a restart on the same data directory every acknowledged
// write is there.
func TestE2ECrash(t *testing.T) {
	dir := t.TempDir()
	port := freePorts(t, 1)[0]
	p := startNodeCfg(t, dir, "", e2eCfg{name: "crash", port: port, data: filepath.Join(dir, "data"), sync: "always"})

	c := dialMQTT(t, port, "", "", "", nil)
	var (
		mu     sync.Mutex
		acked  []int
		failed int
		next   int
		wg     sync.WaitGroup
	)
	// Cancelled after the kill: paho does not fail the publishes in flight
	// when the connection drops, they would wait out their timeout.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	const workers = 8
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				code, err := publishQoS1Ctx(ctx, c, fmt.Sprintf("kv/crash/%d", i), []byte(strconv.Itoa(i)))
				mu.Lock()
				if err == nil && code < 0x80 {
					acked = append(acked, i)
					mu.Unlock()
					continue
				}
				failed++
				mu.Unlock()
				return // the connection is gone
			}
		}()
	}
	eventually(t, 20*time.Second, "200 acknowledged writes", func() error {
		mu.Lock()
		defer mu.Unlock()
		if failed > 0 {
			return fmt.Errorf("a write failed before the kill (%d acked)", len(acked))
		}
		if len(acked) < 200 {
			return fmt.Errorf("%d acked", len(acked))
		}
		return nil
	})
	p.stop(syscall.SIGKILL)
	// Acks sent before the kill may still be in the socket: they count
	// too. The client has read everything once it has shut down.
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the MQTT client did not notice the node's death")
	}
	cancel()
	wg.Wait()
	mu.Lock()
	got := slices.Clone(acked)
	sent, lost := next, failed
	mu.Unlock()
	if lost == 0 {
		t.Fatal("no write was cut off by the kill: the stream had ended")
	}
	t.Logf("killed after %d acknowledged writes (%d sent, %d writers cut off)", len(got), sent, lost)

	p.restart()
	// The node republishes its entries as it starts, so wait for them.
	var d map[string]entry
	eventually(t, syncWait, "every acknowledged write back after the restart", func() error {
		d = dumpEntries(t, port, "kv/crash/#")
		var missing []int
		for _, i := range got {
			if e, ok := d[fmt.Sprintf("kv/crash/%d", i)]; !ok || e.Payload != strconv.Itoa(i) {
				missing = append(missing, i)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d acknowledged writes missing: %v", len(missing), len(got), missing)
		}
		return nil
	})
	for k, e := range d { // unacknowledged writes may or may not be there, but intact
		if i, err := strconv.Atoi(strings.TrimPrefix(k, "kv/crash/")); err != nil || e.Payload != strconv.Itoa(i) {
			t.Errorf("%s after restart: %q", k, e.Payload)
		}
	}
	t.Logf("after restart: %d entries, all %d acknowledged present", len(d), len(got))
}

// TestE2EHub: two nodes without peers sync through Debian's mosquitto.
func TestE2EHub(t *testing.T) {
	hub := startMosquitto(t)
	dir := t.TempDir()
	ports := freePorts(t, 2)
	for i, name := range []string{"hub1", "hub2"} {
		startNodeCfg(t, dir, "", e2eCfg{name: name, port: ports[i], data: filepath.Join(dir, name), hubs: []e2eLink{{"site", hub}}})
	}
	pub(t, ports[0], "kv/hub/from1", `{"n":1}`)
	waitValue(t, ports[1], "kv/hub/from1", `{"n":1}`, syncWait)
	pub(t, ports[1], "kv/hub/from2", `"two"`)
	waitValue(t, ports[0], "kv/hub/from2", `"two"`, syncWait)
	pub(t, ports[1], "kv/hub/from1", "")
	waitGone(t, ports[0], "kv/hub/from1", syncWait)
}

// TestE2EBadInput: garbage and oversized KV writes are refused with a
// reason code; a plain client cannot publish sync messages; malformed sync
// messages from an authenticated peer are dropped with a log line. The
// node keeps serving, and the tree is unchanged.
func TestE2EBadInput(t *testing.T) {
	const maxPayload = 4096
	dir := t.TempDir()
	ports := freePorts(t, 2)
	p1, p2 := ports[0], ports[1]
	node1 := startNodeCfg(t, dir, "", e2eCfg{name: "node1", port: p1, data: filepath.Join(dir, "n1"),
		peerUsers: []string{"node2"}, extra: fmt.Sprintf("kv:\n  max_payload_bytes: %d\n", maxPayload)})
	startNodeCfg(t, dir, "", e2eCfg{name: "node2", port: p2, data: filepath.Join(dir, "n2"), peers: []e2eLink{{"node1", p1}}})

	pub(t, p1, "kv/bad/base", `{"ok":true}`)
	waitValue(t, p2, "kv/bad/base", `{"ok":true}`, syncWait) // the peer link works
	var before map[string]entry
	eventually(t, syncWait, "a stable dump", func() error {
		d1, d2 := withoutStatus(dumpEntries(t, p1, "kv/#")), withoutStatus(dumpEntries(t, p1, "kv/#"))
		if diff := cmp.Diff(d1, d2); diff != "" {
			return fmt.Errorf("%s", diff)
		}
		before = d1
		return nil
	})
	unchanged := func(step string) {
		t.Helper()
		if diff := cmp.Diff(before, withoutStatus(dumpEntries(t, p1, "kv/#"))); diff != "" {
			t.Fatalf("%s changed the tree (-before +after):\n%s", step, diff)
		}
	}

	// A plain client subscribed to everything must never see sync traffic.
	var spyMu sync.Mutex
	var spied []string
	spy := dialMQTT(t, p1, "", "", "", func(p *paho.Publish) {
		if strings.HasPrefix(p.Topic, "edgekv/") {
			spyMu.Lock()
			spied = append(spied, p.Topic)
			spyMu.Unlock()
		}
	})
	if _, err := spy.Subscribe(t.Context(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "#"}}}); err != nil {
		t.Fatal(err)
	}
	// Subscribing to the sync prefix itself is refused outright.
	sa, _ := spy.Subscribe(t.Context(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "edgekv/sync/#"}}})
	if sa == nil || len(sa.Reasons) != 1 || sa.Reasons[0] < 0x80 {
		t.Errorf("plain client subscribing to edgekv/sync/#: SUBACK %+v, want a refusal", sa)
	}

	// (a) Garbage and oversized payloads on KV topics: refused with an MQTT
	// v5 reason code, on new keys and on an existing one.
	plain := dialMQTT(t, p1, "", "", "", nil)
	garbage := []byte{0xff, 0xfe, 0x80, 'a', 0xc3, 0x28, 0x00}
	oversized := []byte(`"` + strings.Repeat("x", maxPayload) + `"`)
	for _, tc := range []struct {
		name, topic string
		payload     []byte
		code        byte
	}{
		{"non-UTF-8 bytes", "kv/bad/garbage", garbage, 0x99},
		{"non-UTF-8 bytes over a value", "kv/bad/base", garbage, 0x99},
		{"oversized", "kv/bad/big", oversized, 0x97},
		{"oversized over a value", "kv/bad/base", oversized, 0x97},
	} {
		code, err := publishQoS1(plain, tc.topic, tc.payload)
		if err != nil || code != tc.code {
			t.Errorf("%s on %s: PUBACK 0x%02x (%v), want 0x%02x", tc.name, tc.topic, code, err, tc.code)
		}
	}
	// The same with Debian's client, which reports the reason.
	gfile := filepath.Join(dir, "garbage")
	if err := os.WriteFile(gfile, garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(needTool(t, "mosquitto_pub", "mosquitto-clients"), "-h", "127.0.0.1", "-p", strconv.Itoa(p1),
		"-V", "mqttv5", "-q", "1", "-t", "kv/bad/garbage", "-f", gfile).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Payload format invalid")) {
		t.Errorf("mosquitto_pub of garbage: %v, output %q; want a \"Payload format invalid\" refusal", err, out)
	}
	unchanged("garbage and oversized writes")

	// A valid update that would set bad.evil if anyone took it.
	evil := func(sender string, tick uint64) []byte {
		return wire.AppendUpdate(nil, tree.Event{
			Path:  tree.Path{tree.Str("bad"), tree.Str("evil")},
			Value: msgp.AppendString(nil, "evil"),
			Chain: tree.Chain{{Node: sender, Tick: tick}},
			Tock:  1 << 40,
		})
	}

	// (b) A plain client publishing on the sync prefix, as itself or
	// posing as the peer: refused (not authorized), nothing applied.
	for _, topic := range []string{
		"edgekv/sync/to/node1/from/x/update",
		"edgekv/sync/to/node1/from/node2/update",
		"edgekv/sync/to/node1/from/node2/edgekv/batch",
	} {
		code, err := publishQoS1(plain, topic, evil("x", 1))
		if err != nil || code < 0x80 {
			t.Errorf("plain client on %s: PUBACK 0x%02x (%v), want a refusal", topic, code, err)
		}
	}
	pub(t, p1, "kv/bad/marker1", "1") // handled after the refused messages above
	waitValue(t, p1, "kv/bad/marker1", "1", syncWait)
	if strings.Contains(node1.Log(), "dropped a sync message") {
		t.Fatal("a plain client's sync message reached the replica")
	}
	pub(t, p1, "kv/bad/marker1", "")
	waitGone(t, p1, "kv/bad/marker1", syncWait)
	unchanged("sync messages from a plain client")

	// (c) A client authenticated as the peer node2 sends malformed sync
	// messages on node2's topic.
	peer := dialMQTT(t, p1, "e2e-fake-node2", "node2", peerPassword("node2"), nil)
	tick := dumpEntries(t, p1, "kv/bad/base")["kv/bad/base"].Tick
	good := evil("node2", 1000)
	repeat := wire.AppendUpdate(nil, tree.Event{ // a chain naming node2 twice
		Path: tree.Path{tree.Str("bad"), tree.Str("evil")}, Value: msgp.AppendString(nil, "evil"),
		Chain: tree.Chain{{Node: "node2", Tick: 1001}, {Node: "node2", Tick: 1000}}, Tock: 1 << 40,
	})
	stolen := wire.AppendUpdate(nil, tree.Event{ // claims the link of node1's write of bad.base
		Path: tree.Path{tree.Str("bad"), tree.Str("evil")}, Value: msgp.AppendString(nil, "evil"),
		Chain: tree.Chain{{Node: "node1", Tick: tick}}, Tock: 1 << 40,
	})
	bad := []struct {
		name, suffix string
		data         []byte
	}{
		{"garbage", "update", []byte{0xff, 0x00, 0x13, 0x37, 0xc1, 0xde, 0xad}},
		{"truncated msgpack", "update", good[:len(good)-5]},
		{"chain repeating a node", "update", repeat},
		{"chain taking another entry's link", "update", stolen},
		{"batch of bad elements", "edgekv/batch", wire.AppendBatch(nil, [][]byte{repeat, stolen})},
		{"garbage digest", "edgekv/digest", []byte{0x92, 0x01}},
	}
	for _, m := range bad {
		code, err := publishQoS1(peer, "edgekv/sync/to/node1/from/node2/"+m.suffix, m.data)
		if err != nil || code >= 0x80 {
			t.Fatalf("peer publish of %s: PUBACK 0x%02x (%v)", m.name, code, err)
		}
	}
	eventually(t, syncWait, "a log line per malformed sync message", func() error {
		if n := strings.Count(node1.Log(), "dropped a sync message"); n < len(bad) {
			return fmt.Errorf("%d lines", n)
		}
		return nil
	})
	for _, l := range strings.Split(node1.Log(), "\n") {
		if strings.Contains(l, "dropped a sync message") {
			t.Log(l[strings.Index(l, "msg="):])
		}
	}
	eventually(t, syncWait, "node1's malformed counter", func() error {
		if n := syncCounters(t, dumpEntries(t, p1, "kv/.edgekv/status/node1/sync"), "node1")["malformed"]; n < len(bad) {
			return fmt.Errorf("malformed = %d, want ≥ %d", n, len(bad))
		}
		return nil
	})

	// Still serving: a normal write works and still reaches the real peer.
	pub(t, p1, "kv/bad/after", `"still here"`)
	waitValue(t, p1, "kv/bad/after", `"still here"`, syncWait)
	waitValue(t, p2, "kv/bad/after", `"still here"`, syncWait)
	pub(t, p1, "kv/bad/after", "")
	waitGone(t, p1, "kv/bad/after", syncWait)
	waitGone(t, p2, "kv/bad/after", syncWait)
	unchanged("malformed sync messages from a peer")
	if d := withoutStatus(dumpEntries(t, p2, "kv/#")); !cmp.Equal(before, d) {
		t.Errorf("node2's tree differs from node1's:\n%s", cmp.Diff(before, d))
	}
	spyMu.Lock()
	defer spyMu.Unlock()
	if len(spied) > 0 {
		t.Errorf("a plain client subscribed to # received sync messages: %v", spied)
	}
}

// TestE2EPeerSecondConnection: a second connection authenticated as a peer
// (another client ID, same peer user) that subscribes to the peer's sync
// topic and goes away must not cut the real peer's link: the newest
// connection takes over, the old one is closed, and the real peer
// reconnects.
func TestE2EPeerSecondConnection(t *testing.T) {
	dir := t.TempDir()
	ports := freePorts(t, 2)
	p1, p2 := ports[0], ports[1]
	startNodeCfg(t, dir, "", e2eCfg{name: "node1", port: p1, data: filepath.Join(dir, "n1"), peerUsers: []string{"node2"}})
	startNodeCfg(t, dir, "", e2eCfg{name: "node2", port: p2, data: filepath.Join(dir, "n2"), peers: []e2eLink{{"node1", p1}}})
	pub(t, p1, "kv/x/a", "1")
	waitValue(t, p2, "kv/x/a", "1", syncWait)

	second := dialMQTT(t, p1, "e2e-second-node2", "node2", peerPassword("node2"), nil)
	if _, err := second.Subscribe(t.Context(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "edgekv/sync/to/node2/#"}}}); err != nil {
		t.Fatal(err)
	}
	_ = second.Disconnect(&paho.Disconnect{})

	pub(t, p1, "kv/x/b", "2")
	waitValue(t, p2, "kv/x/b", "2", syncWait)
}

// cliNode starts a lone node "cli" for CLI tests. run runs the edgekv
// binary against it and fails the test unless the exit status is want;
// a failure must be one line on stderr and nothing on stdout.
func cliNode(t *testing.T) (bin, srv string, mqttPort int, run func(want int, args ...string) string) {
	t.Helper()
	return cliNodeNamed(t, "cli")
}

// cliNodeNamed is cliNode for a node of another name.
func cliNodeNamed(t *testing.T, name string) (bin, srv string, mqttPort int, run func(want int, args ...string) string) {
	t.Helper()
	bin = edgekvBinary(t)
	ps := freePorts(t, 2)
	mqttPort = ps[0]
	clientPort := ps[1]
	dir := t.TempDir()
	cfg := filepath.Join(dir, name+".yaml")
	yaml := fmt.Sprintf("node: %s\ndata: {dir: %q}\nlisten: {mqtt: [\"127.0.0.1:%d\"], client: \"127.0.0.1:%d\"}\n", name, filepath.Join(dir, "data"), mqttPort, clientPort)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	startNode(t, name, cfg, mqttPort)
	srv = fmt.Sprintf("127.0.0.1:%d", clientPort)
	run = func(want int, args ...string) string {
		t.Helper()
		out, errOut, code := runBinary(t, bin, append(args, "-s", srv)...)
		if code != want {
			t.Fatalf("edgekv %v: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, want, out, errOut)
		}
		if want != 0 {
			wantOneLineError(t, args, out, errOut)
		}
		return out
	}
	return bin, srv, mqttPort, run
}

// TestE2ECLI: the data commands against a real node, with their exit
// statuses (0 ok, 1 no such entry, 2 usage, 3 server or connection); every
// failure is one line on stderr and nothing on stdout.
func TestE2ECLI(t *testing.T) {
	bin, srv, mqttPort, run := cliNode(t)
	deadPort := freePorts(t, 1)[0]
	run(0, "set", "room.temp", "21.5")
	run(0, "set", "room.name", "--string", "42")
	run(0, "set", "room.cfg", "{a: 1, b: [x, true]}")
	if out := run(0, "get", "room.temp"); strings.TrimSpace(out) != "21.5" {
		t.Fatalf("get room.temp = %q", out)
	}
	if out := run(0, "get", "room.name", "-o", "json"); strings.TrimSpace(out) != `"42"` {
		t.Fatalf("get room.name = %q, want the string \"42\"", out)
	}
	if out := run(0, "get", "room.cfg", "-o", "json"); strings.TrimSpace(out) != `{"a":1,"b":["x",true]}` {
		t.Fatalf("get room.cfg = %q", out)
	}
	if out := run(0, "get", "room.temp", "-m", "-o", "json"); !strings.Contains(out, `"chain":[{"node":"cli"`) {
		t.Fatalf("get -m = %q", out)
	}
	if out := run(0, "list", "room"); strings.Fields(out)[0] != "cfg" || len(strings.Fields(out)) != 3 {
		t.Fatalf("list room = %q", out)
	}
	if out := run(0, "tree", "room"); !strings.Contains(out, "room.temp") || !strings.Contains(out, "21.5") {
		t.Fatalf("tree room = %q", out)
	}
	// The CLI's write is an MQTT retained message too.
	if v, ok := retained(t, mqttPort, "kv/room/temp", 5*time.Second); !ok || v != "21.5" {
		t.Fatalf("kv/room/temp retained = %q %v", v, ok)
	}
	if out := run(0, "status"); !strings.Contains(out, "node: cli") || !strings.Contains(out, "tick: ") || !strings.Contains(out, "missing: {}") {
		t.Fatalf("status = %q", out)
	}
	if out := run(0, "status", "-o", "json"); !strings.Contains(out, `"nodes":{"cli":`) {
		t.Fatalf("status -o json = %q", out)
	}
	run(0, "delete", "room.temp")
	run(1, "get", "room.temp")
	run(1, "delete", "room.temp")
	run(3, "set", "room.name", "--new", "x") // exists: a conflict the server reports
	run(2, "get", "room:q")                  // a malformed path
	run(2, "get")
	run(2, "get", "room.name", "--no-such-flag")
	run(2, "get", "room.name", "-o", "xml")
	run(2, "set", "room.x", "{a: 1, a: 2}") // YAML's error spans two lines
	dead := fmt.Sprintf("127.0.0.1:%d", deadPort)
	args := []string{"get", "room.name", "-s", dead}
	out, errOut, code := runBinary(t, bin, args...)
	if code != 3 {
		t.Fatalf("unreachable server: exit %d, want 3", code)
	}
	wantOneLineError(t, args, out, errOut)

	// EDGEKV_SERVER is the default server; -s wins over it.
	for _, tc := range []struct {
		env  string
		args []string
		want int
	}{
		{srv, []string{"get", "room.name", "-o", "json"}, 0},
		{dead, []string{"get", "room.name", "-o", "json"}, 3},
		{dead, []string{"get", "room.name", "-o", "json", "-s", srv}, 0},
		{dead, []string{"get", "room.name", "-o", "json", "--server", srv}, 0},
	} {
		out, errOut, code := runBinaryEnv(t, bin, []string{"EDGEKV_SERVER=" + tc.env}, tc.args...)
		if code != tc.want {
			t.Fatalf("EDGEKV_SERVER=%s edgekv %v: exit %d, want %d\nstdout: %s\nstderr: %s", tc.env, tc.args, code, tc.want, out, errOut)
		}
		switch tc.want {
		case 0:
			if strings.TrimSpace(out) != `"42"` {
				t.Errorf("EDGEKV_SERVER=%s edgekv %v = %q, want the string \"42\"", tc.env, tc.args, out)
			}
		default:
			wantOneLineError(t, tc.args, out, errOut)
			if !strings.Contains(errOut, dead) {
				t.Errorf("EDGEKV_SERVER=%s edgekv %v: %q does not name the server it tried", tc.env, tc.args, errOut)
			}
		}
	}
}

// TestE2ECLISetValue: how set reads its value against a real node: YAML
// from the argument (a quoted "42" is a string) or from --file, literally
// with --string; a value or file that cannot be used is a usage error
// (exit 2) that writes nothing.
func TestE2ECLISetValue(t *testing.T) {
	_, _, _, run := cliNode(t)
	dir := t.TempDir()
	file := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfgFile := file("cfg.yaml", "# a board's settings\nname: pump\nlimits:\n  min: 1\n  max: 2.5\non: true\nlabel: \"42\"\n")
	for _, tc := range []struct {
		name string
		args []string // after "set PATH"
		want string   // get -o json
	}{
		{"integer", []string{"42"}, `42`},
		{"quoted string", []string{`"42"`}, `"42"`},
		{"single-quoted string", []string{`'42'`}, `"42"`},
		{"--string", []string{"--string", "42"}, `"42"`},
		{"--string keeps quotes", []string{"--string", `"42"`}, `"\"42\""`},
		{"bool", []string{"true"}, `true`},
		{"null", []string{"~"}, `null`},
		{"list", []string{"[1, two, 3.5]"}, `[1,"two",3.5]`},
		{"--file", []string{"--file", cfgFile}, `{"label":"42","limits":{"max":2.5,"min":1},"name":"pump","on":true}`},
		{"--file scalar", []string{"--file", file("n.yaml", "42\n")}, `42`},
		{"--file quoted", []string{"--file", file("q.yaml", "\"42\"\n")}, `"42"`},
		{"--file --string", []string{"--file", file("text.txt", "line 1\nline 2: x\n"), "--string"}, `"line 1\nline 2: x\n"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := "val." + strings.ReplaceAll(strings.ReplaceAll(tc.name, " ", "_"), "-", "")
			run(0, append([]string{"set", p}, tc.args...)...)
			if got := strings.TrimSpace(run(0, "get", p, "-o", "json")); got != tc.want {
				t.Errorf("set %s %q; get -o json = %s, want %s", p, tc.args, got, tc.want)
			}
		})
	}
	// A quoted "42" is a string in YAML output too.
	if got := run(0, "get", "val.quoted_string"); got != "\"42\"\n" {
		t.Errorf("get val.quoted_string (yaml) = %q, want \"42\" quoted", got)
	}

	// Usage errors: nothing is written, even on a path that holds a value.
	for _, args := range [][]string{
		{"set", "val.integer", "--file", filepath.Join(dir, "no-such-file.yaml")},
		{"set", "val.integer", "--file", dir}, // a directory
		{"set", "val.integer", "--file", file("bad.yaml", "a: [1, 2\n")},
		{"set", "val.integer", "--file", file("dup.yaml", "a: 1\na: 2\n")},
		{"set", "val.integer", "--file", cfgFile, "7"},
		{"set", "val.integer", "[1, 2"},
		{"set", "val.integer"},
	} {
		run(2, args...)
	}
	if got := strings.TrimSpace(run(0, "get", "val.integer")); got != "42" {
		t.Errorf("val.integer after the refused sets = %q, want 42", got)
	}
}

// TestE2EDump: a real MoaT-KV 0.70.22 save file loads into a node, the
// node saves it again, and the saved file loads into another node with
// the same tree. A corrupt or unreadable file is a usage error (exit 2)
// that names the record and applies nothing. The progress bar shows on a
// terminal only.
func TestE2EDump(t *testing.T) {
	bin := edgekvBinary(t)
	dir := t.TempDir()
	start := func(name string) string {
		ps := freePorts(t, 2)
		cfg := filepath.Join(dir, name+".yaml")
		yaml := fmt.Sprintf("node: %s\ndata: {dir: %q}\nlisten: {mqtt: [\"127.0.0.1:%d\"], client: \"127.0.0.1:%d\"}\n", name, filepath.Join(dir, name), ps[0], ps[1])
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		startNode(t, name, cfg, ps[0])
		return fmt.Sprintf("127.0.0.1:%d", ps[1])
	}
	run := func(srv string, want int, args ...string) string {
		t.Helper()
		out, errOut, code := runBinary(t, bin, append(args, "-s", srv)...)
		if code != want {
			t.Fatalf("edgekv %v: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, want, out, errOut)
		}
		return out + errOut
	}
	fixture := filepath.Join("..", "..", "testdata", "moatkv", "snapshot-full.dkv")
	one := start("one")
	if out := run(one, 0, "dump", "load", fixture); !strings.Contains(out, "29 records") || strings.Contains(out, "\r") {
		t.Fatalf("load (no progress bar: stderr is not a terminal): %q", out)
	}
	for path, want := range map[string]string{
		"fx.str":                   `"hello again from ref1"`,
		"fx.ints:123":              `"int element 123"`,
		"fx.bin:sAQI=":             `"bytes element 0102"`,
		"fx.floats:1:.5":           `"float element 1.5"`,
		"fx.str:_el.with:.dot.123": `"string elements with space/dot/digits"`,
		"fx.map":                   `{"a":1,"b":{"c":[1,2,"x"]},"d":null}`,
	} {
		if got := strings.TrimSpace(run(one, 0, "get", path, "-o", "json")); got != want {
			t.Errorf("get %s = %s, want %s", path, got, want)
		}
	}
	if got := run(one, 0, "get", "fx.str", "-m", "-o", "json"); !strings.Contains(got, `"chain":[{"node":"ref1","tick":31},{"node":"ref2","tick":3}]`) || !strings.Contains(got, `"tock":131`) {
		t.Errorf("fx.str keeps MoaT-KV's chain and tock: %s", got)
	}
	saved := filepath.Join(dir, "saved.dkv")
	run(one, 0, "dump", "save", saved)
	two := start("two")
	run(two, 0, "dump", "load", saved)
	if a, b := run(one, 0, "tree", "fx", "-m", "-o", "json"), run(two, 0, "tree", "fx", "-m", "-o", "json"); a != b {
		t.Fatalf("the saved and reloaded tree differs:\n%s\nvs\n%s", a, b)
	}
	// A change log, with deletions: fx.tmp was set twice and deleted.
	run(two, 0, "dump", "load", filepath.Join("..", "..", "testdata", "moatkv", "changes.dkv"))
	run(two, 1, "get", "fx.tmp")
	// A corrupt file: a usage error naming the first bad record; nothing
	// is applied, not even the records before it (the state record
	// would make ref1 a known node).
	data, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	three := start("three")
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"truncated", data[:len(data)/2]},
		{"garbage after the records", append(slices.Clone(data), 0xc1, 0xc1)},
		{"garbage", []byte("not a save file\n")},
	} {
		bad := filepath.Join(dir, "bad.dkv")
		if err := os.WriteFile(bad, tc.data, 0o644); err != nil {
			t.Fatal(err)
		}
		// The record number the message must name: one past the last
		// record that decodes.
		good := 0
		for r := wire.NewDKVReader(tc.data); ; good++ {
			if _, err := r.Next(); err != nil {
				break
			}
		}
		args := []string{"dump", "load", bad, "-s", three}
		out, errOut, code := runBinary(t, bin, args...)
		if code != 2 {
			t.Fatalf("%s: exit %d, want 2\nstdout: %s\nstderr: %s", tc.name, code, out, errOut)
		}
		wantOneLineError(t, args, out, errOut)
		if want := fmt.Sprintf("%s: record %d (byte ", bad, good+1); !strings.Contains(errOut, want) || !strings.Contains(errOut, "nothing was applied") {
			t.Errorf("%s: %q, want %q and \"nothing was applied\"", tc.name, errOut, want)
		}
		run(three, 1, "get", "fx.str")
		if st := run(three, 0, "status", "-o", "json"); strings.Contains(st, "ref1") {
			t.Errorf("%s: the records before the bad one were applied: %s", tc.name, st)
		}
	}
	// A file that cannot be read is a usage error too.
	for _, name := range []string{filepath.Join(dir, "no-such.dkv"), dir} {
		args := []string{"dump", "load", name, "-s", three}
		out, errOut, code := runBinary(t, bin, args...)
		if code != 2 {
			t.Fatalf("dump load %s: exit %d, want 2\nstdout: %s\nstderr: %s", name, code, out, errOut)
		}
		wantOneLineError(t, args, out, errOut)
	}

	// On a terminal the load draws a progress bar on stderr, then ends its
	// line before the summary.
	var stdout bytes.Buffer
	tty := &fakeTerminal{mode: os.ModeDevice | os.ModeCharDevice}
	if code := runCLI([]string{"dump", "load", fixture, "-s", three}, &stdout, tty); code != 0 {
		t.Fatalf("dump load on a terminal: exit %d: %s", code, tty.String())
	}
	if want := "\r[" + strings.Repeat("#", 40) + "] 29/29 records\nloaded "; !strings.HasPrefix(tty.String(), want) || stdout.Len() != 0 {
		t.Errorf("dump load on a terminal: stderr %q, stdout %q; want stderr to start with %q", tty.String(), stdout.String(), want)
	}
	if got := strings.TrimSpace(run(three, 0, "get", "fx.str", "-o", "json")); got != `"hello again from ref1"` {
		t.Errorf("fx.str after the load = %s", got)
	}
}
