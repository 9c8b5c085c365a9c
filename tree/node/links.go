package node

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgekv/edgekv/tree/replica"
	"github.com/edgekv/edgekv/tree/wire"
)

// Sender sends one sync message on a link. It must not block for long (a
// link queues and drops rather than waits); an error means the message was
// not sent.
type Sender func(kind wire.Kind, data []byte) error

// LinkUp reports that link name can carry sync messages through send. It
// never blocks. On a link that is up already it does the handshake again.
func (e *Engine) LinkUp(name string, send Sender) {
	e.in.push(inItem{op: opUp, name: name, send: send})
}

// LinkDown reports that link name is gone. It never blocks.
func (e *Engine) LinkDown(name string) {
	e.in.push(inItem{op: opDown, name: name})
}

// Receive hands over one sync message that arrived on link name (data
// belongs to the engine from now on); send is how to answer on that link,
// used if the message overtook LinkUp. It never blocks: when the inbox is
// full the message is dropped and counted, and the engine later sends its
// digest on the link so that the peer sends again what this node lacks.
func (e *Engine) Receive(name string, send Sender, kind wire.Kind, data []byte) {
	if !e.in.push(inItem{op: opMsg, name: name, send: send, kind: kind, data: data}) {
		e.inboxDropped.Add(1)
	}
}

type inOp uint8

const (
	opUp inOp = iota
	opDown
	opMsg
)

type inItem struct {
	op   inOp
	name string
	send Sender
	kind wire.Kind
	data []byte
}

// inbox queues link events and messages for the loop, in arrival order.
// Events always fit; messages up to maxMsgs and maxBytes.
type inbox struct {
	mu       sync.Mutex
	items    []inItem
	msgs     int
	bytes    int
	maxMsgs  int
	maxBytes int
	dropped  map[string]int // messages dropped per link since the last take
	wake     chan struct{}  // has a token when items is not empty
}

func newInbox(maxMsgs, maxBytes int) *inbox {
	return &inbox{maxMsgs: maxMsgs, maxBytes: maxBytes, dropped: make(map[string]int), wake: make(chan struct{}, 1)}
}

// push queues it and reports whether it was taken (a message may not be).
func (b *inbox) push(it inItem) bool {
	b.mu.Lock()
	if it.op == opMsg {
		if b.msgs >= b.maxMsgs || b.bytes+len(it.data) > b.maxBytes {
			b.dropped[it.name]++
			b.mu.Unlock()
			b.signal() // the loop must see the drop even if nothing else comes
			return false
		}
		b.msgs++
		b.bytes += len(it.data)
	}
	b.items = append(b.items, it)
	b.mu.Unlock()
	b.signal()
	return true
}

func (b *inbox) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// takeAll returns everything queued and the drops since the last call.
func (b *inbox) takeAll() ([]inItem, map[string]int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	items := b.items
	b.items = nil
	b.msgs, b.bytes = 0, 0
	var dropped map[string]int
	if len(b.dropped) > 0 {
		dropped = b.dropped
		b.dropped = make(map[string]int)
	}
	return items, dropped
}

// drainInbox handles every queued link event and message, then asks the
// peers of links that lost messages for what this node lacks.
func (e *Engine) drainInbox() {
	items, dropped := e.in.takeAll()
	for _, it := range items {
		switch it.op {
		case opUp:
			e.linkUp(it.name, it.send, false)
		case opDown:
			e.linkDown(it.name)
		case opMsg:
			e.receive(it)
		}
	}
	for _, name := range slices.Sorted(mapKeys(dropped)) {
		l := e.links[name]
		if l != nil {
			l.dropped += dropped[name]
		}
		if l != nil && l.id != 0 {
			e.r.SendDigest(l.id)
		}
		e.log.Warn("sync messages dropped: the engine's inbox was full", "peer", name, "dropped", dropped[name])
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// link is one sync link as the engine knows it.
type link struct {
	name     string
	peer     string // the peer's node name for "in:P" and "out:P"; "" for a hub
	hub      bool   // "hub:H": a shared bus, where MoaT-KV servers may listen
	send     Sender
	id       replica.LinkID // 0 while not attached to the replica (idle)
	since    time.Time
	lastSeen time.Time
	dropped  int // messages dropped from the inbox, in all
}

// peerOf returns P for the link names "in:P" and "out:P".
func peerOf(name string) string {
	if p, ok := strings.CutPrefix(name, "in:"); ok {
		return p
	}
	if p, ok := strings.CutPrefix(name, "out:"); ok {
		return p
	}
	return ""
}

// preferred is, of the two links a pair of nodes may have, the one dialled
// by the node whose name sorts first: the same connection seen from both.
func (e *Engine) preferred(peer string) string {
	if e.name < peer {
		return "out:" + peer
	}
	return "in:" + peer
}

// linkUp brings link name up (implicit: because a message arrived on it).
func (e *Engine) linkUp(name string, send Sender, implicit bool) {
	l := e.links[name]
	if l != nil {
		if send != nil {
			l.send = send
		}
		if !implicit && l.id != 0 {
			e.r.Handshake(l.id) // a new connection under the same link
		}
		return
	}
	now := e.cfg.Now()
	l = &link{name: name, peer: peerOf(name), hub: strings.HasPrefix(name, "hub:"), send: send, since: now, lastSeen: now}
	e.links[name] = l
	delete(e.gone, name)
	e.linkUps.Add(1)
	e.log.Info("sync link up", "peer", name)
	e.arrange(l)
}

// linkDown takes link name down.
func (e *Engine) linkDown(name string) {
	l := e.links[name]
	if l == nil {
		return
	}
	e.detach(l)
	delete(e.links, name)
	e.gone[name] = l.lastSeen
	e.log.Info("sync link down", "peer", name)
	if l.peer != "" {
		// The pair's other link, if up, takes over.
		for _, other := range []string{"in:" + l.peer, "out:" + l.peer} {
			if o := e.links[other]; o != nil && o.id == 0 {
				e.attach(o)
			}
		}
	}
}

// arrange attaches a new link to the replica, unless the pair already has
// a link and this is not the preferred one; if it is, it replaces the
// other.
func (e *Engine) arrange(l *link) {
	if l.peer == "" {
		e.attach(l)
		return
	}
	otherName := "out:" + l.peer
	if strings.HasPrefix(l.name, "out:") {
		otherName = "in:" + l.peer
	}
	o := e.links[otherName]
	switch {
	case o == nil || o.id == 0:
		e.attach(l)
	case l.name == e.preferred(l.peer):
		e.detach(o)
		e.attach(l)
		e.log.Info("two links to one peer: keeping one", "peer", l.peer, "kept", l.name, "idle", o.name)
	default:
		e.log.Info("two links to one peer: keeping one", "peer", l.peer, "kept", o.name, "idle", l.name)
	}
}

func (e *Engine) attach(l *link) {
	if l.id != 0 {
		return
	}
	e.nextID++
	l.id = e.nextID
	e.byID[l.id] = l
	if l.hub {
		e.r.LinkUpShared(l.id) // MoaT-KV servers may listen there
	} else {
		e.r.LinkUp(l.id)
	}
}

func (e *Engine) detach(l *link) {
	if l.id == 0 {
		return
	}
	e.r.LinkDown(l.id)
	delete(e.byID, l.id)
	l.id = 0
}

// receive steps one message; a message on a link that is not up brings it
// up, a message on an idle link is dropped (the pair's other link carries
// the sync).
func (e *Engine) receive(it inItem) {
	l := e.links[it.name]
	if l == nil {
		if it.send == nil {
			return
		}
		e.linkUp(it.name, it.send, true)
		l = e.links[it.name]
	}
	l.lastSeen = e.cfg.Now()
	if l.id == 0 {
		return
	}
	if err := e.r.Step(l.id, it.kind, it.data); err != nil {
		e.log.Warn("dropped a sync message", "peer", it.name, "kind", it.kind.String(), "bytes", len(it.data), "error", err)
	}
}

// sendAll sends messages in order, folding runs of updates to one link
// into batch messages (not on a hub: see unbatched).
func (e *Engine) sendAll(msgs []replica.Message) {
	if len(msgs) == 0 {
		return
	}
	pending := make(map[replica.LinkID][][]byte)
	var order []replica.LinkID
	flushLink := func(id replica.LinkID) {
		ups := pending[id]
		if len(ups) == 0 {
			return
		}
		delete(pending, id)
		if len(ups) == 1 {
			e.sendOn(id, wire.KindUpdate, ups[0])
		} else {
			e.sendOn(id, wire.KindBatch, wire.AppendBatch(nil, ups))
		}
	}
	for _, m := range msgs {
		if m.Kind == wire.KindUpdate && e.unbatched(m.Link) {
			flushLink(m.Link)
			e.sendOn(m.Link, m.Kind, m.Data)
			continue
		}
		if m.Kind == wire.KindUpdate {
			if _, ok := pending[m.Link]; !ok {
				order = append(order, m.Link)
			}
			pending[m.Link] = append(pending[m.Link], m.Data)
			if len(pending[m.Link]) >= e.cfg.MaxBatch {
				flushLink(m.Link)
			}
			continue
		}
		flushLink(m.Link) // keep the order with what was queued before
		e.sendOn(m.Link, m.Kind, m.Data)
	}
	for _, id := range order {
		flushLink(id)
	}
}

// unbatched reports whether updates to link id go one per message: on a
// hub, where MoaT-KV servers may listen (they read no batches), unless the
// node stays out of MoaT-KV's recovery.
func (e *Engine) unbatched(id replica.LinkID) bool {
	l := e.byID[id]
	return l != nil && !e.cfg.MoaT.Off && l.hub
}

func (e *Engine) sendOn(id replica.LinkID, kind wire.Kind, data []byte) {
	l := e.byID[id]
	if l == nil || l.send == nil {
		return
	}
	if err := l.send(kind, data); err != nil {
		e.log.Debug("send failed", "peer", l.name, "kind", kind.String(), "error", err)
	}
}
