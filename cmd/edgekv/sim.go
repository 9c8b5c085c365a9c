package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

// errSimNotBuilt is returned by the placeholder "sim" command.
var errSimNotBuilt = errors.New("sim: the simulator command is not built yet")

// newSimCmd builds "edgekv sim", which will run the deterministic
// multi-node simulator from the command line. This file is a placeholder
// meant to be replaced whole.
func newSimCmd() *cobra.Command {
	var (
		seed  int64
		ops   int
		nodes int
	)
	cmd := &cobra.Command{
		Use:   "sim [--seed N] [--ops N] [--nodes N]",
		Short: "Run the deterministic multi-node simulator (not built yet)",
		Long: `Run the deterministic multi-node simulator: NODES replicas driven by one
RNG seeded with SEED through OPS random operations (puts, deletes,
partitions, heals, crashes, restarts), then check that all replicas
converge. The same seed replays the same run.

Not built yet: for now this command reports an error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return fmt.Errorf("%w (asked for --seed %d --ops %d --nodes %d)", errSimNotBuilt, seed, ops, nodes)
		},
	}
	f := cmd.Flags()
	f.Int64Var(&seed, "seed", 1, "RNG seed; the same seed replays the same run")
	f.IntVar(&ops, "ops", 500, "number of random operations")
	f.IntVar(&nodes, "nodes", 3, "number of simulated nodes")
	return cmd
}
