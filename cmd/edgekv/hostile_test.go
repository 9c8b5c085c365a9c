package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/broker/kvclient"
	"github.com/edgekv/edgekv/tree"
)

// Issue 8's hostile requests against the node as its own process: a save
// over the store's files, events and node state that would speak for the
// node (its own tick pushed to 2^53, a ghost node at tick 999,999,999),
// and writes to its status entries by the client protocol and by MQTT.
// Each is refused with a reason; after a restart the store holds what it
// held, the node's ticks count on from where they were, and no ghost is
// left.
func TestE2EHostileRequestsRefused(t *testing.T) {
	dir := t.TempDir()
	ps := freePorts(t, 2)
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "h.yaml")
	yaml := fmt.Sprintf("node: h\nboard: sim\ndata: {dir: %q}\nlisten: {mqtt: [\"127.0.0.1:%d\"], client: \"127.0.0.1:%d\"}\nsync: {heartbeat: 200ms}\n", data, ps[0], ps[1])
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startNode(t, "h", cfg, ps[0])
	mq := dialMQTT(t, ps[0], "", "", "", nil)
	mustPublish(t, mq, "kv/keep", `"v1"`)
	statusTopic := "kv/.edgekv/status/h/sync"
	eventually(t, 10*time.Second, "the node's status entries", func() error {
		if _, ok := dumpEntries(t, ps[0], statusTopic)[statusTopic]; !ok {
			return errors.New("no status entry yet")
		}
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func() *kvclient.Client {
		t.Helper()
		c, err := kvclient.Dial(ctx, fmt.Sprintf("127.0.0.1:%d", ps[1]))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := dial()
	st, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tick0 := st.Ticks["h"]
	if tick0 == 0 || tick0 > 1<<51 {
		t.Fatalf("own tick %d before the attacks", tick0)
	}
	wantKind := func(what string, err error, kind string) {
		t.Helper()
		var se *kvclient.ServerError
		if !errors.As(err, &se) || se.Kind != kind {
			t.Errorf("%s: %v, want a %s error", what, err, kind)
		}
	}
	status := tree.Path{tree.Str(".edgekv"), tree.Str("status"), tree.Str("h"), tree.Str("sync")}
	keep := tree.Path{tree.Str("keep")}

	// Events that speak for the node.
	_, err = c.Import(ctx, tree.Event{Path: keep, Value: msgp.AppendString(nil, "forged"), Chain: tree.Chain{{Node: "h", Tick: 1 << 53}}, Tock: 1})
	wantKind("update with the node's own tick at 2^53", err, "permission")
	_, err = c.Import(ctx, tree.Event{Path: status, Value: msgp.AppendString(nil, "forged"), Chain: tree.Chain{{Node: "probe", Tick: 5}}, Tock: 1})
	wantKind("update of the node's status entry", err, "permission")
	// Node state that would move the node's tick or plant a ghost.
	wantKind("fake_info with the node's tick at 2^53", c.ImportInfo(ctx, "probe", map[string]uint64{"h": 1 << 53}, nil), "permission")
	wantKind("fake_info with a ghost node", c.ImportInfo(ctx, "probe", map[string]uint64{"ghost": 999_999_999}, nil), "invalid")
	// Writes to status entries, by the client protocol and by MQTT.
	_, err = c.Set(ctx, status, msgp.AppendString(nil, "forged"), kvclient.WriteOpts{})
	wantKind("set of a status entry", err, "permission")
	_, err = c.Delete(ctx, status, kvclient.WriteOpts{})
	wantKind("delete of a status entry", err, "permission")
	mustPublish(t, mq, "kv/.edgekv/mine", `1`) // not a status entry: a client's
	if n, err := c.DeleteTree(ctx, tree.Path{tree.Str(".edgekv")}); err != nil || n != 1 {
		t.Errorf("delete_tree of .edgekv: %d deleted, %v; want 1 (the client's own), status entries kept", n, err)
	}
	for _, payload := range []string{`{"forged":1}`, ""} {
		if code, err := publishQoS1(mq, statusTopic, []byte(payload)); err != nil || code != 0x87 {
			t.Errorf("MQTT v5 QoS 1 publish %q to %s: reason 0x%02x %v, want 0x87 (not authorized)", payload, statusTopic, code, err)
		}
	}
	// Saves over the store's files or outside the dump directory.
	for _, name := range []string{"log-000000000001.ekv", "node.ekv", "snapshot-000000000001.ekv", "../data/x.dkv", "/tmp/x.dkv"} {
		wantKind("save "+name, c.Save(ctx, name, true, true), "invalid")
	}
	if err := c.Save(ctx, "ok.dkv", true, false); err != nil {
		t.Fatalf("a save into the dump directory: %v", err)
	}
	wantKind("a second save of ok.dkv", c.Save(ctx, "ok.dkv", true, false), "conflict")

	// Still the node's own: its status entries, its tick, no ghost.
	if e, ok := dumpEntries(t, ps[0], statusTopic)[statusTopic]; !ok || strings.Contains(e.Payload, "forged") || e.Node != "h" {
		t.Fatalf("status entry after the attacks: %+v %v", e, ok)
	}
	if p.stop(syscall.SIGTERM); p.exited() != nil {
		t.Fatalf("the node did not stop cleanly: %v", p.exited())
	}
	if _, err := os.Stat(filepath.Join(data, "dumps", "ok.dkv")); err != nil {
		t.Fatalf("the save file: %v", err)
	}
	p.restart()
	c = dial()
	if e, found, err := c.Get(ctx, keep, 1); err != nil || !found || string(e.Value) != string(msgp.AppendString(nil, "v1")) {
		t.Fatalf("keep after the restart: %q %v %v", e.Value, found, err)
	}
	st, err = c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name := range st.Ticks {
		if name != "h" {
			t.Errorf("node %q (tick %d) known after the restart: only h ever wrote", name, st.Ticks[name])
		}
	}
	res, err := c.Set(ctx, tree.Path{tree.Str("after")}, msgp.AppendInt(nil, 1), kvclient.WriteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := res.Chain.Head(); h.Node != "h" || h.Tick <= tick0 || h.Tick > 1<<51 {
		t.Fatalf("a write after the restart got %+v; the node's tick was %d before the attacks", h, tick0)
	}
}
