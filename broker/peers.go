package broker

import (
	"errors"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// peerTracker knows which connection, if any, is each peer's ready one
// (subscribed to its sync topic), and reports PeerUp/PeerDown to the
// SyncHandler in the order the state changed.
//
// A peer may reconnect before its old connection is noticed as gone, or
// take over its old session; only the current connection's end reports
// PeerDown. Events are queued under the lock and delivered without it by
// whichever goroutine finds the queue idle, so the handler never runs
// under our lock and still sees the events in order.
type peerTracker struct {
	handler SyncHandler
	mu      sync.Mutex
	current map[string]*mqtt.Client // peer → ready connection
	queue   []peerEvent
	busy    bool // some goroutine is delivering the queue
}

type peerEvent struct {
	peer string
	up   bool
}

func newPeerTracker(sh SyncHandler) *peerTracker {
	return &peerTracker{handler: sh, current: map[string]*mqtt.Client{}}
}

// up records cl as peer's ready connection.
func (t *peerTracker) up(peer string, cl *mqtt.Client) {
	t.mu.Lock()
	if t.current[peer] == cl {
		t.mu.Unlock()
		return
	}
	old := t.current[peer]
	t.current[peer] = cl
	t.queue = append(t.queue, peerEvent{peer, true})
	t.deliver()
	if old != nil {
		// One connection per peer: the newest wins (like a client-ID
		// takeover). The old one is closed, so that no connection is
		// left subscribed but forgotten; a genuine peer reconnects.
		old.Stop(errReplaced)
	}
}

var errReplaced = errors.New("broker: replaced by a newer connection of the same peer")

// down records that cl is no longer peer's ready connection; nothing
// happens if a newer connection has taken its place.
func (t *peerTracker) down(peer string, cl *mqtt.Client) {
	t.mu.Lock()
	if t.current[peer] != cl {
		t.mu.Unlock()
		return
	}
	delete(t.current, peer)
	t.queue = append(t.queue, peerEvent{peer, false})
	t.deliver()
}

// deliver is called with t.mu held and returns with it released.
func (t *peerTracker) deliver() {
	if t.busy {
		t.mu.Unlock()
		return
	}
	t.busy = true
	for len(t.queue) > 0 {
		ev := t.queue[0]
		t.queue = t.queue[1:]
		t.mu.Unlock()
		if ev.up {
			t.handler.PeerUp(ev.peer)
		} else {
			t.handler.PeerDown(ev.peer)
		}
		t.mu.Lock()
	}
	t.queue = nil
	t.busy = false
	t.mu.Unlock()
}

// isUp reports whether peer has a ready connection.
func (t *peerTracker) isUp(peer string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.current[peer] != nil
}
