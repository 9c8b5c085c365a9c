package edgekv

import (
	"context"
	"errors"
	"fmt"

	"github.com/edgekv/edgekv/broker"
	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
	"github.com/edgekv/edgekv/tree/wire"
)

// brokerTree is the broker's Tree: an MQTT client's write is a write of the
// engine, with no condition.
type brokerTree struct{ e *node.Engine }

func (t brokerTree) Write(ctx context.Context, p tree.Path, value []byte) error {
	var err error
	if value == nil {
		_, err = t.e.Delete(ctx, p, node.Cond{})
	} else {
		_, err = t.e.Set(ctx, p, value, node.Cond{})
	}
	return err
}

// WriteNoWait queues a QoS 0 publish's write (broker.NoWaitWriter).
func (t brokerTree) WriteNoWait(ctx context.Context, p tree.Path, value []byte) error {
	return t.e.WriteNoWait(ctx, p, value)
}

// Entries serves the retained messages of KV topics from the engine: its
// cursor runs on the engine's goroutine, in order with Node.Changed.
func (t brokerTree) Entries(p tree.Path, depth int) broker.EntryCursor {
	return &entryCursor{c: t.e.Cursor(p, depth)}
}

type entryCursor struct {
	c   *node.Cursor
	buf []broker.Entry
}

func (c *entryCursor) Next(ctx context.Context, fn func([]broker.Entry)) (bool, error) {
	return c.c.Next(ctx, func(items []node.Item) {
		c.buf = c.buf[:0]
		for _, it := range items {
			h, _ := it.Entry.Chain.Head()
			c.buf = append(c.buf, broker.Entry{Path: it.Path, Value: it.Entry.Value, Node: h.Node, Tick: h.Tick, Tock: it.Entry.Tock})
		}
		fn(c.buf)
		clear(c.buf)
	})
}

// peerHandler is the broker's SyncHandler: a peer that dialled this node is
// the engine's link "in:P". Its methods never block.
type peerHandler struct{ n *Node }

func (h peerHandler) sender(peer string) node.Sender {
	return func(k wire.Kind, data []byte) error { return h.n.br.SendToPeer(peer, k, data) }
}

func (h peerHandler) PeerUp(peer string)   { h.n.eng.LinkUp("in:"+peer, h.sender(peer)) }
func (h peerHandler) PeerDown(peer string) { h.n.eng.LinkDown("in:" + peer) }
func (h peerHandler) Receive(peer string, kind wire.Kind, data []byte) {
	h.n.eng.Receive("in:"+peer, h.sender(peer), kind, data)
}

// linkHandler is a PeerLink's LinkEvents: a link this node dialled is the
// engine's link "out:P" (to a peer) or "hub:H" (to a hub).
type linkHandler struct {
	n   *Node
	hub bool
}

func (h linkHandler) name(link string) string {
	if h.hub {
		return "hub:" + link
	}
	return "out:" + link
}

func (h linkHandler) sender(link string) node.Sender {
	for _, l := range h.n.links {
		if l.Name() == link {
			return l.Send
		}
	}
	return nil
}

func (h linkHandler) LinkUp(link string)   { h.n.eng.LinkUp(h.name(link), h.sender(link)) }
func (h linkHandler) LinkDown(link string) { h.n.eng.LinkDown(h.name(link)) }
func (h linkHandler) LinkReceive(link string, kind wire.Kind, data []byte) {
	h.n.eng.Receive(h.name(link), h.sender(link), kind, data)
}

// errStopped is what a watch or monitor ends with when the node stops.
var errStopped = fmt.Errorf("%w: the node is stopping", tree.ErrUnavailable)

// isStopped reports whether err says that the engine stopped.
func isStopped(err error) bool { return errors.Is(err, tree.ErrUnavailable) }
