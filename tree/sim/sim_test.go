package sim

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/store"
	"github.com/edgekv/edgekv/tree/wire"
)

// TestScenarios runs the scripted scenarios in testdata/*.txt.
func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var w *World
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd != "world" && w == nil {
				d.Fatalf(t, "no world yet: start with `world`")
			}
			out, err := runCmd(t, &w, d)
			if err != nil {
				return "error: " + err.Error() + "\n"
			}
			return out
		})
	})
}

func arg(d *datadriven.TestData, key, def string) string {
	for _, a := range d.CmdArgs {
		if a.Key == key {
			return strings.Join(a.Vals, ",")
		}
	}
	return def
}

func runCmd(t *testing.T, wp **World, d *datadriven.TestData) (string, error) {
	w := *wp
	node := arg(d, "node", "")
	parsePath := func() (tree.Path, error) { return tree.ParsePath(arg(d, "path", "")) }
	switch d.Cmd {
	case "world":
		topo, err := ParseTopology(arg(d, "topology", "mesh"))
		if err != nil {
			return "", err
		}
		seed, _ := strconv.ParseUint(arg(d, "seed", "1"), 10, 64)
		chain, _ := strconv.Atoi(arg(d, "chain", "5"))
		cfg := Config{Seed: seed, Names: strings.Split(arg(d, "nodes", "a,b,c"), ","), Topology: topo, ChainLen: chain,
			Policies: map[string]store.SyncPolicy{}, NoReserve: arg(d, "noreserve", "") == "true"}
		// sync=always,interval,none: one policy per node (default always)
		if ps := arg(d, "sync", ""); ps != "" {
			for i, name := range strings.Split(ps, ",") {
				p, err := store.ParseSyncPolicy(name)
				if err != nil {
					return "", err
				}
				cfg.Policies[cfg.Names[i]] = p
			}
		}
		if r := arg(d, "reserve", ""); r != "" { // reserve=TICKS,TOCKS
			tk, tc, _ := strings.Cut(r, ",")
			cfg.TickReserve, _ = strconv.ParseUint(tk, 10, 64)
			cfg.TockReserve, _ = strconv.ParseUint(tc, 10, 64)
		}
		nw, err := NewWorldConfig(cfg)
		if err != nil {
			return "", err
		}
		*wp = nw
		return "ok\n", nil
	case "set", "delete":
		p, err := parsePath()
		if err != nil {
			return "", err
		}
		var c tree.Cond
		if h := arg(d, "head", ""); h != "" {
			name, tick, _ := strings.Cut(h, ":")
			n, _ := strconv.ParseUint(tick, 10, 64)
			c.Head = &tree.Link{Node: name, Tick: n}
		}
		c.MustNotExist = arg(d, "new", "") == "true"
		var ev tree.Event
		if d.Cmd == "set" {
			ev, err = w.Set(node, p, msgp.AppendString(nil, arg(d, "value", "")), c)
		} else {
			ev, err = w.Delete(node, p, c)
		}
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s tock %d\n", ev.Chain, ev.Tock), nil
	case "deliver":
		n := 0
		for w.InFlight() > 0 && n < 100000 {
			w.DeliverOne()
			n++
		}
		return fmt.Sprintf("delivered, %d in flight\n", w.InFlight()), nil
	case "drop":
		return fmt.Sprintf("dropped %d\n", w.DropAll()), nil
	case "partition":
		return "ok\n", w.Partition(strings.Split(arg(d, "side", ""), ","))
	case "heal":
		w.Heal()
		return "ok\n", nil
	case "crash":
		return "ok\n", w.Crash(node)
	case "restart":
		return "ok\n", w.Restart(node)
	case "snapshot":
		return "ok\n", w.Snapshot(node)
	case "flush": // the group commit of every node under sync interval
		w.FlushStores()
		return "ok\n", nil
	case "tick":
		n, _ := strconv.Atoi(arg(d, "n", "1"))
		for range n {
			w.Tick()
		}
		return "ok\n", nil
	case "stabilize":
		if _, err := w.Stabilize(3000); err != nil {
			return "", err
		}
		return "settled\n", nil
	case "check":
		errs := w.Check()
		if len(errs) == 0 {
			return "ok\n", nil
		}
		return "", errors.Join(errs...)
	case "get":
		r := w.Replica(node)
		if r == nil {
			return "", fmt.Errorf("%s is down", node)
		}
		p, err := parsePath()
		if err != nil {
			return "", err
		}
		e := r.Tree().Get(p)
		if e == nil || len(e.Chain()) == 0 {
			return "absent\n", nil
		}
		v, _ := e.Value()
		return fmt.Sprintf("%s [%s] tock %d\n", showValue(v), e.Chain(), e.Tock()), nil
	case "dump":
		r := w.Replica(node)
		if r == nil {
			return "", fmt.Errorf("%s is down", node)
		}
		return DumpState(r.Tree()), nil
	case "stats":
		var b strings.Builder
		for _, n := range w.Names() {
			s := w.Stats(n)
			fmt.Fprintf(&b, "%s: sent %d updates, relayed %d, applied %d, lost %d, duplicates %d\n",
				n, s.Sent[wire.KindUpdate], s.Relayed, s.Applied, s.Lost, s.Duplicate)
		}
		return b.String(), nil
	}
	d.Fatalf(t, "unknown command %q", d.Cmd)
	return "", nil
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestRandom runs SIM_SEEDS random seeds (default 2000; `make race` uses
// fewer) from SIM_FROM (default 1). SIM_SEED runs just that one, with a
// trace; SIM_OPS sets the length.
func TestRandom(t *testing.T) {
	ops := envInt("SIM_OPS", 150)
	if s := os.Getenv("SIM_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SIM_SEED=%q: %v", s, err)
		}
		res, err := Run(Options{Seed: seed, Ops: ops, Verbose: testWriter{t}})
		if err != nil {
			t.Fatal(err)
		}
		t.Log(res)
		return
	}
	n := envInt("SIM_SEEDS", 2000)
	if testing.Short() {
		n = min(n, 200)
	}
	first := uint64(envInt("SIM_FROM", 1)) // the first seed (to split a soak)
	failed := 0
	var sum Result
	topos := map[Topology]int{}
	policies := map[store.SyncPolicy]int{}
	deleter, bothDial := 0, 0
	for seed := first; seed < first+uint64(n); seed++ {
		res, err := Run(Options{Seed: seed, Ops: ops})
		if err != nil {
			t.Error(err)
			if failed++; failed >= 3 {
				t.Fatalf("stopping after %d failed seeds", failed)
			}
			continue
		}
		topos[res.Topology]++
		if res.Deleter {
			deleter++
		}
		if res.BothDial {
			bothDial++
		}
		for _, p := range res.Policies {
			policies[p]++
		}
		sum.IsolatedRestarts += res.IsolatedRestarts
		sum.SnapshotCrashes += res.SnapshotCrashes
		sum.DiskFaults += res.DiskFaults
		sum.Writes += res.Writes
		sum.Crashes += res.Crashes
		sum.Partitions += res.Partitions
		sum.Snapshots += res.Snapshots
		sum.Conflicts += res.Conflicts
		sum.Lost += res.Lost
		sum.Purged += res.Purged
		sum.Duplicates += res.Duplicates
	}
	t.Logf("%d random seeds, %d ops each: %d failed; topologies %v, nodes by sync policy %v, %d with a deleter group, "+
		"%d with both ends dialling; writes %d, crashes %d (%d during a snapshot), restarts cut off then written to %d, "+
		"disk faults %d, partitions %d, snapshots %d, conflicts %d, lost %d, purged %d, duplicates %d",
		n, ops, failed, topos, policies, deleter, bothDial, sum.Writes, sum.Crashes, sum.SnapshotCrashes, sum.IsolatedRestarts,
		sum.DiskFaults, sum.Partitions, sum.Snapshots, sum.Conflicts, sum.Lost, sum.Purged, sum.Duplicates)
	// The runs must actually exercise what they claim to check.
	if n >= 100 {
		for topo := Mesh; topo <= Hub; topo++ {
			if topos[topo] == 0 {
				t.Errorf("no run used topology %s", topo)
			}
		}
		if deleter == 0 || deleter == n {
			t.Errorf("%d of %d runs had a deleter group: want both kinds", deleter, n)
		}
		if bothDial == 0 {
			t.Error("no run had peers dialling each other")
		}
		for _, p := range []store.SyncPolicy{store.SyncAlways, store.SyncInterval, store.SyncNone} {
			if policies[p] == 0 {
				t.Errorf("no node ran under sync %s", p)
			}
		}
		for name, v := range map[string]int{"crashes": sum.Crashes, "partitions": sum.Partitions, "snapshots": sum.Snapshots,
			"conditional-write conflicts": sum.Conflicts, "lost (concurrent) updates": sum.Lost, "purged tombstones": sum.Purged, "duplicates": sum.Duplicates,
			"crashes during a snapshot": sum.SnapshotCrashes, "restarts cut off then written to": sum.IsolatedRestarts, "disk faults": sum.DiskFaults} {
			if v == 0 {
				t.Errorf("random runs produced no %s", name)
			}
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestDeterministic: a seed replays exactly (the same trace, step by step).
func TestDeterministic(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		a, errA := Run(Options{Seed: seed, Ops: 150})
		b, errB := Run(Options{Seed: seed, Ops: 150})
		if a.TraceSum != b.TraceSum || (errA == nil) != (errB == nil) || a.String() != b.String() {
			t.Errorf("seed %d ran differently twice: %v (%x, %v) vs %v (%x, %v)", seed, a, a.TraceSum, errA, b, b.TraceSum, errB)
		}
	}
}

// TestReservationMatters shows what the tick and tock reservation
// prevents: with it turned off, runs under sync interval and none fail
// (ticks reused after a crash, replicas that never agree); with it, the
// same seeds pass. Under sync always nothing is sent before it is on disk,
// so nothing fails either way.
func TestReservationMatters(t *testing.T) {
	const seeds = 100
	for _, p := range []store.SyncPolicy{store.SyncInterval, store.SyncNone, store.SyncAlways} {
		without, with := 0, 0
		var example error
		for seed := uint64(1); seed <= seeds; seed++ {
			if _, err := Run(Options{Seed: seed, Ops: 150, Policy: &p, NoReserve: true}); err != nil {
				without++
				if example == nil {
					example = err
				}
			}
			if _, err := Run(Options{Seed: seed, Ops: 150, Policy: &p}); err != nil {
				with++
				t.Errorf("sync %s, with the reservation: %v", p, err)
			}
		}
		t.Logf("sync %s: %d of the first %d seeds fail without the reservation, %d with it", p, without, seeds, with)
		if p != store.SyncAlways && without == 0 {
			t.Errorf("sync %s: no seed failed without the reservation: the test shows nothing", p)
		}
		var f *Failure
		if errors.As(example, &f) && len(f.Errs) > 0 {
			first, _, _ := strings.Cut(f.Errs[0].Error(), "\n")
			t.Logf("sync %s, seed %d without it: %s", p, f.Result.Seed, first)
		}
	}
}
