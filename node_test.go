package edgekv_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
	"go.uber.org/goleak"

	"github.com/edgekv/edgekv"
	"github.com/edgekv/edgekv/boards"
	"github.com/edgekv/edgekv/broker/kvclient"
	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// config is a lone node on loopback ports picked by the kernel.
func config(t *testing.T, name string) *boards.Config {
	t.Helper()
	c := boards.DefaultConfig(name)
	c.Data.Dir = filepath.Join(t.TempDir(), name)
	c.Listen.MQTT = []string{"127.0.0.1:0"}
	c.Listen.Client = "127.0.0.1:0"
	c.LogLevel = boards.LogWarn
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEmbed: a Go program builds a node from a board config, runs it, uses
// its engine and its client-protocol listener, and stops it; the data is
// there when the node is built again on the same directory.
func TestEmbed(t *testing.T) {
	c := config(t, "emb")
	for round := range 2 {
		n, err := edgekv.New(c, edgekv.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx) }()
		select {
		case <-n.Ready():
		case <-time.After(10 * time.Second):
			t.Fatal("not ready")
		}
		addrs := n.ClientAddrs()
		if len(addrs) != 1 {
			t.Fatalf("client listeners %v", addrs)
		}
		p := tree.Path{tree.Str("embedded"), tree.Int(int64(round))}
		if _, err := n.Engine().Set(ctx, p, msgp.AppendString(nil, "v"), node.Cond{}); err != nil {
			t.Fatal(err)
		}
		cl, err := kvclient.Dial(ctx, addrs[0].String())
		if err != nil {
			t.Fatal(err)
		}
		for r := range round + 1 { // the earlier round's write survived the restart
			if _, found, err := cl.Get(ctx, tree.Path{tree.Str("embedded"), tree.Int(int64(r))}, 0); err != nil || !found {
				t.Fatalf("round %d: embedded.%d over the client protocol: found %v, %v", round, r, found, err)
			}
		}
		cl.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return")
		}
	}
}

// TestRunFailsCleanly: a listener that cannot be opened stops Run with an
// error naming it, after everything it started has stopped (goleak checks
// that nothing is left), and the store is closed (a new node opens it).
func TestRunFailsCleanly(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, which := range []string{"mqtt", "client"} {
		c := config(t, "fail")
		if which == "mqtt" {
			c.Listen.MQTT = []string{busy.Addr().String()}
		} else {
			c.Listen.Client = busy.Addr().String()
		}
		n, err := edgekv.New(c, edgekv.Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = n.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
			t.Fatalf("%s listener busy: Run = %v, want an error naming %s", which, err, busy.Addr())
		}
		if _, err := n.Engine().Get(context.Background(), tree.Path{tree.Str("x")}); !errors.Is(err, tree.ErrUnavailable) {
			t.Fatalf("engine after a failed Run: %v", err)
		}
		c.Listen.MQTT, c.Listen.Client = []string{"127.0.0.1:0"}, ""
		n2, err := edgekv.New(c, edgekv.Options{})
		if err != nil {
			t.Fatalf("reopening after a failed Run: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := n2.Run(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNewErrors: a config that cannot run is refused by New with the
// setting named, and nothing is left open.
func TestNewErrors(t *testing.T) {
	c := config(t, "bad")
	c.Listen.ClientTLS = []boards.TLSListener{{Addr: "127.0.0.1:0", Cert: "/nonexistent.crt", Key: "/nonexistent.key"}}
	if _, err := edgekv.New(c, edgekv.Options{}); err == nil || !strings.Contains(err.Error(), "listen.client_tls[0]") {
		t.Fatalf("missing certificate: %v", err)
	}
	if _, err := edgekv.New(&boards.Config{}, edgekv.Options{}); err == nil {
		t.Fatal("a config without a node name was accepted")
	}

}
