package sim

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/replica"
	"github.com/edgekv/edgekv/tree/store"
)

// Options shape a random run. Zero fields are drawn from the seed.
type Options struct {
	Seed     uint64
	Ops      int       // random operations before stabilising (default 200)
	Nodes    int       // 3–7; 0 = random
	Topology *Topology // nil = random
	// Policy is every node's sync policy; nil draws one per node.
	Policy *store.SyncPolicy
	// NoReserve turns the tick and tock reservation off (replica.Config):
	// to show what it prevents.
	NoReserve bool
	Verbose   io.Writer // trace every step here
}

// Result summarises a random run.
type Result struct {
	Seed      uint64
	Ops       int
	Nodes     int
	Topology  Topology
	Writes    int
	Deleter   bool
	Rounds    int
	Delivered int
	// What the run exercised (for coverage checks).
	Crashes, Partitions, Snapshots, Conflicts     int
	Lost, Purged, Duplicates                      int
	IsolatedRestarts, SnapshotCrashes, DiskFaults int
	// Policies are the nodes' sync policies; BothDial: every pair of
	// peers dialled each other.
	Policies []store.SyncPolicy
	BothDial bool
	// TraceSum sums every step's trace line: the same seed gives the same
	// sum.
	TraceSum uint64
}

func (r Result) String() string {
	return fmt.Sprintf("seed %d: %d nodes, %s, sync %v, %d writes, deleter %v, settled in %d rounds, %d messages delivered",
		r.Seed, r.Nodes, r.Topology, r.Policies, r.Writes, r.Deleter, r.Rounds, r.Delivered)
}

// Failure is a failed random run: it names the seed to replay.
type Failure struct {
	Result Result
	Errs   []error
	Trace  []string
}

func (f *Failure) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sim: seed %d failed (replay: make sim SEED=%d OPS=%d): %s\n", f.Result.Seed, f.Result.Seed, f.Result.Ops, f.Result)
	for i, e := range f.Errs {
		if i == 10 {
			fmt.Fprintf(&b, "  … and %d more\n", len(f.Errs)-10)
			break
		}
		fmt.Fprintf(&b, "  - %v\n", e)
	}
	if n := len(f.Trace); n > 0 {
		b.WriteString("  last steps:\n")
		for _, l := range f.Trace[max(0, n-40):] {
			fmt.Fprintf(&b, "    %s\n", l)
		}
	}
	return b.String()
}

// Run performs one seeded random run and checks the result.
func Run(o Options) (Result, error) {
	if o.Ops <= 0 {
		o.Ops = 200
	}
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x51ed2701f3a5c7b9))
	nn := o.Nodes
	if nn == 0 {
		nn = 3 + rng.IntN(5)
	}
	if nn < 2 || nn > 26 {
		return Result{}, fmt.Errorf("sim: %d nodes (want 2–26)", nn)
	}
	topo := Topology(rng.IntN(4))
	if o.Topology != nil {
		topo = *o.Topology
	}
	names := make([]string, nn)
	for i := range names {
		names[i] = string(rune('a' + i))
	}
	cfg := Config{
		Seed: o.Seed, Names: names, Topology: topo,
		ChainLen:    2 + rng.IntN(4),
		Policies:    make(map[string]store.SyncPolicy),
		TickReserve: 1 + rng.Uint64N(12),
		TockReserve: 1 + rng.Uint64N(30),
		NoReserve:   o.NoReserve,
		BothDial:    topo != Hub && rng.IntN(4) == 0,
	}
	policies := make([]string, nn)
	durableOnly := rng.IntN(3) == 0 // a third of the runs keep all data on disk (deleter groups need that)
	for i, n := range names {
		p := store.SyncPolicy(rng.IntN(3))
		if durableOnly {
			p = store.SyncPolicy(rng.IntN(2)) // interval or always
		}
		if o.Policy != nil {
			p = *o.Policy
		}
		cfg.Policies[n] = p
		policies[i] = p.String()
	}
	w, err := NewWorldConfig(cfg)
	if err != nil {
		return Result{}, err
	}
	w.rng = rng
	w.Verbose = o.Verbose
	w.DropRate = []float64{0, 0.02, 0.1, 0.3}[rng.IntN(4)]
	w.DupRate = []float64{0, 0.05, 0.2}[rng.IntN(3)]
	w.MaxDelay = uint64(rng.IntN(20))
	res := Result{Seed: o.Seed, Ops: o.Ops, Nodes: nn, Topology: topo, BothDial: cfg.BothDial}
	for _, n := range names {
		res.Policies = append(res.Policies, cfg.Policies[n])
	}
	w.tracef("start: %d nodes %s chain %d drop %.2f dup %.2f delay %d policies %v reserve %d/%d both-dial %v",
		nn, topo, cfg.ChainLen, w.DropRate, w.DupRate, w.MaxDelay, policies, cfg.TickReserve, cfg.TockReserve, cfg.BothDial)

	// A deleter group makes tombstones go; every member must keep its data
	// on disk (what a node under sync "none" has seen, a crash forgets),
	// and a node outside the group could keep a value whose deletion the
	// group purged while it was away. So: all nodes, only if none is
	// under "none" (README, Durability).
	persistent := !slices.Contains(policies, store.SyncNone.String())
	if rng.IntN(2) == 0 && persistent {
		res.Deleter = true
		v := msgp.AppendMapHeader(nil, 1)
		v = msgp.AppendString(v, "nodes")
		v = msgp.AppendArrayHeader(v, uint32(nn))
		for _, n := range names {
			v = msgp.AppendString(v, n)
		}
		if _, err := w.Set(names[0], replica.DeleterPath, v, tree.Cond{}); err != nil {
			return res, err
		}
	}
	keys := 3 + rng.IntN(12)
	path := func() tree.Path {
		k := rng.IntN(keys)
		switch k % 3 {
		case 0:
			return tree.Path{tree.Str("k"), tree.Int(int64(k))}
		case 1:
			return tree.Path{tree.Str("k"), tree.Int(int64(k)), tree.Str("sub")}
		}
		return tree.Path{tree.Str(fmt.Sprintf("s%d", k))}
	}
	up := func() string {
		for range 20 {
			n := names[rng.IntN(nn)]
			if w.Replica(n) != nil {
				return n
			}
		}
		return ""
	}
	// A write may fail because its node's disk failed under it (the node
	// is then down, the write not acknowledged): not a failure of the run.
	down := func(err error) bool { return errors.Is(err, errDown) }
	diskOps := []string{"sync", "write", "rename", "syncdir", "create"}
	for op := 0; op < o.Ops; op++ {
		x := rng.IntN(100)
		switch {
		case x < 30: // set
			if n := up(); n != "" {
				v := msgp.AppendString(nil, fmt.Sprintf("%s@%d", n, op))
				if _, err := w.Set(n, path(), v, tree.Cond{}); err != nil && !down(err) {
					return res, err
				}
				res.Writes++
			}
		case x < 38: // delete
			if n := up(); n != "" {
				_, err := w.Delete(n, path(), tree.Cond{})
				if err != nil && !errors.Is(err, tree.ErrNotFound) && !down(err) {
					return res, err
				}
				res.Writes++
			}
		case x < 43: // conditional write
			if n := up(); n != "" {
				p := path()
				c := tree.Cond{MustNotExist: true}
				if e := w.Replica(n).Tree().Get(p); e != nil && len(e.Chain()) > 0 && rng.IntN(2) == 0 {
					h := e.Chain()[0]
					c = tree.Cond{Head: &h}
				}
				v := msgp.AppendInt(nil, op)
				_, err := w.Set(n, p, v, c)
				if errors.Is(err, tree.ErrConflict) {
					res.Conflicts++
				} else if err != nil && !down(err) {
					return res, err
				}
				res.Writes++
			}
		case x < 72:
			for range 1 + rng.IntN(5) {
				w.DeliverOne()
			}
		case x < 82:
			w.Tick()
			if rng.IntN(3) == 0 {
				w.FlushStores() // the group commit of sync "interval"
			}
		case x < 85:
			k := 1 + rng.IntN(nn-1)
			perm := rng.Perm(nn)[:k]
			side := make([]string, k)
			for i, p := range perm {
				side[i] = names[p]
			}
			w.Partition(side)
			res.Partitions++
		case x < 88:
			w.Heal()
		case x < 90:
			if n := up(); n != "" {
				w.Crash(n)
				res.Crashes++
				if rng.IntN(2) == 0 {
					// Restart it at once, cut off from everyone, and
					// write on it straight away.
					w.Partition([]string{n})
					w.Restart(n)
					res.IsolatedRestarts++
					for range 1 + rng.IntN(3) {
						v := msgp.AppendString(nil, fmt.Sprintf("%s@%d-restarted", n, op))
						if _, err := w.Set(n, path(), v, tree.Cond{}); err != nil && !down(err) && w.Replica(n) != nil {
							return res, err
						}
						res.Writes++
					}
				}
			}
		case x < 93:
			for _, n := range names {
				if w.Replica(n) == nil {
					w.Restart(n)
					break
				}
			}
		case x < 95:
			if n := up(); n != "" {
				if rng.IntN(3) == 0 {
					// A crash while the snapshot is being written.
					w.FailDisk(n, diskOps[rng.IntN(len(diskOps))], rng.IntN(4))
					w.Snapshot(n)
					w.Crash(n)
					res.Crashes++
					res.SnapshotCrashes++
				} else {
					w.Snapshot(n)
				}
				res.Snapshots++
			}
		case x < 96:
			if n := up(); n != "" {
				w.FailDisk(n, diskOps[rng.IntN(len(diskOps))], rng.IntN(6))
				res.DiskFaults++
			}
		case x < 97:
			w.WriteStatus()
		default:
			w.DropAll()
		}
	}
	rounds, err := w.Stabilize(3000)
	res.Rounds, res.Delivered = rounds, w.Delivered
	for _, n := range names {
		s := w.Stats(n)
		res.Lost += s.Lost
		res.Purged += s.Purged
		res.Duplicates += s.Duplicate
	}
	res.TraceSum = w.TraceSum()
	errs := w.Check()
	if err != nil {
		errs = append([]error{err}, errs...)
	}
	if len(errs) > 0 {
		return res, &Failure{Result: res, Errs: errs, Trace: w.Trace()}
	}
	return res, nil
}
