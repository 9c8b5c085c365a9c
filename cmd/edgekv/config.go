package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/spf13/cobra"

	"github.com/edgekv/edgekv"
	"github.com/edgekv/edgekv/boards"
)

// newConfigCmd builds "edgekv config" and its subcommands check, show and
// default.
func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check, show and print YAML board configs",
		Long: `Work with the YAML board configs that 'edgekv run -c FILE' reads.

A board config names the node and its board, where it keeps its data and how
often that reaches the disk, the addresses it listens on, the MQTT topic
prefixes of the tree and of the sync messages, the peers and hubs it dials
and the credentials of the peers that dial it. Without -c, 'edgekv run' uses
an embedded default (the sim board, MQTT on 127.0.0.1:1883, data in
./data/NAME, no peers); configs/ holds examples.

Unknown keys are errors, and every problem is reported at once with its
file, line and YAML path:

  configs/x.yaml:7: peers[1].addr: "localhost" is not host:port: missing port in address`,
		Example: `  edgekv config check configs/mesh/*.yaml
  edgekv config show -c configs/mesh/board1.yaml
  edgekv config default > board.yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(newConfigCheckCmd(), newConfigShowCmd(), newConfigDefaultCmd())
	return cmd
}

// newConfigCheckCmd builds "edgekv config check".
func newConfigCheckCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "check [-n NAME] FILE...",
		Short: "Check board config files and report every problem",
		Long: `Load and validate each board config FILE as 'edgekv run -c FILE' would.

For a good file it prints

  FILE: ok (node board1, board sim, 2 peers)

and for a bad one every problem, one per line, as FILE:LINE: PATH: MESSAGE.
A file without a node: line is checked as a template whose node name comes
from -n; with -n NAME every file is checked as 'edgekv run -n NAME -c FILE'
would load it.

Exit status 0 when every file is good, 1 when any has a problem.`,
		Example: `  edgekv config check configs/demo.yaml
  edgekv config check configs/mesh/*.yaml configs/line/*.yaml
  edgekv config check -n board7 my-board.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			bad := 0
			for _, file := range args {
				ok, err := checkConfigFile(out, file, name)
				if err != nil {
					return err
				}
				if !ok {
					bad++
				}
			}
			if bad > 0 {
				return fmt.Errorf("%d of %d config files have problems", bad, len(args))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "check as run by node NAME")
	return cmd
}

// checkConfigFile loads and validates one file, prints its verdict to out
// and reports whether it is good. The error is for failing to write.
func checkConfigFile(out io.Writer, file, name string) (ok bool, err error) {
	c, err := loadConfig(file, name)
	var lines []string
	var ce *boards.ConfigError
	var pe *fs.PathError
	switch {
	case err == nil:
		lines = []string{fmt.Sprintf("%s: ok (%s)", file, configSummary(c))}
	case errors.As(err, &ce):
		lines = ce.Lines()
	case errors.As(err, &pe):
		lines = []string{fmt.Sprintf("%s: %v", file, pe.Err)}
	default:
		lines = []string{fmt.Sprintf("%s: %v", file, err)}
	}
	for _, l := range lines {
		if _, werr := fmt.Fprintln(out, l); werr != nil {
			return false, werr
		}
	}
	return err == nil, nil
}

// loadConfig loads file (the embedded default for "") and, when name is
// given, applies it as -n and validates the result.
func loadConfig(file, name string) (*boards.Config, error) {
	var c *boards.Config
	if file == "" {
		c = boards.Default()
	} else {
		var err error
		if c, err = boards.Load(file); err != nil {
			return nil, err
		}
	}
	if name == "" {
		if err := c.ValidatePaths(edgekv.CheckTreePath); err != nil {
			return nil, err
		}
		return c, nil
	}
	if err := c.SetNode(name); err != nil {
		return nil, err
	}
	if err := c.ValidateWith(edgekv.CheckTreePath); err != nil {
		return nil, err
	}
	return c, nil
}

// configSummary describes a good config in a few words: "node board1,
// board sim, 2 peers".
func configSummary(c *boards.Config) string {
	node := "node " + c.Node
	if c.Node == "" {
		node = "node from -n"
	}
	s := fmt.Sprintf("%s, board %s, %s", node, c.Board, plural(len(c.Peers), "peer"))
	if len(c.Hubs) > 0 {
		s += ", " + plural(len(c.Hubs), "hub")
	}
	return s
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// newConfigShowCmd builds "edgekv config show".
func newConfigShowCmd() *cobra.Command {
	var file, name string
	cmd := &cobra.Command{
		Use:   "show [-c FILE] [-n NAME]",
		Short: "Print the effective board config, defaults filled in",
		Long: `Print the board config that 'edgekv run' would use with the same -c and -n,
as YAML with every setting written out: the defaults of what FILE leaves out
filled in, the node name from -n when FILE has none, and the data directory
./data/NAME unless FILE sets one. Without -c it shows the embedded default.

The output is itself a valid board config. A config with problems prints
them instead, to standard error, and exits 1; a config without a node name
and no -n exits 2.`,
		Example: `  edgekv config show -n demo
  edgekv config show -c configs/mesh/board1.yaml
  edgekv config show -c configs/demo.yaml -n board7 > board7.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadConfig(file, name)
			if err != nil {
				return configProblems(cmd.ErrOrStderr(), err)
			}
			if c.Node == "" {
				return usageError{errors.New("no node name: give -n NAME (the config has no node: line)")}
			}
			if err := c.ValidateWith(edgekv.CheckTreePath); err != nil {
				return configProblems(cmd.ErrOrStderr(), err)
			}
			text, err := c.Marshal()
			if err != nil {
				return err
			}
			from := "the embedded default"
			if file != "" {
				from = file
			}
			out := cmd.OutOrStdout()
			if _, err := fmt.Fprintf(out, "# edgekv board config of node %s, from %s with the defaults filled in\n", c.Node, from); err != nil {
				return err
			}
			_, err = out.Write(text)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "config", "c", "", "YAML board config file (default: the embedded default)")
	f.StringVarP(&name, "name", "n", "", "node name, as given to 'edgekv run -n'")
	return cmd
}

// configProblems prints the problems of a *boards.ConfigError one per line
// to w and returns a one-line error saying how many; other errors pass
// through.
func configProblems(w io.Writer, err error) error {
	var ce *boards.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	lines := ce.Lines()
	if _, werr := io.WriteString(w, strings.Join(lines, "\n")+"\n"); werr != nil {
		return werr
	}
	source := ce.Source
	if source == "" {
		source = "config"
	}
	return fmt.Errorf("%s: %s", source, plural(len(lines), "problem"))
}

// newConfigDefaultCmd builds "edgekv config default".
func newConfigDefaultCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "default",
		Short: "Print the embedded default board config",
		Long: `Print the board config built into the binary, which 'edgekv run -n NAME'
uses when it is given no -c: one node on the simulated sim board, MQTT on
127.0.0.1:1883, the client protocol on 127.0.0.1:27586, data in ./data/NAME,
no peers. It is the same text as configs/demo.yaml, and a good start for a
board's own config.`,
		Example: `  edgekv config default > board1.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := cmd.OutOrStdout().Write(boards.DefaultYAML())
			return err
		},
	}
}
