package broker

import (
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// kvSubs knows whether anyone may subscribe to a KV topic, so that a
// change of the tree costs nothing on a node where nobody does (a relay
// between peers, a node whose clients use only the client protocol):
// mochi's subscriber lookup walks its topic index and allocates four maps
// for every publish. It errs only one way: it may answer "maybe" when
// nobody subscribes any more, and then mochi is asked; it never answers
// "nobody" while someone does. It counts the filters that can match a KV
// topic (kvRoot; a shared one by its topic part) per client object: those
// granted (OnSubscribed) and those a session brings along
// (OnSessionEstablished: a resumed or taken-over session's), until they
// are dropped (OnUnsubscribed) or the object's session ends (OnDisconnect
// with expiry, OnClientExpired, or a newer object of the same client ID
// establishing its session); and the monitors' inline subscriptions.
// Keying by object, not by client ID, keeps the end of a taken-over
// connection from dropping what its successor inherited.
type kvSubs struct {
	prefix string

	mu      sync.Mutex
	clients map[*mqtt.Client]map[string]bool // filters that can match KV
	byID    map[string]*mqtt.Client          // the newest object per client ID
	n       int                              // filters in clients, plus inline ones
}

func newKVSubs(prefix string) *kvSubs {
	return &kvSubs{prefix: prefix, clients: map[*mqtt.Client]map[string]bool{}, byID: map[string]*mqtt.Client{}}
}

// matchable reports whether filter can match a KV topic.
func (k *kvSubs) matchable(filter string) bool {
	if mqtt.IsSharedFilter(filter) { // $share/<group>/<filter>
		parts := strings.SplitN(filter, "/", 3)
		if len(parts) < 3 {
			return false
		}
		filter = parts[2]
	}
	_, _, ok := kvRoot(k.prefix, filter)
	return ok
}

// any reports whether someone may subscribe to a KV topic.
func (k *kvSubs) any() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.n > 0
}

// add counts filter for cl if it can match KV. k.mu is held.
func (k *kvSubs) add(cl *mqtt.Client, filter string) {
	if !k.matchable(filter) {
		return
	}
	fs := k.clients[cl]
	if fs == nil {
		fs = map[string]bool{}
		k.clients[cl] = fs
	}
	if !fs[filter] {
		fs[filter] = true
		k.n++
	}
}

// drop forgets every filter of cl. k.mu is held.
func (k *kvSubs) drop(cl *mqtt.Client) {
	k.n -= len(k.clients[cl])
	delete(k.clients, cl)
	if k.byID[cl.ID] == cl {
		delete(k.byID, cl.ID)
	}
}

// established counts the filters cl's session brings along and forgets
// an older object of the same client ID (its session was taken over or
// discarded).
func (k *kvSubs) established(cl *mqtt.Client) {
	subs := cl.State.Subscriptions.GetAll()
	k.mu.Lock()
	defer k.mu.Unlock()
	if old := k.byID[cl.ID]; old != nil && old != cl {
		k.drop(old)
	}
	k.byID[cl.ID] = cl
	for filter := range subs {
		k.add(cl, filter)
	}
}

// subscribed counts the filters of pk that were granted (codes).
func (k *kvSubs) subscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] < packets.ErrUnspecifiedError.Code {
			k.add(cl, f.Filter)
		}
	}
}

// unsubscribed forgets the filters of pk.
func (k *kvSubs) unsubscribed(cl *mqtt.Client, pk packets.Packet) {
	k.mu.Lock()
	defer k.mu.Unlock()
	fs := k.clients[cl]
	for _, f := range pk.Filters {
		if fs[f.Filter] {
			delete(fs, f.Filter)
			k.n--
		}
	}
}

// ended forgets every filter of a session that has ended.
func (k *kvSubs) ended(cl *mqtt.Client) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.drop(cl)
}

// inline counts a monitor's subscription (delta +1 or -1) if its filter
// can match a KV topic.
func (k *kvSubs) inline(filter string, delta int) {
	if !k.matchable(filter) {
		return
	}
	k.mu.Lock()
	k.n += delta
	k.mu.Unlock()
}
