package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/edgekv/edgekv/broker"
	"github.com/edgekv/edgekv/broker/kvproto"
	"github.com/edgekv/edgekv/tree"
)

// The optional kvproto interfaces behind enum_node (NodeLister) and
// msg_send/msg_monitor (Messenger).

// NodeTicks implements kvproto.NodeLister.
func (k kvTree) NodeTicks(ctx context.Context, node string, max int, current bool) (ticks []uint64, err error) {
	cerr := k.call(ctx, func() {
		nd := k.n.r.Tree().LookupNode(node)
		if nd == nil {
			err = fmt.Errorf("%w: node %q is not known here", tree.ErrNotFound, node)
			return
		}
		for t := range nd.Present().All {
			if current {
				if h, ok := nd.Entry(t).Chain().Head(); !ok || h.Node != node {
					continue
				}
			}
			ticks = append(ticks, t)
			if max > 0 && len(ticks) == max {
				return
			}
		}
	})
	if cerr != nil {
		return nil, cerr
	}
	return ticks, err
}

// BusRoot implements kvproto.Messenger: a msg_send/msg_monitor topic
// starting with ':' is relative to the sync prefix, the counterpart of
// MoaT-KV's server root.
func (k kvTree) BusRoot() string { return k.n.br.SyncPrefix() }

// Publish implements kvproto.Messenger.
func (k kvTree) Publish(_ context.Context, topic string, payload []byte) error {
	err := k.n.br.PublishMessage(topic, payload)
	switch {
	case errors.Is(err, broker.ErrReservedTopic):
		return fmt.Errorf("%w: %v", kvproto.ErrReservedTopic, err)
	case errors.Is(err, broker.ErrTopic):
		return fmt.Errorf("%w: %v", tree.ErrMalformed, err)
	}
	return err
}

// monitorQueue bounds the bus messages a msg_monitor may fall behind by
// before it ends with an error (the bus and other clients are unaffected).
// A variable only so that a test can make it small.
var monitorQueue = 1000

// errMonitorOverflow ends a msg_monitor that fell too far behind.
var errMonitorOverflow = fmt.Errorf("%w: monitor fell too many messages behind; monitor ended", tree.ErrInternal)

// Monitor implements kvproto.Messenger with a monitor of the node's
// broker: its messages wait in a queue of monitorQueue; when that
// overflows (the client reads too slowly) the monitor delivers what was
// queued and ends with errMonitorOverflow.
func (k kvTree) Monitor(ctx context.Context, filter string, ready func(), deliver func(kvproto.BusMessage) error) error {
	m, err := k.n.br.Monitor(filter, monitorQueue)
	if err != nil {
		if errors.Is(err, broker.ErrTopic) {
			return fmt.Errorf("%w: %v", tree.ErrMalformed, err)
		}
		return err
	}
	defer m.Close()
	ready()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-k.n.stopped:
			return nil
		case msg, ok := <-m.Messages():
			if !ok {
				return errMonitorOverflow
			}
			if err := deliver(kvproto.BusMessage{Topic: msg.Topic, Payload: msg.Payload}); err != nil {
				return err
			}
		}
	}
}
