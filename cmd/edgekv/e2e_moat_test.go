package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/edgekv/edgekv/tree/wire"
)

// TestE2EMoaTRecovery: two edgekv nodes on Debian's mosquitto with
// MoaT-KV's topic prefix, and edgekv's own catch-up turned off
// (sync.moat.only: no digests, no ticks from heartbeats, no periodic
// missing requests). One node is killed, the other writes, sets over an
// old value and deletes; the killed node restarts and must catch up by
// MoaT-KV's recovery alone: the other's ping carries its tick, the
// restarted node asks with info{missing} when it is "it" (or recovering),
// the holder re-sends. The test listens on the bus and checks the
// messages' MoaT-KV shapes. The ping group runs at a 2 s cycle (MoaT-KV's
// default is 10 s) to keep the test short.
func TestE2EMoaTRecovery(t *testing.T) {
	hub := startMosquitto(t)
	dir := t.TempDir()
	ports := freePorts(t, 2)
	syncKeys := "  prefix: moat/kv\n  moat:\n    only: true\n    cycle: 2s\n    gap: 500ms\n"
	cfgs := make([]e2eCfg, 2)
	procs := make([]*proc, 2)
	for i, name := range []string{"m1", "m2"} {
		cfgs[i] = e2eCfg{name: name, port: ports[i], data: filepath.Join(dir, name), hubs: []e2eLink{{"site", hub}},
			heartbeat: "default", syncExtra: syncKeys}
		procs[i] = startNodeCfg(t, dir, "", cfgs[i])
	}

	// A listener on the bus, as a MoaT-KV server would be.
	var mu sync.Mutex
	var pings []wire.ActorMsg
	var infos []wire.Info
	var badMsgs []string
	spy := dialMQTT(t, hub, "spy", "", "", func(p *paho.Publish) {
		mu.Lock()
		defer mu.Unlock()
		switch p.Topic {
		case "moat/kv/ping":
			m, err := wire.DecodeActor(p.Payload)
			if err != nil {
				badMsgs = append(badMsgs, fmt.Sprintf("ping: %v", err))
				return
			}
			pings = append(pings, m)
		case "moat/kv/info":
			in, err := wire.DecodeInfo(p.Payload)
			if err != nil {
				badMsgs = append(badMsgs, fmt.Sprintf("info: %v", err))
				return
			}
			infos = append(infos, in)
		case "moat/kv/update":
			if _, err := wire.DecodeUpdate(p.Payload); err != nil {
				badMsgs = append(badMsgs, fmt.Sprintf("update: %v", err))
			}
		}
	})
	if _, err := spy.Subscribe(t.Context(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "moat/kv/#"}}}); err != nil {
		t.Fatal(err)
	}

	pub(t, ports[0], "kv/moat/before", `"both saw this"`)
	pub(t, ports[0], "kv/moat/old", `"old"`)
	pub(t, ports[0], "kv/moat/doomed", `"doomed"`)
	waitValue(t, ports[1], "kv/moat/before", `"both saw this"`, syncWait)
	waitValue(t, ports[1], "kv/moat/old", `"old"`, syncWait)
	waitValue(t, ports[1], "kv/moat/doomed", `"doomed"`, syncWait)
	procs[1].stop(syscall.SIGKILL)

	pub(t, ports[0], "kv/moat/while", `"written while m2 was down"`)
	pub(t, ports[0], "kv/moat/old", `"new"`)
	pub(t, ports[0], "kv/moat/doomed", "")
	mu.Lock()
	infos = infos[:0]
	mu.Unlock()

	t0 := time.Now()
	procs[1].restart()
	waitValue(t, ports[1], "kv/moat/while", `"written while m2 was down"`, 30*time.Second)
	waitValue(t, ports[1], "kv/moat/old", `"new"`, 10*time.Second)
	waitGone(t, ports[1], "kv/moat/doomed", 10*time.Second)
	took := time.Since(t0)
	waitValue(t, ports[1], "kv/moat/before", `"both saw this"`, 5*time.Second)

	mu.Lock()
	defer mu.Unlock()
	if len(badMsgs) > 0 {
		t.Errorf("messages MoaT-KV could not read: %v", badMsgs)
	}
	var asked bool
	for _, in := range infos {
		if in.Node == "m2" && in.Missing["m1"].Len() > 0 {
			asked = true
		}
	}
	if !asked {
		t.Errorf("m2 never asked for m1's ticks with info{missing}: %+v", infos)
	}
	byNode := map[string]int{}
	for _, p := range pings {
		if p.Type == wire.ActorPing {
			byNode[p.Node]++
			if !p.Value.Set || len(p.History) == 0 || p.History[0] != p.Node {
				t.Errorf("ping %+v: want value [tock, tick] and the sender first in its history", p)
			}
		}
	}
	if byNode["m1"] == 0 || byNode["m2"] == 0 || !slices.ContainsFunc(pings, func(m wire.ActorMsg) bool { return m.Type == wire.ActorInit && m.Node == "m2" }) {
		t.Errorf("pings per node %v; want both, and m2's init after its restart", byNode)
	}
	t.Logf("m2 caught up %.1f s after its restart by MoaT-KV's recovery (cycle 2 s); pings %v", took.Seconds(), byNode)
}
