package edgekv_test

import (
	"context"
	"log"
	"log/slog"
	"os"
	"os/signal"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv"
	"github.com/edgekv/edgekv/boards"
	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
)

// A Go program embeds a node: it builds it from a board config, runs it
// until interrupted, and uses the engine's local API beside the MQTT and
// client-protocol listeners the config names.
func ExampleNew() {
	cfg, err := boards.Load("board1.yaml")
	if err != nil {
		log.Fatal(err)
	}
	if err := cfg.SetNode("board1"); err != nil {
		log.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		log.Fatal(err)
	}
	n, err := edgekv.New(cfg, edgekv.Options{Logger: slog.Default()})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go func() {
		<-n.Ready()
		p := tree.Path{tree.Str("room"), tree.Str("temp")}
		if _, err := n.Engine().Set(ctx, p, msgp.AppendFloat64(nil, 21.5), node.Cond{}); err != nil {
			log.Print(err)
		}
	}()
	if err := n.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
