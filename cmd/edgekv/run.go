package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgekv/edgekv"
	"github.com/edgekv/edgekv/boards"
)

func newRunCmd() *cobra.Command {
	var (
		name    string
		config  string
		dataDir string
		pprofAt string
	)
	cmd := &cobra.Command{
		Use:   "run -n NAME [-c CONFIG] [--data DIR] [--pprof ADDR]",
		Short: "Run one edgekv node",
		Long: `Run the edgekv node NAME: the embedded MQTT broker, the replicated tree with
its snapshot and change log in the data directory, and the links to the
peers and hubs named in the board config.

Without -c it uses the embedded default (see 'edgekv config default'): the
sim board, MQTT on 127.0.0.1:1883, data in ./data/NAME, no peers. Every
valued entry under the KV prefix is a retained MQTT message; publishing to
such a topic writes (JSON, else a string); an empty payload deletes.

SIGINT or SIGTERM shut the node down cleanly (log flushed, links closed).

--pprof 127.0.0.1:6060 serves Go's profiles of the running node at
http://127.0.0.1:6060/debug/pprof/ (go tool pprof URL/heap); loopback only.`,
		Example: `  edgekv run -n demo
  mosquitto_sub -h 127.0.0.1 -t 'kv/#' -v            # in another shell
  mosquitto_pub -h 127.0.0.1 -t kv/room/temp -m 21.5

  edgekv run -n board1 -c configs/mesh/board1.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadBoardConfig(name, config)
			if err != nil {
				return err
			}
			if dataDir != "" {
				cfg.Data.Dir = dataDir
			}
			ln, err := listenPprof(pprofAt)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: cfg.LogLevel.Slog()}))
			if ln != nil {
				pctx, cancel := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() {
					defer close(done)
					servePprof(pctx, ln, log)
				}()
				defer func() { cancel(); <-done }()
			}
			return runNode(ctx, cfg, log)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&name, "name", "n", "", "node name (required; must match the config's node if it has one)")
	f.StringVarP(&config, "config", "c", "", "YAML board config file (default: the embedded demo config)")
	f.StringVar(&dataDir, "data", "", "data directory for the snapshot and change log (overrides the config)")
	f.StringVar(&pprofAt, "pprof", "", "serve Go's profiles at http://ADDR/debug/pprof/ (loopback only, e.g. 127.0.0.1:6060)")
	if err := cmd.MarkFlagRequired("name"); err != nil {
		panic(err) // programmer error: the flag is defined just above
	}
	return cmd
}

// loadBoardConfig reads the board config (or the embedded default) and
// applies the node name.
func loadBoardConfig(name, path string) (*boards.Config, error) {
	var cfg *boards.Config
	if path == "" {
		cfg = boards.Default()
	} else {
		var err error
		if cfg, err = boards.Load(path); err != nil {
			return nil, err
		}
	}
	if err := cfg.SetNode(name); err != nil {
		return nil, err
	}
	if err := cfg.ValidateWith(edgekv.CheckTreePath); err != nil {
		return nil, err
	}
	return cfg, nil
}

// tuneGC trades some memory for less garbage-collection work unless the
// operator set GOGC or GOMEMLIMIT: the collector runs at 200 % growth
// instead of 100 %, and a soft memory limit of half the machine's RAM makes
// it work harder before the node could crowd out the rest of a small
// board. It returns what it set, for the log.
func tuneGC() (gcPercent int, limit int64) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
		gcPercent = 200
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if total := totalRAM(); total > 0 {
			limit = total / 2
			debug.SetMemoryLimit(limit)
		}
	}
	return gcPercent, limit
}

// totalRAM reads MemTotal from /proc/meminfo (0 if unknown).
func totalRAM() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kib, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0
			}
			return kib << 10
		}
	}
	return 0
}

// runNode runs the node until ctx is done and shuts it down within 5 s.
func runNode(ctx context.Context, cfg *boards.Config, log *slog.Logger) error {
	if pct, limit := tuneGC(); pct != 0 || limit != 0 {
		log.Debug("garbage collector tuned", "gogc", pct, "memory_limit_bytes", limit)
	}
	n, err := edgekv.New(cfg, edgekv.Options{Logger: log})
	if err != nil {
		return err
	}
	log.Info("edgekv node starting", "node", cfg.Node, "board", cfg.Board, "mqtt", cfg.Listen.MQTT, "data", cfg.Data.Dir,
		"sync", cfg.Data.Sync, "peers", len(cfg.Peers), "hubs", len(cfg.Hubs), "version", version)
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- n.Run(runCtx) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "node", cfg.Node)
	cancel()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case err := <-errc:
		return err
	case <-t.C:
		return errors.New("shutdown took longer than 10 s")
	}
}
