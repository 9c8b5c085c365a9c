package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/edgekv/edgekv/broker/kvclient"
	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

func newDumpCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dump",
		Short: "Save a node's tree to a MoaT-KV save file, load one into a node, or log changes",
		Long: `Save a node's tree to a MoaT-KV save file (.dkv), or load one into a node —
so that a MoaT-KV tree can be moved into edgekv and back. A save file is a
state record (node ticks, superseded ticks) followed by one record per
entry, as MoaT-KV's "save" writes it; "load" also reads MoaT-KV change
logs (event records, deletions included).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usageError{errors.New("say save, load or log (see --help)")}
		},
	}
	cmd.AddCommand(newDumpSaveCmd(), newDumpLoadCmd(), newDumpLogCmd())
	return cmd
}

func newDumpLogCmd() *cobra.Command {
	var (
		f           clientFlags
		incremental bool
		stop        bool
	)
	cmd := &cobra.Command{
		Use:   "log NAME | --stop",
		Short: "Have the node log every change to NAME in its dump directory",
		Long: `Have the node write a change log, MoaT-KV's "log": the file NAME in its dump
directory (data.dumps) starts with the node's state and, unless
--incremental, its whole tree (meta tree included), and then gets every
change as it happens (deletions too). 'edgekv dump load' and MoaT-KV read
it. A log already running closes once the new one is live; --stop ends
logging.`,
		Example: `  edgekv dump log 0.dkv
  edgekv dump log 1.dkv --incremental
  edgekv dump log --stop`,
		Args: func(cmd *cobra.Command, args []string) error {
			if stop != (len(args) == 0) {
				return usageError{errors.New("give NAME or --stop")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			if err := c.ChangeLog(cmd.Context(), name, !incremental); err != nil {
				return asServerError(err)
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVarP(&incremental, "incremental", "i", false, "changes only, not the tree first")
	cmd.Flags().BoolVar(&stop, "stop", false, "stop logging")
	return cmd
}

func newDumpSaveCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:     "save FILE",
		Short:   "Write the node's tree (without the meta tree) to FILE",
		Example: "  edgekv dump save backup.dkv",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := c.State(cmd.Context())
			if err != nil {
				return asServerError(err)
			}
			b := wire.AppendState(nil, wire.State{Node: st.Node, Tock: st.Tock, Ticks: st.Ticks, Known: st.Known, Skipped: nonEmpty(st.Skipped)})
			var w wire.DKVWriter
			n := 0
			err = c.Tree(cmd.Context(), nil, func(it kvclient.Item) error {
				b = w.AppendEntry(b, tree.Event{Path: it.Path, Value: it.Value, Chain: it.Chain, Tock: it.Tock})
				n++
				return nil
			})
			if err != nil {
				return asServerError(err)
			}
			tmp := args[0] + ".tmp"
			if err := os.WriteFile(tmp, b, 0o644); err != nil {
				return err
			}
			if err := os.Rename(tmp, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "saved %d entries of node %s to %s (%d bytes)\n", n, st.Node, args[0], len(b))
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func newDumpLoadCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "load FILE",
		Short: "Apply a MoaT-KV save file or change log to the node",
		Long: `Apply a MoaT-KV save file or change log to the node: entries and events keep
their own chains and tocks, as if a peer had sent them, so a newer value on
the node is not overwritten by an older one from the file. The whole file is
checked first; a corrupt file stops with the record number and what is
wrong (exit status 2, as for a file that cannot be read), and nothing is
applied. On a terminal, a progress bar shows the records applied.`,
		Example: "  edgekv dump load snapshot-full.dkv",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// A file that cannot be read or decoded is a bad argument
			// (exit status 2), like a malformed path.
			data, err := os.ReadFile(args[0])
			if err != nil {
				return usageError{err}
			}
			var recs []wire.Record
			r := wire.NewDKVReader(data)
			for {
				rec, err := r.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return usageError{fmt.Errorf("%s: %s; nothing was applied", args[0], badRecord(err, len(recs)))}
				}
				recs = append(recs, rec)
			}
			c, err := f.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			progress := progressTo(cmd.ErrOrStderr(), len(recs))
			// Entries and events first, then node state: a state record may
			// name ticks of nodes this node knows only from the file's
			// events, and the node accepts ticks of an unknown node only
			// with the ticks of it that are known.
			applied, known, done := 0, 0, 0
			for pass := range 2 {
				for i, rec := range recs {
					isState := rec.Kind == wire.RecordState || rec.Kind == wire.RecordInfo
					if isState != (pass == 1) {
						continue
					}
					switch rec.Kind {
					case wire.RecordState:
						err = c.ImportInfo(cmd.Context(), "dump", rec.State.Ticks, withSkipped(rec.State.Known, rec.State.Skipped))
					case wire.RecordInfo:
						err = c.ImportInfo(cmd.Context(), "dump", rec.Info.Ticks, rec.Info.Known)
					case wire.RecordEntry, wire.RecordEvent:
						if len(rec.Event.Chain) == 0 {
							break // an entry without a version cannot be applied
						}
						var fresh bool
						if fresh, err = c.Import(cmd.Context(), rec.Event); fresh {
							applied++
						} else if err == nil {
							known++
						}
					}
					if err != nil {
						progress(-1) // the message goes on a line of its own
						return asServerError(fmt.Errorf("%s: record %d (%s): %w", args[0], i+1, rec.Kind, err))
					}
					done++
					progress(done)
				}
			}
			progress(-1)
			fmt.Fprintf(cmd.ErrOrStderr(), "loaded %s: %d records, %d changes applied, %d already known\n", args[0], len(recs), applied, known)
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

// withSkipped returns known with the ticks each node declared skipped
// added: for the node loading the file, a tick nobody will ever send is as
// settled as a superseded one (fake_info has no skipped set of its own).
func withSkipped(known, skipped map[string]tree.RangeSet) map[string]tree.RangeSet {
	if len(skipped) == 0 {
		return known
	}
	out := make(map[string]tree.RangeSet, len(known)+len(skipped))
	for n, rs := range known {
		out[n] = rs.Clone()
	}
	for n, rs := range skipped {
		k := out[n]
		k.AddSet(rs)
		out[n] = k
	}
	return out
}

// nonEmpty returns m without its empty sets (nil if none is left), so that
// a save file has no skipped key when no node skipped a tick.
func nonEmpty(m map[string]tree.RangeSet) map[string]tree.RangeSet {
	var out map[string]tree.RangeSet
	for n, rs := range m {
		if !rs.IsEmpty() {
			if out == nil {
				out = map[string]tree.RangeSet{}
			}
			out[n] = rs
		}
	}
	return out
}

// badRecord says what is wrong with record i (counted from 0) of a save
// file, as "record N (byte OFFSET): what", N counted from 1 as people do.
// The reader's own message counts from 0 ("dkv: record 0: ..."); that
// prefix is left out so that one line does not name two numbers.
func badRecord(err error, i int) string {
	var we *wire.Error
	if !errors.As(err, &we) {
		return fmt.Sprintf("record %d: %v", i+1, err)
	}
	what := strings.TrimPrefix(we.Msg, fmt.Sprintf("dkv: record %d: ", i))
	return fmt.Sprintf("record %d (byte %d): %s", i+1, we.Offset, what)
}

// progressTo returns a progress reporter that draws on w if w is a
// terminal and does nothing otherwise; -1 ends the line.
func progressTo(w io.Writer, total int) func(int) {
	if !isTerminal(w) {
		return func(int) {}
	}
	drawn := false
	return func(n int) {
		switch {
		case n < 0:
			if drawn {
				fmt.Fprintln(w)
			}
			drawn = false
		case n%500 == 0 || n == total:
			drawn = true
			width := 40
			done := width * n / max(total, 1)
			fmt.Fprintf(w, "\r[%-*s] %d/%d records", width, string(repeat('#', done)), n, total)
		}
	}
}

func repeat(c byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return b
}

// isTerminal reports whether w is a terminal: a character device, by its
// Stat (an *os.File, or a test's writer that claims to be one).
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Stat() (os.FileInfo, error) })
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
