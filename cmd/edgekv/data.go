package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/edgekv/edgekv/broker/kvclient"
	"github.com/edgekv/edgekv/tree"
)

// exitServer is the exit status for server or connection errors; "no such
// entry" exits with 1 (exitError).
const exitServer = 3

// serverError marks an error that exits with exitServer.
type serverError struct{ err error }

func (e serverError) Error() string { return e.err.Error() }
func (e serverError) Unwrap() error { return e.err }

// clientFlags are the flags every data command shares.
type clientFlags struct {
	server   string
	output   string
	meta     bool
	tls      bool   // connect with TLS
	ca       string // PEM file of the CAs to trust (implies tls)
	insecure bool   // TLS without checking the certificate (implies tls)
}

func (f *clientFlags) add(cmd *cobra.Command) {
	def := os.Getenv("EDGEKV_SERVER")
	if def == "" {
		def = "127.0.0.1:27586"
	}
	cmd.Flags().StringVarP(&f.server, "server", "s", def, "node's client-protocol address host:port (env EDGEKV_SERVER)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "yaml", "output format: yaml or json")
	cmd.Flags().BoolVarP(&f.meta, "meta", "m", false, "include metadata (chain, tock)")
	cmd.Flags().BoolVar(&f.tls, "tls", false, "connect with TLS, to a listen.client_tls address (trusts the system's CAs unless --ca)")
	cmd.Flags().StringVar(&f.ca, "ca", "", "CA certificates to trust for TLS, a PEM `FILE` (implies --tls)")
	cmd.Flags().BoolVar(&f.insecure, "insecure", false, "TLS without checking the node's certificate (INSECURE: anyone in between can read and change the data; for tests only; implies --tls)")
}

// tlsConfig returns the TLS settings the flags ask for; nil: plain TCP.
func (f *clientFlags) tlsConfig() (*tls.Config, error) {
	if !f.tls && f.ca == "" && !f.insecure {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.insecure}
	if f.ca != "" {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, usageError{fmt.Errorf("--ca: %w", err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageError{fmt.Errorf("--ca %s: no PEM certificates in it", f.ca)}
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

func (f *clientFlags) check() error {
	if f.output != "yaml" && f.output != "json" {
		return usageError{fmt.Errorf("--output %q: want yaml or json", f.output)}
	}
	return nil
}

func (f *clientFlags) dial(ctx context.Context) (*kvclient.Client, error) {
	tc, err := f.tlsConfig()
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := kvclient.DialWith(dctx, f.server, kvclient.DialOptions{TLS: tc})
	if err != nil {
		return nil, serverError{err}
	}
	return c, nil
}

// open checks the flags, parses the optional PATH argument (none: the
// root) and connects.
func (f *clientFlags) open(ctx context.Context, args []string) (*kvclient.Client, tree.Path, error) {
	if err := f.check(); err != nil {
		return nil, nil, err
	}
	var p tree.Path
	if len(args) > 0 {
		var err error
		if p, err = parsePathArg(args[0]); err != nil {
			return nil, nil, err
		}
	}
	c, err := f.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	return c, p, nil
}

func parsePathArg(s string) (tree.Path, error) {
	p, err := tree.ParsePath(s)
	if err != nil {
		return nil, usageError{fmt.Errorf("path %q: %w", s, err)}
	}
	return p, nil
}

// asServerError maps a client error to its exit status.
func asServerError(err error) error {
	if err == nil || errors.Is(err, tree.ErrNotFound) {
		return err
	}
	return serverError{err}
}

func chainOut(c tree.Chain) []map[string]any {
	out := make([]map[string]any, len(c))
	for i, l := range c {
		out[i] = map[string]any{"node": l.Node, "tick": l.Tick}
	}
	return out
}

// printEntry prints one entry of a stream: a JSON object per line, or a
// one-element YAML list (so that the lines together form a YAML list).
func (f *clientFlags) printEntry(w io.Writer, entry map[string]any) error {
	if f.output == "json" {
		return f.print(w, entry)
	}
	return f.print(w, []any{entry})
}

func (f *clientFlags) print(w io.Writer, v any) error {
	if f.output == "json" {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func newGetCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "get PATH",
		Short: "Print the value at PATH",
		Long: `Print the value at PATH (MoaT-KV path syntax: a.b.c, :123 for an integer,
:t/:f for booleans, :_ for a space, see the README) from a node, as YAML or JSON.
Exit status 1 if there is no such entry, 3 if the node cannot be reached.`,
		Example: "  edgekv get room.temp\n  edgekv get -m -o json room.temp",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, p, err := f.open(cmd.Context(), args)
			if err != nil {
				return err
			}
			defer c.Close()
			nchain := 0
			if f.meta {
				nchain = -1
			}
			e, found, err := c.Get(cmd.Context(), p, nchain)
			if err != nil {
				return asServerError(err)
			}
			if !found {
				return fmt.Errorf("%w: no value at %s", tree.ErrNotFound, p)
			}
			v, err := plain(e.Value)
			if err != nil {
				return serverError{err}
			}
			if f.meta {
				v = map[string]any{"value": v, "chain": chainOut(e.Chain), "tock": e.Tock}
			}
			return f.print(cmd.OutOrStdout(), v)
		},
	}
	f.add(cmd)
	return cmd
}

func newSetCmd() *cobra.Command {
	var (
		f        clientFlags
		literal  bool
		fromFile string
		newOnly  bool
	)
	cmd := &cobra.Command{
		Use:   "set PATH [VALUE]",
		Short: "Write a value at PATH",
		Long: `Write VALUE at PATH on a node. VALUE is read as YAML, so 42 is an integer,
true a bool, 2.5 a float, "42" a string, {a: 1} a map; --string takes it
literally, --file reads it (as YAML) from a file.`,
		Example: "  edgekv set room.temp 21.5\n  edgekv set room.name --string 42\n  edgekv set room.cfg --file cfg.yaml",
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			p, err := parsePathArg(args[0])
			if err != nil {
				return err
			}
			var text string
			switch {
			case fromFile != "" && len(args) == 2:
				return usageError{errors.New("give VALUE or --file, not both")}
			case fromFile != "":
				b, err := os.ReadFile(fromFile)
				if err != nil {
					return usageError{fmt.Errorf("--file: %w", err)}
				}
				text = string(b)
			case len(args) == 2:
				text = args[1]
			default:
				return usageError{errors.New("no VALUE (or --file)")}
			}
			value, err := valueArg(text, literal)
			if err != nil {
				return err
			}
			c, err := f.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.Set(cmd.Context(), p, value, kvclient.WriteOpts{MustNotExist: newOnly})
			if err != nil {
				return asServerError(err)
			}
			if f.meta {
				return f.print(cmd.OutOrStdout(), map[string]any{"changed": res.Changed, "chain": chainOut(res.Chain), "tock": res.Tock})
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&literal, "string", false, "store VALUE as a string, not YAML")
	cmd.Flags().StringVar(&fromFile, "file", "", "read the value (YAML) from this file")
	cmd.Flags().BoolVar(&newOnly, "new", false, "fail if PATH already holds a value")
	return cmd
}

func newDeleteCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:     "delete PATH",
		Short:   "Delete the value at PATH",
		Long:    "Delete the value at PATH on a node. Exit status 1 if there was none.",
		Example: "  edgekv delete room.temp",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, p, err := f.open(cmd.Context(), args)
			if err != nil {
				return err
			}
			defer c.Close()
			return deleteEntry(cmd.Context(), c, p, "value at "+p.String())
		},
	}
	f.add(cmd)
	return cmd
}

// deleteEntry deletes the entry at p; nothing to delete is "no WHAT"
// (exit status 1).
func deleteEntry(ctx context.Context, c *kvclient.Client, p tree.Path, what string) error {
	res, err := c.Delete(ctx, p, kvclient.WriteOpts{})
	if err != nil {
		return asServerError(err)
	}
	if !res.Changed {
		return fmt.Errorf("%w: no %s", tree.ErrNotFound, what)
	}
	return nil
}

// walkCmd builds "tree" (every entry below PATH) and "list" (its children).
func newWalkCmd(use, short string, childrenOnly bool) *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   use + " [PATH]",
		Short: short,
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, p, err := f.open(cmd.Context(), args)
			if err != nil {
				return err
			}
			defer c.Close()
			out := cmd.OutOrStdout()
			walk := c.Tree
			if childrenOnly { // every child, whether or not it holds a value
				walk = c.TreeEmpty
			}
			err = walk(cmd.Context(), p, func(it kvclient.Item) error {
				if childrenOnly && len(it.Path) != len(p)+1 {
					return nil
				}
				if childrenOnly {
					name := tree.Path{it.Path[len(p)]}.String()
					if f.output == "json" {
						return f.print(out, map[string]any{"name": name, "value": it.Value != nil})
					}
					if it.Value == nil {
						name += "  (no value)"
					}
					_, err := fmt.Fprintln(out, name)
					return err
				}
				v, err := plain(it.Value)
				if err != nil {
					return err
				}
				entry := map[string]any{"path": it.Path.String(), "value": v}
				if f.meta {
					entry["chain"], entry["tock"] = chainOut(it.Chain), it.Tock
				}
				return f.printEntry(out, entry)
			})
			return asServerError(err)
		},
	}
	f.add(cmd)
	return cmd
}

func newWatchCmd() *cobra.Command {
	var f clientFlags
	var reconnect bool
	cmd := &cobra.Command{
		Use:   "watch [PATH]",
		Short: "Print the entries below PATH, then every change, until interrupted",
		Long: `Print the entries below PATH (none: the whole tree), a "# up to date" line,
then every change as it happens, until interrupted (exit 0).

With --reconnect the watch survives the node restarting or the connection
dropping: it connects again with backoff and prints only what changed
meanwhile (an entry deleted meanwhile is printed as deleted, without tock).
Without it, a lost connection ends the command with exit status 3.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// The first connection is made as for every command: a node
			// that is not there at all is an error, not a wait.
			c, p, err := f.open(ctx, args)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			show := func(it kvclient.Item) error {
				if it.UpToDate {
					_, err := fmt.Fprintln(out, "# up to date")
					return err
				}
				entry := map[string]any{"path": it.Path.String(), "tock": it.Tock}
				if it.Value != nil {
					v, err := plain(it.Value)
					if err != nil {
						return err
					}
					entry["value"] = v
				} else {
					entry["deleted"] = true
				}
				return f.printEntry(out, entry)
			}
			if reconnect {
				c.Close()
				tc, terr := f.tlsConfig()
				if terr != nil {
					return terr
				}
				r := kvclient.NewReconnecting(f.server, kvclient.ReconnectOptions{
					DialOptions: kvclient.DialOptions{TLS: tc, Timeout: 5 * time.Second},
					OnConnect: func(h kvclient.Hello) {
						fmt.Fprintf(cmd.ErrOrStderr(), "edgekv: watching on node %s at %s\n", h.Node, f.server)
					},
				})
				defer r.Close()
				err = r.Watch(ctx, p, true, show)
			} else {
				defer c.Close()
				err = c.Watch(ctx, p, true, show)
			}
			if ctx.Err() != nil {
				return nil
			}
			return asServerError(err)
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&reconnect, "reconnect", false, "keep watching across node restarts and dropped connections")
	return cmd
}

func newStatusCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a node's name, tick, tock, known nodes, missing ticks, links and sync counters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := f.open(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := c.State(cmd.Context())
			if err != nil {
				return asServerError(err)
			}
			missing := map[string]string{}
			for n, rs := range st.Missing {
				if !rs.IsEmpty() {
					missing[n] = rs.String()
				}
			}
			out := map[string]any{"node": st.Node, "tick": st.Ticks[st.Node], "tock": st.Tock, "nodes": st.Ticks, "missing": missing}
			// Links and sync counters are entries under .edgekv.status.NODE.
			links := map[string]any{}
			root := tree.Path{tree.Str(".edgekv"), tree.Str("status"), tree.Str(st.Node)}
			err = c.Tree(cmd.Context(), root, func(it kvclient.Item) error {
				v, err := plain(it.Value)
				if err != nil {
					return err
				}
				rel := it.Path[len(root):]
				switch {
				case len(rel) == 1 && rel[0] == tree.Str("sync"):
					out["sync"] = v
				case len(rel) == 2 && rel[0] == tree.Str("links"):
					links[rel[1].StrVal()] = v
				}
				return nil
			})
			if err != nil {
				return asServerError(err)
			}
			out["links"] = links
			return f.print(cmd.OutOrStdout(), out)
		},
	}
	f.add(cmd)
	return cmd
}

// valueArg turns a VALUE argument into one msgpack value: the text itself
// if literal (--string), else the text parsed as YAML (42 an integer,
// "42" a string, {a: 1} a map).
