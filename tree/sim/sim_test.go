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
		nw, err := NewWorld(seed, strings.Split(arg(d, "nodes", "a,b,c"), ","), topo, chain)
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
			r := w.Replica(n)
			if r == nil {
				continue
			}
			s := r.Stats()
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
// fewer). SIM_SEED runs just that one, with a trace; SIM_OPS sets the length.
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
	failed := 0
	var sum Result
	topos := map[Topology]int{}
	deleter := 0
	for seed := uint64(1); seed <= uint64(n); seed++ {
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
		sum.Writes += res.Writes
		sum.Crashes += res.Crashes
		sum.Partitions += res.Partitions
		sum.Snapshots += res.Snapshots
		sum.Conflicts += res.Conflicts
		sum.Lost += res.Lost
		sum.Purged += res.Purged
		sum.Duplicates += res.Duplicates
	}
	t.Logf("%d random seeds, %d ops each: %d failed; topologies %v, %d with a deleter group; "+
		"writes %d, crashes %d, partitions %d, snapshots %d, conflicts %d, lost %d, purged %d, duplicates %d",
		n, ops, failed, topos, deleter, sum.Writes, sum.Crashes, sum.Partitions, sum.Snapshots, sum.Conflicts, sum.Lost, sum.Purged, sum.Duplicates)
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
		for name, v := range map[string]int{"crashes": sum.Crashes, "partitions": sum.Partitions, "snapshots": sum.Snapshots,
			"conditional-write conflicts": sum.Conflicts, "lost (concurrent) updates": sum.Lost, "purged tombstones": sum.Purged, "duplicates": sum.Duplicates} {
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
