package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/edgekv/edgekv/tree/sim"
)

// newSimCmd builds "edgekv sim": one seeded run of the deterministic
// multi-node simulator, the same run `make test` does for that seed.
func newSimCmd() *cobra.Command {
	var (
		seed  uint64
		ops   int
		nodes int
		topo  string
		quiet bool
		seeds int
	)
	cmd := &cobra.Command{
		Use:   "sim [--seed N] [--ops N] [--nodes N] [--topology T]",
		Short: "Run the deterministic multi-node simulator for one seed",
		Long: `Run the deterministic multi-node simulator: 3–7 replicas (or --nodes) on a
random topology (or --topology mesh|line|star|hub), driven by one RNG seeded
with --seed through --ops random operations — sets, deletes and conditional
writes on random nodes, message loss, duplication, reordering and delay,
partitions and heals, crashes and restarts from an in-memory store — then
heal everything and check that all replicas hold identical trees and node
states, that each key holds the winner of its acknowledged writes, and that
every node's ticks are contiguous.

The same seed replays the same run step by step; a failing seed printed by
'make test' is replayed with 'make sim SEED=N'. With --seeds N it runs seeds
SEED…SEED+N-1 and prints one line each.`,
		Example: `  edgekv sim --seed 42
  edgekv sim --seed 7 --ops 2000 --nodes 5 --topology line
  edgekv sim --seed 1 --seeds 100 --quiet`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o := sim.Options{Ops: ops, Nodes: nodes}
			if topo != "" {
				t, err := sim.ParseTopology(topo)
				if err != nil {
					return err
				}
				o.Topology = &t
			}
			if nodes != 0 && (nodes < 2 || nodes > 26) {
				return fmt.Errorf("--nodes %d: want 2 to 26", nodes)
			}
			out := cmd.OutOrStdout()
			if !quiet && seeds <= 1 {
				o.Verbose = out
			}
			for i := range max(seeds, 1) {
				o.Seed = seed + uint64(i)
				res, err := sim.Run(o)
				if err != nil {
					return err
				}
				fmt.Fprintln(out, "ok:", res)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&seed, "seed", 1, "RNG seed; the same seed replays the same run")
	f.IntVar(&ops, "ops", 500, "number of random operations before healing")
	f.IntVar(&nodes, "nodes", 0, "number of nodes, 2–26 (0: 3–7, drawn from the seed)")
	f.StringVar(&topo, "topology", "", "mesh, line, star or hub (default: drawn from the seed)")
	f.BoolVarP(&quiet, "quiet", "q", false, "print only the summary, not every step")
	f.IntVar(&seeds, "seeds", 1, "run this many consecutive seeds")
	return cmd
}
