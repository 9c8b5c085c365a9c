package node

import (
	"slices"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/replica"
	"github.com/edgekv/edgekv/tree/wire"
)

// Status entries, written by the engine into its own part of the tree:
//
//	.edgekv.status.<node>.links.<link>  {connected: true, peer, since, lag, dropped}
//	                                    or {connected: false, last_seen}
//	.edgekv.status.<node>.sync          the sync counters
//
// since and last_seen are Unix seconds; lag is how many changes the peer
// has made that this node has not seen yet; dropped counts the link's
// messages the inbox had no room for. An entry is written only when its
// value changed.

// StatusPath returns where node keeps the status of link.
func StatusPath(node, link string) tree.Path {
	return tree.Path{tree.Str(".edgekv"), tree.Str("status"), tree.Str(node), tree.Str("links"), tree.Str(link)}
}

// SyncStatusPath returns where node keeps its sync counters.
func SyncStatusPath(node string) tree.Path {
	return tree.Path{tree.Str(".edgekv"), tree.Str("status"), tree.Str(node), tree.Str("sync")}
}

// isStatusPath reports whether p is under some node's status: a change
// there does not make this node rewrite its sync counters (else each
// node's counters would keep moving the others' forever).
func isStatusPath(p tree.Path) bool {
	return len(p) >= 2 && p[0] == tree.Str(".edgekv") && p[1] == tree.Str("status")
}

// syncStatus names the sync counters among the status entries.
const syncStatus = "\x00sync"

// writeStatus writes the links' state and the sync counters where they
// changed, in a fixed order (a simulated run replays exactly).
func (e *Engine) writeStatus() {
	members := make(map[string]replica.Member)
	for _, m := range e.r.Members() {
		members[m.Node] = m
	}
	seen := make(map[string]bool)
	for _, name := range slices.Sorted(mapKeys(e.links)) {
		l := e.links[name]
		seen[name] = true
		peer := l.peer
		var lag uint64
		if l.id != 0 {
			for _, ls := range e.r.Links() {
				if ls.ID == l.id && ls.Peer != "" {
					peer = ls.Peer
				}
			}
		}
		if m, ok := members[peer]; ok && peer != "" {
			if k := e.r.Tree().Node(peer).CoveredThrough(); m.Tick > k {
				lag = m.Tick - k
			}
		}
		v := msgp.AppendMapHeader(nil, 6)
		v = msgp.AppendString(v, "connected")
		v = msgp.AppendBool(v, true)
		v = msgp.AppendString(v, "peer")
		v = msgp.AppendString(v, peer)
		v = msgp.AppendString(v, "since")
		v = msgp.AppendInt64(v, l.since.Unix())
		v = msgp.AppendString(v, "lag")
		v = msgp.AppendUint64(v, lag)
		v = msgp.AppendString(v, "active")
		v = msgp.AppendBool(v, l.id != 0)
		v = msgp.AppendString(v, "dropped")
		v = msgp.AppendInt(v, l.dropped)
		e.setStatus(name, v)
	}
	if as := e.r.ActorStats(); as != nil {
		if as.Collisions > e.lastActor.Collisions {
			e.log.Error("another process uses this node's name in MoaT-KV's ping group: two nodes under one name corrupt each other's data; rename one", "node", e.name)
		}
		if as.Recoveries > e.lastActor.Recoveries {
			e.log.Info("MoaT-KV recovery: pings with another history (a healed split or a newcomer)", "history", as.History)
		}
		e.lastActor = *as
	}
	st := e.r.Stats()
	if e.syncDirty || st.Malformed != e.lastStats.Malformed || st.Lost != e.lastStats.Lost {
		e.syncDirty = false
		e.lastStats = st
		e.writeSyncStats(st)
	}
	for _, name := range slices.Sorted(mapKeys(e.status)) {
		if name == syncStatus || seen[name] {
			continue
		}
		v := msgp.AppendMapHeader(nil, 2)
		v = msgp.AppendString(v, "connected")
		v = msgp.AppendBool(v, false)
		v = msgp.AppendString(v, "last_seen")
		v = msgp.AppendInt64(v, e.gone[name].Unix())
		e.setStatus(name, v)
	}
}

// writeSyncStats records the sync counters st. Writing them is itself a
// change sent to every peer, so they are written only when something else
// changed (syncDirty) or a counter that matters moved, never just because
// the last write moved them.
func (e *Engine) writeSyncStats(st replica.Stats) {
	v := msgp.AppendMapHeader(nil, 8)
	for _, kv := range []struct {
		k string
		v int64
	}{{"updates_sent", int64(st.Sent[wire.KindUpdate])}, {"relayed", int64(st.Relayed)}, {"applied", int64(st.Applied)},
		{"lost", int64(st.Lost)}, {"duplicates", int64(st.Duplicate)}, {"malformed", int64(st.Malformed)},
		{"missing_requests", int64(st.MissingReqs)}, {"inbox_dropped", e.inboxDropped.Load()}} {
		v = msgp.AppendString(v, kv.k)
		v = msgp.AppendInt64(v, kv.v)
	}
	e.setStatus(syncStatus, v)
}

func (e *Engine) setStatus(name string, v []byte) {
	if e.status[name] == string(v) {
		return
	}
	e.status[name] = string(v)
	p := StatusPath(e.name, name)
	if name == syncStatus {
		p = SyncStatusPath(e.name)
	}
	if _, _, err := e.r.Set(p, v, tree.Cond{Idem: true}); err != nil {
		e.log.Warn("could not write a status entry", "path", p.String(), "error", err)
	}
}
