package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tinylib/msgp/msgp"
	"golang.org/x/sync/errgroup"

	"github.com/edgekv/edgekv/broker"
	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/replica"
	"github.com/edgekv/edgekv/tree/store"
	"github.com/edgekv/edgekv/tree/wire"
)

// nodeConfig is everything one node needs, resolved from the board config.
type nodeConfig struct {
	Name          string
	DataDir       string
	Sync          store.SyncPolicy
	SyncInterval  time.Duration
	ChainLen      int
	TickEvery     time.Duration // replica clock tick (default 100 ms)
	Heartbeat     time.Duration // heartbeat period (default 1 s)
	StatusEvery   time.Duration // link status into the tree (default 5 s)
	SnapshotCheck time.Duration // how often to check whether a snapshot is due (default 30 s)
	MaxBatch      int           // updates per batch message to one link (default 64)
	HoldMax       time.Duration // longest start-up hold of local writes (default 3 s; see holdLocalWrites)
	ClientAddr    string        // MoaT-KV client protocol listener, host:port ("": none)
	Broker        broker.Config
	Peers         []broker.PeerLinkConfig
	Logger        *slog.Logger

	// ClientTLS are more client-protocol listeners, over TLS
	// (listen.client_tls).
	ClientTLS []clientTLSListener
}

// statusPath is where a node records its links: (".edgekv", "status", node, "links", name).
func statusPath(node, link string) tree.Path {
	return tree.Path{tree.Str(".edgekv"), tree.Str("status"), tree.Str(node), tree.Str("links"), tree.Str(link)}
}

// node wires one replica to its store, broker and links. One goroutine (run)
// owns the replica; everything else hands it work through inbox.
type node struct {
	cfg   nodeConfig
	log   *slog.Logger
	r     *replica.Replica
	st    *store.Store
	br    *broker.Broker
	peers []*broker.PeerLink
	// clientLn is the MoaT-KV client-protocol listener (nil: none).
	clientLn net.Listener
	watchers map[*watcher]struct{} // client-protocol watches (owned by the loop)
	// watchOverflows counts watches ended because they fell behind.
	watchOverflows atomic.Int64
	inbox          chan func()
	stopped        chan struct{} // closed when the owning goroutine has ended

	// clientTLSLns are the client-protocol listeners over TLS
	// (listen.client_tls); each is served like clientLn.
	clientTLSLns []net.Listener

	// owned by the run goroutine
	links   map[replica.LinkID]*nodeLink
	byName  map[string]replica.LinkID
	nextID  replica.LinkID
	waiters []chan error
	linkUps atomic.Int64         // links brought up so far (read by benchmarks)
	status  map[string]string    // last written status per link, to write only changes
	gone    map[string]time.Time // links that went down: when they were last heard from
	// syncDirty: something other than status entries changed since the
	// sync counters were last written. Writing the counters is itself a
	// change sent to every peer, which moves everyone's counters again, so
	// "write when changed" alone would rewrite them every period forever.
	syncDirty bool
	lastStats replica.Stats // the counters last written

	// Start-up hold (see holdLocalWrites): local writes wait in held
	// until the expected links have exchanged digests or holdUntil.
	holding   bool
	held      []func()
	holdUntil time.Time
	expect    []string // link names whose digest ends the hold early
}

type nodeLink struct {
	name     string
	send     func(wire.Kind, []byte) error
	since    time.Time
	lastSeen time.Time // last message received on the link
}

func newNode(cfg nodeConfig) (*node, error) {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.TickEvery, 100*time.Millisecond)
	def(&cfg.Heartbeat, time.Second)
	cfg.TickEvery = min(cfg.TickEvery, cfg.Heartbeat)
	def(&cfg.StatusEvery, 5*cfg.Heartbeat)
	def(&cfg.SnapshotCheck, 30*time.Second)
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 64
	}
	def(&cfg.HoldMax, 3*time.Second)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &node{
		cfg:       cfg,
		log:       log.With("node", cfg.Name),
		inbox:     make(chan func(), 4096),
		stopped:   make(chan struct{}),
		watchers:  make(map[*watcher]struct{}),
		links:     make(map[replica.LinkID]*nodeLink),
		byName:    make(map[string]replica.LinkID),
		status:    make(map[string]string),
		gone:      make(map[string]time.Time),
		syncDirty: true,
	}
	var fsys store.FS = store.DirFS(cfg.DataDir)
	st, loaded, err := store.Open(fsys, store.Options{Sync: cfg.Sync, SyncInterval: cfg.SyncInterval, Logger: n.log})
	if err != nil {
		return nil, fmt.Errorf("open data directory %s: %w", cfg.DataDir, err)
	}
	for _, c := range loaded.Cut {
		n.log.Warn("store: cut a damaged tail", "file", c.File, "offset", c.Offset, "dropped_bytes", c.Dropped, "reason", c.Reason)
	}
	hbTicks := max(1, int(cfg.Heartbeat/cfg.TickEvery))
	n.r = replica.New(replica.Config{Node: cfg.Name, ChainLen: cfg.ChainLen, HeartbeatTicks: hbTicks, LiveTicks: 4 * hbTicks, MissingTicks: hbTicks, PurgeTicks: 10 * hbTicks})
	for _, e := range n.r.Restore(loaded.Snapshot, loaded.Log, loaded.NodeRecord) {
		n.log.Warn("store: skipped a record", "error", e)
	}
	n.st = st
	n.log.Info("loaded", "entries", n.r.Tree().Len(), "tick", n.r.Tree().Node(cfg.Name).Tick(), "tock", n.r.Tree().Tock(),
		"snapshot_records", len(loaded.Snapshot), "log_records", len(loaded.Log), "sync", cfg.Sync.String())
	bcfg := cfg.Broker
	bcfg.Node = cfg.Name
	bcfg.Logger = log // the broker adds the node name itself
	n.br, err = broker.New(bcfg, n, n)
	if err != nil {
		st.Close()
		return nil, err
	}
	for _, pc := range cfg.Peers {
		pc.Node = cfg.Name
		pc.Logger = n.log
		n.peers = append(n.peers, broker.NewPeerLink(pc, n))
	}
	n.holdLocalWrites()
	if cfg.ClientAddr != "" {
		if n.clientLn, err = net.Listen("tcp", cfg.ClientAddr); err != nil {
			st.Close()
			return nil, fmt.Errorf("client protocol listener %s: %w", cfg.ClientAddr, err)
		}
		n.log.Info("client protocol listening", "addr", n.clientLn.Addr().String())
	}
	if err := n.listenClientTLS(); err != nil {
		if n.clientLn != nil {
			n.clientLn.Close()
		}
		st.Close()
		return nil, err
	}
	return n, nil
}

// holdLocalWrites decides whether local writes wait at start.
//
// Under sync "interval" or "none" a crash can lose this node's last changes
// from its disk after peers received them. Writing again at once would
// reuse those ticks for different changes, which peers would then ignore as
// already seen: the replicas would never agree. So local writes wait until
// the node has heard what its peers know of it (their digests raise its own
// tick past anything they hold, and the lost changes come back as missing
// ticks), or until HoldMax has passed. Under "always" nothing is sent
// before it is on disk, so there is nothing to wait for.
func (n *node) holdLocalWrites() {
	if n.cfg.Sync == store.SyncAlways {
		return
	}
	for _, p := range n.cfg.Peers {
		if !p.Hub {
			n.expect = append(n.expect, "out:"+p.Name)
		}
	}
	for user := range n.cfg.Broker.PeerUsers {
		n.expect = append(n.expect, "in:"+user)
	}
	if len(n.expect) == 0 && len(n.cfg.Peers) == 0 {
		return // a lone node: nobody can know more of it than its disk
	}
	n.holding = true
	n.holdUntil = time.Now().Add(n.cfg.HoldMax)
}

// checkHold ends the start-up hold once every expected link has synced or
// the time is up, and runs the writes that waited.
func (n *node) checkHold() {
	if !n.holding {
		return
	}
	synced := make(map[string]bool)
	for _, ls := range n.r.Links() {
		if l := n.links[ls.ID]; l != nil && ls.Synced {
			synced[l.name] = true
		}
	}
	all := true
	for _, name := range n.expect {
		all = all && synced[name]
	}
	if !all && time.Now().Before(n.holdUntil) {
		return
	}
	n.holding = false
	n.log.Info("accepting local writes", "all_links_synced", all, "held_writes", len(n.held),
		"own_tick", n.r.Tree().Node(n.cfg.Name).Tick())
	held := n.held
	n.held = nil
	for _, w := range held {
		w()
	}
}

// do runs f on the owning goroutine. It returns false if the node stopped.
func (n *node) do(ctx context.Context, f func()) bool {
	select { // the common case, without touching ctx
	case n.inbox <- f:
		return true
	default:
	}
	select {
	case n.inbox <- f:
		return true
	case <-ctx.Done():
		return false
	case <-n.stopped:
		return false
	}
}

// post runs f on the owning goroutine unless the node has stopped.
func (n *node) post(f func()) {
	select {
	case n.inbox <- f:
	case <-n.stopped:
	}
}

// Write implements broker.Tree: an MQTT client's write, answered once it is
// applied and persisted (fsynced with sync "always").
func (n *node) Write(ctx context.Context, p tree.Path, value []byte) error {
	reply := make(chan error, 1)
	var write func()
	write = func() {
		if n.holding {
			n.held = append(n.held, write)
			return
		}
		var err error
		if value == nil {
			_, err = n.r.Delete(p, tree.Cond{})
		} else {
			_, _, err = n.r.Set(p, value, tree.Cond{})
		}
		if err != nil {
			reply <- err
			return
		}
		n.waiters = append(n.waiters, reply) // answered after persisting
	}
	ok := n.do(ctx, write)
	if !ok {
		return fmt.Errorf("node %s is stopping: %w", n.cfg.Name, ctx.Err())
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopped:
		select {
		case err := <-reply:
			return err
		default:
			return fmt.Errorf("node %s stopped before the write was persisted", n.cfg.Name)
		}
	}
}

// Get reads an entry on the owning goroutine (for tests and the CLI).
func (n *node) Get(ctx context.Context, p tree.Path) (value []byte, ok bool, err error) {
	done := make(chan struct{})
	if !n.do(ctx, func() {
		defer close(done)
		if e := n.r.Tree().Get(p); e != nil {
			value, ok = e.Value()
		}
	}) {
		return nil, false, ctx.Err()
	}
	<-done
	return value, ok, nil
}

func (n *node) linkUp(name string, send func(wire.Kind, []byte) error) {
	n.post(func() { n.addLink(name, send) })
}

// addLink (re)registers a link; a fresh link starts with hello and digest.
func (n *node) addLink(name string, send func(wire.Kind, []byte) error) replica.LinkID {
	if old, ok := n.byName[name]; ok {
		n.r.LinkDown(old)
		delete(n.links, old)
	}
	n.nextID++
	id := n.nextID
	n.links[id] = &nodeLink{name: name, send: send, since: time.Now()}
	n.byName[name] = id
	n.r.LinkUp(id)
	n.linkUps.Add(1)
	n.log.Info("sync link up", "peer", name)
	return id
}

// sender returns how to send on the link called name ("in:P", "out:P").
func (n *node) sender(name string) func(wire.Kind, []byte) error {
	if peer, ok := strings.CutPrefix(name, "in:"); ok {
		return func(k wire.Kind, d []byte) error { return n.br.SendToPeer(peer, k, d) }
	}
	if peer, ok := strings.CutPrefix(name, "out:"); ok {
		for _, p := range n.peers {
			if p.Name() == peer {
				return p.Send
			}
		}
	}
	return nil
}

func (n *node) linkDown(name string) {
	n.post(func() {
		if id, ok := n.byName[name]; ok {
			if l := n.links[id]; l != nil {
				last := l.lastSeen
				if last.IsZero() {
					last = l.since
				}
				n.gone[name] = last
			}
			n.r.LinkDown(id)
			delete(n.links, id)
			delete(n.byName, name)
			n.log.Info("sync link down", "peer", name)
		}
	})
}

func (n *node) receive(name string, kind wire.Kind, data []byte) {
	n.post(func() {
		id, ok := n.byName[name]
		if !ok {
			// A message can overtake the link-up event (the peer may
			// publish as soon as it has subscribed): register the link
			// now; the explicit link-up later restarts the handshake.
			send := n.sender(name)
			if send == nil {
				return
			}
			id = n.addLink(name, send)
		}
		if l := n.links[id]; l != nil {
			l.lastSeen = time.Now()
		}
		if err := n.r.Step(id, kind, data); err != nil {
			n.log.Warn("dropped a sync message", "peer", name, "kind", kind.String(), "bytes", len(data), "error", err)
		}
	})
}

// Outbound links (broker.LinkEvents).
func (n *node) LinkUp(name string) {
	if send := n.sender("out:" + name); send != nil {
		n.linkUp("out:"+name, send)
	}
}
func (n *node) LinkDown(name string) { n.linkDown("out:" + name) }
func (n *node) LinkReceive(name string, kind wire.Kind, data []byte) {
	n.receive("out:"+name, kind, data)
}

// Inbound peers (broker.SyncHandler).
func (n *node) PeerUp(peer string)   { n.linkUp("in:"+peer, n.sender("in:"+peer)) }
func (n *node) PeerDown(peer string) { n.linkDown("in:" + peer) }
func (n *node) Receive(peer string, kind wire.Kind, data []byte) {
	n.receive("in:"+peer, kind, data)
}

// Run serves until ctx is done, then shuts down in reverse order.
func (n *node) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.br.Run(gctx) })
	g.Go(func() error { return n.st.Run(gctx) })
	if n.clientLn != nil {
		g.Go(func() error { return n.serveClients(gctx, n.clientLn) })
	}
	for _, ln := range n.clientTLSLns {
		g.Go(func() error { return n.serveClients(gctx, ln) })
	}
	for _, p := range n.peers {
		g.Go(func() error { return p.Run(gctx) })
	}
	loopErr := n.loop(gctx)
	close(n.stopped)
	err := g.Wait()
	if cerr := n.st.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if loopErr != nil && !errors.Is(loopErr, context.Canceled) {
		return loopErr
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	n.log.Info("stopped", "entries", n.r.Tree().Len(), "tick", n.r.Tree().Node(n.cfg.Name).Tick())
	return err
}

func (n *node) loop(ctx context.Context) error {
	tick := time.NewTicker(n.cfg.TickEvery)
	defer tick.Stop()
	status := time.NewTicker(n.cfg.StatusEvery)
	defer status.Stop()
	snap := time.NewTicker(n.cfg.SnapshotCheck)
	defer snap.Stop()
	var snapping sync.WaitGroup
	defer snapping.Wait()
	// Republish every valued entry as a retained message (the broker
	// keeps none across restarts), a chunk at a time between other work,
	// so that a large tree does not hold up sync and writes at start.
	var pending []*tree.Entry
	n.r.Tree().Walk(nil, func(e *tree.Entry) bool {
		if e.HasValue() {
			pending = append(pending, e)
		}
		return true
	})
	ready := make(chan struct{})
	close(ready)
	for {
		var republish <-chan struct{} // nil: blocks; ready: always ready
		if len(pending) > 0 {
			republish = ready
		}
		select {
		case <-republish:
			// Entries are read as they are now: one changed since is
			// published with its current value, a deleted one skipped.
			k := min(len(pending), 256)
			for _, e := range pending[:k] {
				if v, ok := e.Value(); ok {
					n.publish(e.Path(), v, e.Chain(), e.Tock())
				}
			}
			pending = pending[k:]
			if len(pending) == 0 {
				pending = nil
			}
			continue
		case <-ctx.Done():
			n.flush()
			return ctx.Err()
		case f := <-n.inbox:
			f()
			// Drain what else is waiting, then persist and send once.
			for i := 0; i < 1024; i++ {
				select {
				case f := <-n.inbox:
					f()
					continue
				default:
				}
				break
			}
		case <-tick.C:
			n.r.Tick()
		case <-status.C:
			n.writeStatus()
		case <-snap.C:
			if n.st.SnapshotDue() {
				snapping.Add(1)
				go func() {
					defer snapping.Done()
					n.snapshot(ctx)
				}()
			}
		}
		n.checkHold()
		n.flush()
	}
}

// snapshot writes a snapshot in the background; only capturing the state
// runs on the owning goroutine (the store has switched to a new log segment
// by then, so nothing is lost).
func (n *node) snapshot(ctx context.Context) {
	start := time.Now()
	err := n.st.Snapshot(func(yield func([]byte) error) error {
		var recs [][]byte
		done := make(chan error, 1)
		if !n.do(ctx, func() {
			done <- n.r.SnapshotRecords(func(b []byte) error { recs = append(recs, b); return nil })
		}) {
			return ctx.Err()
		}
		if err := <-done; err != nil {
			return err
		}
		for _, r := range recs {
			if err := yield(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		n.log.Error("snapshot failed", "error", err)
		return
	}
	n.log.Info("snapshot written", "took", time.Since(start).Round(time.Millisecond))
}

// flush persists the replica's records, answers waiting writers, sends the
// messages (updates to one link batched) and publishes changed entries.
func (n *node) flush() {
	if !n.r.HasReady() && len(n.waiters) == 0 {
		return
	}
	rd := n.r.Ready()
	var perr error
	if rd.NodeRecord != nil {
		if err := n.st.SaveNodeRecord(rd.NodeRecord); err != nil {
			n.log.Error("store: could not save the node record", "error", err)
			perr = fmt.Errorf("not persisted: %w", err)
			rd.Records, rd.Messages = nil, nil
		}
	}
	if len(rd.Records) > 0 {
		if perr = n.st.AppendBatch(rd.Records); perr != nil {
			n.log.Error("store: could not persist", "records", len(rd.Records), "error", perr)
			perr = fmt.Errorf("not persisted: %w", perr)
		}
	}
	for _, w := range n.waiters {
		w <- perr
	}
	n.waiters = n.waiters[:0]
	n.sendAll(rd.Messages)
	for _, c := range rd.Changes {
		if !isStatusPath(c.Path) {
			n.syncDirty = true
		}
		if c.Purged {
			continue
		}
		if len(n.watchers) > 0 {
			n.notifyWatchers(c)
		}
		n.publish(c.Path, c.Value, c.Chain, c.Tock)
	}
}

func (n *node) publish(p tree.Path, value []byte, chain tree.Chain, tock uint64) {
	if p.IsMeta() || len(p) == 0 {
		return
	}
	h, _ := chain.Head()
	if err := n.br.PublishEntry(p, value, h.Node, h.Tick, tock); err != nil {
		n.log.Debug("not published as a topic", "path", p.String(), "error", err)
	}
}

// sendAll sends messages in order, folding runs of updates to one link
// into batch messages.
func (n *node) sendAll(msgs []replica.Message) {
	pending := make(map[replica.LinkID][][]byte)
	var order []replica.LinkID
	flushLink := func(id replica.LinkID) {
		ups := pending[id]
		if len(ups) == 0 {
			return
		}
		l := n.links[id]
		delete(pending, id)
		if l == nil {
			return
		}
		var err error
		if len(ups) == 1 {
			err = l.send(wire.KindUpdate, ups[0])
		} else {
			err = l.send(wire.KindBatch, wire.AppendBatch(nil, ups))
		}
		if err != nil {
			n.log.Debug("send failed", "peer", l.name, "error", err)
		}
	}
	for _, m := range msgs {
		if m.Kind == wire.KindUpdate {
			if _, ok := pending[m.Link]; !ok {
				order = append(order, m.Link)
			}
			pending[m.Link] = append(pending[m.Link], m.Data)
			if len(pending[m.Link]) >= n.cfg.MaxBatch {
				flushLink(m.Link)
			}
			continue
		}
		flushLink(m.Link) // keep order with what was queued before
		if l := n.links[m.Link]; l != nil {
			if err := l.send(m.Kind, m.Data); err != nil {
				n.log.Debug("send failed", "peer", l.name, "error", err)
			}
		}
	}
	for _, id := range order {
		flushLink(id)
	}
}

// writeStatus records each link's state under the status path when it
// changed: connected, the peer's name, since when, and the lag in ticks
// (changes the peer has made that this node has not seen yet).
func (n *node) writeStatus() {
	members := make(map[string]replica.Member)
	for _, m := range n.r.Members() {
		members[m.Node] = m
	}
	seen := make(map[string]bool)
	for _, ls := range n.r.Links() {
		l := n.links[ls.ID]
		if l == nil {
			continue
		}
		seen[l.name] = true
		var lag uint64
		if m, ok := members[ls.Peer]; ok {
			if k := n.r.Tree().Node(ls.Peer).Known().Through(); m.Tick > k {
				lag = m.Tick - k
			}
		}
		v := msgp.AppendMapHeader(nil, 4)
		v = msgp.AppendString(v, "connected")
		v = msgp.AppendBool(v, true)
		v = msgp.AppendString(v, "peer")
		v = msgp.AppendString(v, ls.Peer)
		v = msgp.AppendString(v, "since")
		v = msgp.AppendInt64(v, l.since.Unix())
		v = msgp.AppendString(v, "lag")
		v = msgp.AppendUint64(v, lag)
		n.setStatus(l.name, v)
	}
	st := n.r.Stats()
	if n.syncDirty || st.Malformed != n.lastStats.Malformed || st.Lost != n.lastStats.Lost {
		n.syncDirty = false
		n.lastStats = st
		n.writeSyncStats(st)
	}
	for name := range n.status {
		if name != syncStats && !seen[name] {
			v := msgp.AppendMapHeader(nil, 2)
			v = msgp.AppendString(v, "connected")
			v = msgp.AppendBool(v, false)
			v = msgp.AppendString(v, "last_seen")
			v = msgp.AppendInt64(v, n.gone[name].Unix())
			n.setStatus(name, v)
		}
	}
}

// isStatusPath reports whether p is under (".edgekv", "status").
func isStatusPath(p tree.Path) bool {
	return len(p) >= 2 && p[0] == tree.Str(".edgekv") && p[1] == tree.Str("status")
}

// writeSyncStats records the sync counters st.
func (n *node) writeSyncStats(st replica.Stats) {
	v := msgp.AppendMapHeader(nil, 7)
	for _, kv := range []struct {
		k string
		v int
	}{{"updates_sent", st.Sent[wire.KindUpdate]}, {"relayed", st.Relayed}, {"applied", st.Applied}, {"lost", st.Lost},
		{"duplicates", st.Duplicate}, {"malformed", st.Malformed}, {"missing_requests", st.MissingReqs}} {
		v = msgp.AppendString(v, kv.k)
		v = msgp.AppendInt(v, kv.v)
	}
	n.setStatus(syncStats, v)
}

// syncStats names the status entry with the node's sync counters:
// (".edgekv", "status", node, "sync").
const syncStats = "\x00sync"

func (n *node) setStatus(name string, v []byte) {
	if n.status[name] == string(v) {
		return
	}
	n.status[name] = string(v)
	p := statusPath(n.cfg.Name, name)
	if name == syncStats {
		p = tree.Path{tree.Str(".edgekv"), tree.Str("status"), tree.Str(n.cfg.Name), tree.Str("sync")}
	}
	if _, _, err := n.r.Set(p, v, tree.Cond{Idem: true}); err != nil {
		n.log.Warn("could not write link status", "peer", name, "error", err)
	}
}
