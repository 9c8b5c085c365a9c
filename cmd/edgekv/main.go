package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
)

// version is the release version, set at link time with
// -ldflags '-X main.version=...'.
var version = "dev"

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError marks an error caused by how the command was invoked (unknown
// flag, missing argument); main maps it to exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the CLI with args and returns the process exit status.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	// Every failure is one line on stderr (issue 4: "a one-line message"),
	// so that scripts can log it as it is.
	msg := oneLine(err.Error())
	// Errors from a command's own work are wrapped as runError by
	// markRunErrors;
	// anything else came from cobra's parsing (unknown command or flag,
	// malformed value, missing required flag, wrong argument count) or is
	// an explicit usageError.
	var se serverError
	var re runError
	code := exitUsage
	switch {
	case errors.As(err, &se):
		code = exitServer
	case errors.As(err, &re):
		code = exitError
	case cmd != nil:
		msg += fmt.Sprintf(" (see '%s --help')", cmd.CommandPath())
	}
	fmt.Fprintf(stderr, "edgekv: %s\n", msg)
	return code
}

// oneLine folds a message that spans lines (YAML's "unmarshal errors:"
// list, a server's multi-line text) into one line.
func oneLine(s string) string {
	var parts []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " ")
}

// runError marks an error returned by a command's own work (exit status 1).
type runError struct{ err error }

func (e runError) Error() string { return e.err.Error() }
func (e runError) Unwrap() error { return e.err }

// markRunErrors wraps the RunE of cmd and all its subcommands so that the
// errors they return are told apart from cobra's parsing errors: a plain
// error from RunE exits with status 1, a usageError with status 2. Command
// constructors therefore return plain errors and need no wrapper.
func markRunErrors(cmd *cobra.Command) {
	if f := cmd.RunE; f != nil {
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			err := f(cmd, args)
			var ue usageError
			if err == nil || errors.As(err, &ue) {
				return err
			}
			return runError{err}
		}
	}
	for _, sub := range cmd.Commands() {
		markRunErrors(sub)
	}
}

// newRootCmd builds the edgekv command tree.
func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "edgekv",
		Short: "A master-less, partition-tolerant key-value tree for small Linux boards",
		Long: `edgekv turns small Linux boards (Raspberry Pi, BeagleBone, any ARM or x86
box) into nodes of a master-less, partition-tolerant key-value tree.

Every node holds the whole tree. A write on any node is accepted at once,
even when the node is cut off from all others, and reaches every other node
when links allow; all nodes converge to the same state whatever order the
updates arrive in. It re-implements and extends MoaT-KV (formerly distkv).

Each node runs an embedded MQTT broker that local devices and tools talk
to (every entry is a retained message under kv/), peer links to other
nodes, and MoaT-KV's client protocol, which get, set, delete, list, tree
and watch use. Hardware and jobs are still to come.

  edgekv run -n demo                  start a node (embedded default config)
  edgekv set room.temp 21.5           write through the client protocol
  edgekv get room.temp                read it back`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Without subcommand, print help.
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
			}
			return cmd.Help()
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{err}
	})
	root.AddCommand(newVersionCmd(), newRunCmd(), newSimCmd())
	root.AddCommand(newConfigCmd(), newHwCmd())
	root.AddCommand(newGetCmd(), newSetCmd(), newDeleteCmd(),
		newWalkCmd("list", "List the children of PATH (those without a value marked)", true),
		newWalkCmd("tree", "Print every entry at and below PATH", false),
		newWatchCmd(), newStatusCmd(), newDumpCmd())
	root.AddCommand(newMsgCmd())
	root.AddCommand(newCodeCmd(), newJobCmd(), newErrorCmd())
	markRunErrors(root)
	return root
}

// newVersionCmd builds "edgekv version".
func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the edgekv version, Go version and platform",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "edgekv %s %s %s/%s\n",
				version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
