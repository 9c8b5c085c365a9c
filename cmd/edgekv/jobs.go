package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgekv/edgekv/broker/kvclient"
	"github.com/edgekv/edgekv/runner"
	"github.com/edgekv/edgekv/tree"
)

// The job commands write and read the runner's records over the client
// protocol, in MoaT-KV's shapes at MoaT-KV's default prefixes (see
// package runner), as `moat kv code` and `moat kv job` do.

var prefixes = runner.DefaultPrefixes()

func join(base tree.Path, rest tree.Path) tree.Path {
	return append(append(tree.Path(nil), base...), rest...)
}

// newCodeCmd builds "edgekv code".
func newCodeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "code",
		Short: "Store, show and delete job code (Tengo) in the tree",
		Long: `Job code is Tengo source stored in the tree at :.moat.kv.code.proc.PATH, as
MoaT-KV stores its Python code, with the names of the variables a job's data
sets and their defaults. Jobs ('edgekv job add --code PATH') run it. What a
script sees (kv.get, kv.set, kv.watch, event, state, …) is in the README.`,
	}
	cmd.AddCommand(newCodeSetCmd(), newCodeGetCmd(), newCodeListCmd(), newCodeDeleteCmd())
	return cmd
}

func newCodeSetCmd() *cobra.Command {
	var (
		f        clientFlags
		vars     []string
		defaults []string
		info     string
	)
	cmd := &cobra.Command{
		Use:   "set PATH FILE",
		Short: "Store the Tengo code in FILE (- for standard input) at PATH",
		Long: `Store the Tengo code in FILE (- reads standard input) as the code entry PATH.
--var names a variable that a job's data sets; --default NAME=VALUE (VALUE is
YAML) gives it a value when the data does not. Variables and defaults
already stored are kept unless given again. Running jobs that use this code
restart with it.`,
		Example: "  edgekv code set thermostat thermostat.tengo --var low --var high --default low=19 --default high=21",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := parsePathArg(args[0])
			if err != nil {
				return err
			}
			var src []byte
			if args[1] == "-" {
				src, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20+1))
			} else {
				src, err = os.ReadFile(args[1])
			}
			if err != nil {
				return usageError{fmt.Errorf("code: %w", err)}
			}
			if len(src) > 1<<20 {
				return usageError{fmt.Errorf("code: %s is larger than 1 MiB", args[1])}
			}
			def := map[string]any{}
			for _, d := range defaults {
				name, val, ok := strings.Cut(d, "=")
				if !ok || name == "" {
					return usageError{fmt.Errorf("--default %q: want NAME=VALUE", d)}
				}
				v, err := yamlArg(val)
				if err != nil {
					return usageError{fmt.Errorf("--default %s: %w", name, err)}
				}
				def[name] = v
			}
			if err := f.check(); err != nil {
				return err
			}
			c, err := f.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			at := join(prefixes.Code, p)
			code := runner.Code{Default: map[string]any{}}
			if e, found, err := c.Get(cmd.Context(), at, 0); err != nil {
				return asServerError(err)
			} else if found {
				if old, err := runner.DecodeCode(e.Value); err == nil {
					code = old
				}
			}
			code.Text = string(src)
			for _, v := range vars {
				if !slices.Contains(code.Vars, v) {
					code.Vars = append(code.Vars, v)
				}
			}
			for k, v := range def {
				code.Default[k] = v
				if !slices.Contains(code.Vars, k) {
					code.Vars = append(code.Vars, k)
				}
			}
			if info != "" {
				code.Info = info
			}
			b, err := code.Encode()
			if err != nil {
				return usageError{err}
			}
			if _, err := runner.DecodeCode(b); err != nil { // names checked as the runner will
				return usageError{err}
			}
			if _, err := c.Set(cmd.Context(), at, b, kvclient.WriteOpts{}); err != nil {
				return asServerError(err)
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringArrayVar(&vars, "var", nil, "a variable the job's data sets (repeatable)")
	cmd.Flags().StringArrayVar(&defaults, "default", nil, "`NAME=VALUE`: a variable's default, VALUE as YAML (repeatable)")
	cmd.Flags().StringVar(&info, "info", "", "a line saying what the code does")
	return cmd
}

// yamlArg reads a YAML value given on the command line.
func yamlArg(text string) (any, error) {
	b, err := valueArg(text, false)
	if err != nil {
		return nil, err
	}
	return tree.DecodeValue(b)
}

func newCodeGetCmd() *cobra.Command {
	var (
		f      clientFlags
		script bool
	)
	cmd := &cobra.Command{
		Use:   "get PATH",
		Short: "Print the code entry at PATH",
		Long:  "Print the code entry at PATH (code, vars, default, info), or with --script the code alone.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, p, err := f.open(cmd.Context(), args)
			if err != nil {
				return err
			}
			defer c.Close()
			e, found, err := c.Get(cmd.Context(), join(prefixes.Code, p), 0)
			if err != nil {
				return asServerError(err)
			}
			if !found {
				return fmt.Errorf("%w: no code at %s", tree.ErrNotFound, p)
			}
			if script {
				code, err := runner.DecodeCode(e.Value)
				if err != nil {
					return serverError{err}
				}
				_, err = io.WriteString(cmd.OutOrStdout(), code.Text)
				return err
			}
			v, err := plain(e.Value)
			if err != nil {
				return serverError{err}
			}
			return f.print(cmd.OutOrStdout(), v)
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&script, "script", false, "print the code alone")
	return cmd
}

func newCodeListCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "list [PATH]",
		Short: "List the code entries (at or below PATH)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, p, err := f.open(cmd.Context(), args)
			if err != nil {
				return err
			}
			defer c.Close()
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 8, 2, ' ', 0)
			n := 0
			err = c.Tree(cmd.Context(), join(prefixes.Code, p), func(it kvclient.Item) error {
				rel := it.Path[len(prefixes.Code):]
				code, derr := runner.DecodeCode(it.Value)
				row := map[string]any{"path": rel.String()}
				if derr != nil {
					row["error"] = derr.Error()
				} else {
					row["vars"], row["lines"], row["info"] = code.Vars, strings.Count(code.Text, "\n")+1, code.Info
				}
				n++
				if f.output == "json" {
					return f.print(cmd.OutOrStdout(), row)
				}
				if n == 1 {
					fmt.Fprintln(w, "path\tvars\tlines\tinfo")
				}
				if derr != nil {
					fmt.Fprintf(w, "%s\t(%v)\t\t\n", rel, derr)
					return nil
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", rel, strings.Join(code.Vars, ","), row["lines"], code.Info)
				return nil
			})
			if err != nil {
				return asServerError(err)
			}
			return w.Flush()
		},
	}
	f.add(cmd)
	return cmd
}

func newCodeDeleteCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "delete PATH",
		Short: "Delete the code entry at PATH (its jobs stop: no code)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, p, err := f.open(cmd.Context(), args)
			if err != nil {
				return err
			}
			defer c.Close()
			return deleteEntry(cmd.Context(), c, join(prefixes.Code, p), "code at "+p.String())
		},
	}
	f.add(cmd)
	return cmd
}

// jobFlags say which kind of job: -n NODE (single-node), --all, or
// neither (any-node), in group -g.
type jobFlags struct {
	node  string
	all   bool
	group string
}

func (j *jobFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&j.node, "node", "n", "", "a single-node job of `NODE`")
	cmd.Flags().BoolVar(&j.all, "all", false, "an all-node job (runs on every node)")
	cmd.Flags().StringVarP(&j.group, "group", "g", runner.DefaultGroup, "the job's `GROUP`")
}

func (j *jobFlags) check() error {
	switch {
	case j.node != "" && j.all:
		return usageError{errors.New("give -n NODE or --all, not both")}
	case j.group == "":
		return usageError{errors.New("-g: a group name is required")}
	}
	return nil
}

// open checks the flags, parses the job's PATH and connects.
func (j *jobFlags) open(cmd *cobra.Command, f *clientFlags, args []string) (*kvclient.Client, tree.Path, error) {
	if err := j.check(); err != nil {
		return nil, nil, err
	}
	return f.open(cmd.Context(), args)
}

// sub is the job kind's path below the run and state prefixes.
func (j *jobFlags) sub() tree.Path {
	switch {
	case j.node != "":
		return tree.Path{tree.Str("at"), tree.Str(j.node), tree.Str(j.group)}
	case j.all:
		return tree.Path{tree.Str("all"), tree.Str(j.group)}
	}
	return tree.Path{tree.Str("any"), tree.Str(j.group)}
}

func newJobCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "Add, list, inspect and delete jobs",
		Long: `A job runs stored code ('edgekv code set') on one node (-n NODE), on every
node (--all), or on any one live node of a group (neither; -g GROUP, default
"default"). Entries are MoaT-KV's: :.moat.kv.run.{at.NODE,all,any}.GROUP.PATH,
and the runner that runs a job keeps its state at :.moat.kv.state.….`,
	}
	cmd.AddCommand(newJobAddCmd(), newJobListCmd(), newJobStateCmd(), newJobDeleteCmd())
	return cmd
}

// parseStart reads --start: now, never, +SECONDS, or a Unix time.
func parseStart(s string, now time.Time) (float64, bool, error) {
	switch {
	case s == "now":
		return float64(now.UnixNano()) / 1e9, true, nil
	case s == "never":
		return 0, false, nil
	case strings.HasPrefix(s, "+"):
		d, err := strconv.ParseFloat(s[1:], 64)
		if err != nil || d < 0 {
			return 0, false, fmt.Errorf("--start %q: want now, never, +SECONDS or a Unix time", s)
		}
		return float64(now.UnixNano())/1e9 + d, true, nil
	}
	t, err := strconv.ParseFloat(s, 64)
	if err != nil || t <= 0 {
		return 0, false, fmt.Errorf("--start %q: want now, never, +SECONDS or a Unix time", s)
	}
	return t, true, nil
}

func newJobAddCmd() *cobra.Command {
	var (
		f                      clientFlags
		jf                     jobFlags
		code, start, info      string
		data                   []string
		repeat, delay, okAfter float64
		backoff                float64
	)
	cmd := &cobra.Command{
		Use:   "add PATH --code CODEPATH",
		Short: "Add or replace the job PATH",
		Long: `Add the job PATH (or replace it: a running instance restarts). It runs the code
entry CODEPATH with --data NAME=VALUE variables (VALUE as YAML), first at
--start (now, never, +SECONDS or a Unix time), again --repeat seconds after
it ends well, and after a failure delay × backoff^failures seconds later.`,
		Example: `  edgekv job add heat -n board2 --code thermostat --data relay=heat.relay --data low=19
  edgekv job add report --all --code report --repeat 60
  edgekv job add watchdog --code watchdog               # any live node of group default`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := jf.check(); err != nil {
				return err
			}
			p, err := parsePathArg(args[0])
			if err != nil {
				return err
			}
			if code == "" {
				return usageError{errors.New("--code CODEPATH is required")}
			}
			cp, err := parsePathArg(code)
			if err != nil {
				return err
			}
			j := runner.Job{Code: cp, Data: map[string]any{}, Repeat: repeat, Delay: delay, Backoff: backoff, OkAfter: okAfter, Info: info}
			if j.Target, j.HasTarget, err = parseStart(start, time.Now()); err != nil {
				return usageError{err}
			}
			for _, d := range data {
				name, val, ok := strings.Cut(d, "=")
				if !ok || name == "" {
					return usageError{fmt.Errorf("--data %q: want NAME=VALUE", d)}
				}
				v, err := yamlArg(val)
				if err != nil {
					return usageError{fmt.Errorf("--data %s: %w", name, err)}
				}
				j.Data[name] = v
			}
			for name, v := range map[string]float64{"--repeat": repeat, "--delay": delay, "--ok-after": okAfter, "--backoff": backoff} {
				if v < 0 || v != v {
					return usageError{fmt.Errorf("%s %v: must not be negative", name, v)}
				}
			}
			b, err := j.Encode()
			if err != nil {
				return usageError{err}
			}
			if err := f.check(); err != nil {
				return err
			}
			c, err := f.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			if _, found, err := c.Get(cmd.Context(), join(prefixes.Code, cp), 0); err != nil {
				return asServerError(err)
			} else if !found {
				fmt.Fprintf(cmd.ErrOrStderr(), "edgekv: warning: no code at %s yet; the job waits for it\n", cp)
			}
			if _, err := c.Set(cmd.Context(), join(join(prefixes.Run, jf.sub()), p), b, kvclient.WriteOpts{}); err != nil {
				return asServerError(err)
			}
			return nil
		},
	}
	f.add(cmd)
	jf.add(cmd)
	cmd.Flags().StringVar(&code, "code", "", "the code entry the job runs (`CODEPATH`, below :.moat.kv.code.proc)")
	cmd.Flags().StringArrayVar(&data, "data", nil, "`NAME=VALUE`: a variable of the code, VALUE as YAML (repeatable)")
	cmd.Flags().StringVar(&start, "start", "now", "first start: now, never, +SECONDS or a Unix time")
	cmd.Flags().Float64Var(&repeat, "repeat", 0, "seconds after a good end to start again (0: not again)")
	cmd.Flags().Float64Var(&delay, "delay", runner.DefaultDelay, "seconds after a failure to try again (times backoff^failures)")
	cmd.Flags().Float64Var(&backoff, "backoff", runner.DefaultBackoff, "factor of the delay per failure in a row")
	cmd.Flags().Float64Var(&okAfter, "ok-after", 0, "seconds after which a running job counts as working (0: when it calls kv.setup_done)")
	cmd.Flags().StringVar(&info, "info", "", "a line saying what the job does")
	return cmd
}

// jobRow is one job as list shows it.
type jobRow struct {
	Kind, Where, Path, Code, State string
}

func newJobListCmd() *cobra.Command {
	var (
		f  clientFlags
		jf jobFlags
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the jobs with their state (all kinds, or those -n/--all/-g select)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := jf.check(); err != nil {
				return err
			}
			if err := f.check(); err != nil {
				return err
			}
			c, err := f.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			base := prefixes.Run
			filter := cmd.Flags().Changed("node") || cmd.Flags().Changed("all") || cmd.Flags().Changed("group")
			if filter {
				base = join(base, jf.sub())
			}
			var rows []jobRow
			var items []kvclient.Item
			if err := c.Tree(cmd.Context(), base, func(it kvclient.Item) error { items = append(items, it); return nil }); err != nil {
				return asServerError(err)
			}
			for _, it := range items {
				row, ok := jobRowOf(cmd, c, it)
				if ok {
					rows = append(rows, row)
				}
			}
			if f.output == "json" {
				for _, r := range rows {
					if err := f.print(cmd.OutOrStdout(), map[string]any{"kind": r.Kind, "where": r.Where, "path": r.Path, "code": r.Code, "state": r.State}); err != nil {
						return err
					}
				}
				return nil
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 8, 2, ' ', 0)
			fmt.Fprintln(w, "kind\twhere\tjob\tcode\tstate")
			for _, r := range rows {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Kind, r.Where, r.Path, r.Code, r.State)
			}
			return w.Flush()
		},
	}
	f.add(cmd)
	jf.add(cmd)
	return cmd
}

// jobRowOf describes the job entry it, with a summary of its state(s).
func jobRowOf(cmd *cobra.Command, c *kvclient.Client, it kvclient.Item) (jobRow, bool) {
	rel := it.Path[len(prefixes.Run):]
	str := func(i int) string {
		if i < len(rel) && rel[i].Kind() == tree.KindString {
			return rel[i].StrVal()
		}
		return ""
	}
	var r jobRow
	var statePaths []tree.Path
	switch r.Kind = str(0); r.Kind {
	case "at":
		if len(rel) < 4 {
			return r, false
		}
		r.Where, r.Path = str(1)+" "+str(2), rel[3:].String()
		statePaths = []tree.Path{join(prefixes.State, rel)}
	case "any", "all":
		if len(rel) < 3 {
			return r, false
		}
		r.Where, r.Path = str(1), rel[2:].String()
		if r.Kind == "any" {
			statePaths = []tree.Path{join(prefixes.State, rel)}
		} else { // one per node: state.all.GROUP.NODE.PATH
			_ = c.Tree(cmd.Context(), join(prefixes.State, rel[:2]), func(s kvclient.Item) error {
				if len(s.Path) == len(prefixes.State)+2+1+len(rel)-2 && s.Path[len(prefixes.State)+3:].Equal(rel[2:]) {
					statePaths = append(statePaths, s.Path)
				}
				return nil
			})
		}
	default:
		return r, false
	}
	j, err := runner.DecodeJob(it.Value)
	if err != nil {
		r.Code = "(" + err.Error() + ")"
	} else {
		r.Code = j.Code.String()
	}
	var states []string
	for _, sp := range statePaths {
		e, found, err := c.Get(cmd.Context(), sp, 0)
		if err != nil || !found {
			continue
		}
		st, err := runner.DecodeState(e.Value)
		if err != nil {
			continue
		}
		s := st.Reason
		if st.Node != "" {
			s = "running on " + st.Node
		}
		if r.Kind == "all" {
			s = sp[len(prefixes.State)+2].StrVal() + ": " + s
		}
		states = append(states, s)
	}
	r.State = strings.Join(states, "; ")
	if r.State == "" {
		r.State = "-"
	}
	return r, true
}

func newJobStateCmd() *cobra.Command {
	var (
		f  clientFlags
		jf jobFlags
	)
	cmd := &cobra.Command{
		Use:   "state PATH",
		Short: "Print the state of the job PATH (for --all, each node's)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, p, err := jf.open(cmd, &f, args)
			if err != nil {
				return err
			}
			defer c.Close()
			print := func(v []byte, node string) error {
				out, err := plain(v)
				if err != nil {
					return serverError{err}
				}
				if node != "" {
					out = map[string]any{"node": node, "state": out}
				}
				return f.print(cmd.OutOrStdout(), out)
			}
			if !jf.all {
				e, found, err := c.Get(cmd.Context(), join(join(prefixes.State, jf.sub()), p), 0)
				if err != nil {
					return asServerError(err)
				}
				if !found {
					return fmt.Errorf("%w: no state for job %s (not started yet?)", tree.ErrNotFound, p)
				}
				return print(e.Value, "")
			}
			base := join(prefixes.State, jf.sub())
			n := 0
			err = c.Tree(cmd.Context(), base, func(it kvclient.Item) error {
				if len(it.Path) == len(base)+1+len(p) && it.Path[len(base)+1:].Equal(p) {
					n++
					return print(it.Value, it.Path[len(base)].StrVal())
				}
				return nil
			})
			if err != nil {
				return asServerError(err)
			}
			if n == 0 {
				return fmt.Errorf("%w: no state for job %s on any node", tree.ErrNotFound, p)
			}
			return nil
		},
	}
	f.add(cmd)
	jf.add(cmd)
	return cmd
}

func newJobDeleteCmd() *cobra.Command {
	var (
		f  clientFlags
		jf jobFlags
	)
	cmd := &cobra.Command{
		Use:   "delete PATH",
		Short: "Delete the job PATH: a running instance stops, its state goes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, p, err := jf.open(cmd, &f, args)
			if err != nil {
				return err
			}
			defer c.Close()
			return deleteEntry(cmd.Context(), c, join(join(prefixes.Run, jf.sub()), p), "job "+p.String())
		},
	}
	f.add(cmd)
	jf.add(cmd)
	return cmd
}

func newErrorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "error",
		Short: "List and resolve the error records of jobs and code",
		Long: `Jobs that fail and code that does not compile leave error records in the
tree (:.moat.kv.error.NODE.TOCK, as MoaT-KV keeps them): one per subsystem
(run, compile) and path, with a count, when first and last seen, and a
detail per node. A record is resolved when the job works again; 'resolve'
marks it by hand.`,
	}
	cmd.AddCommand(newErrorListCmd(), newErrorResolveCmd())
	return cmd
}

func newErrorListCmd() *cobra.Command {
	var (
		f   clientFlags
		all bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the open error records (--all: resolved ones too)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			c, err := f.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 8, 2, ' ', 0)
			n := 0
			err = c.Tree(cmd.Context(), prefixes.Error, func(it kvclient.Item) error {
				if len(it.Path) != len(prefixes.Error)+2 {
					return nil
				}
				v, err := tree.DecodeValue(it.Value)
				m, ok := v.(map[string]any)
				if err != nil || !ok {
					return nil
				}
				open := m["resolved"] == false || m["resolved"] == nil
				if !open && !all {
					return nil
				}
				id := it.Path[len(prefixes.Error):].String()
				if f.output == "json" {
					m["id"] = id
					return f.print(cmd.OutOrStdout(), outValue(m))
				}
				if n == 0 {
					fmt.Fprintln(w, "id\tsubsystem\tpath\tcount\tlast seen\tmessage")
				}
				n++
				p, _ := m["path"].(tree.Path)
				last := "-"
				if ls, ok := m["last_seen"].(float64); ok {
					last = time.Unix(0, int64(ls*1e9)).UTC().Format(time.RFC3339)
				}
				msg, _ := m["message"].(string)
				if !open {
					msg = "(resolved) " + msg
				}
				fmt.Fprintf(w, "%s\t%v\t%s\t%v\t%s\t%s\n", id, m["subsystem"], p, m["count"], last, oneLine(msg))
				return nil
			})
			if err != nil {
				return asServerError(err)
			}
			return w.Flush()
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&all, "all", false, "resolved records too")
	return cmd
}

func newErrorResolveCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "resolve ID",
		Short: "Mark the error record ID (NODE:TOCK as list shows it) resolved",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, p, err := f.open(cmd.Context(), args)
			if err != nil {
				return err
			}
			defer c.Close()
			at := join(prefixes.Error, p)
			e, found, err := c.Get(cmd.Context(), at, 0)
			if err != nil {
				return asServerError(err)
			}
			if !found || len(p) != 2 {
				return fmt.Errorf("%w: no error record %s", tree.ErrNotFound, args[0])
			}
			v, err := tree.DecodeValue(e.Value)
			m, ok := v.(map[string]any)
			if err != nil || !ok {
				return serverError{fmt.Errorf("error record %s does not decode", args[0])}
			}
			m["resolved"] = float64(time.Now().UnixNano()) / 1e9
			b, err := tree.AppendValue(nil, m)
			if err != nil {
				return serverError{err}
			}
			if _, err := c.Set(cmd.Context(), at, b, kvclient.WriteOpts{}); err != nil {
				return asServerError(err)
			}
			return nil
		},
	}
	f.add(cmd)
	return cmd
}
