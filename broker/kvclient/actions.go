package kvclient

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// EnumNode lists the ticks of node that are on the chains of the server's
// current entries (enum_node), in ascending order on an edgekv server;
// with current only those of entries node heads. max > 0 bounds the count.
func (c *Client) EnumNode(ctx context.Context, node string, max int, current bool) ([]uint64, error) {
	r, err := c.call(ctx, 4, func(b []byte) []byte {
		b = msgp.AppendString(appendPair(b, "node"), node)
		b = msgp.AppendInt(appendPair(b, "max"), max)
		b = msgp.AppendBool(appendPair(b, "current"), current)
		return msgp.AppendString(appendPair(b, "action"), "enum_node")
	})
	if err != nil {
		return nil, err
	}
	n, rest, err := msgp.ReadArrayHeaderBytes(r.val("result"))
	if err != nil {
		return nil, fmt.Errorf("kvclient: enum_node result: %w", err)
	}
	ticks := make([]uint64, 0, min(n, 1<<16))
	for range n {
		var t uint64
		if t, rest, err = msgp.ReadUint64Bytes(rest); err != nil {
			return nil, fmt.Errorf("kvclient: enum_node result: %w", err)
		}
		ticks = append(ticks, t)
	}
	return ticks, nil
}

// Access is test_acl's answer.
type Access struct {
	// Allowed: the access is granted.
	Allowed bool
	// Letters are the matching ACL's letters, when the server sent them
	// (MoaT-KV does so only to connections whose ACL allows "a").
	Letters string
}

// TestACL asks whether this connection has access mode (one ACL letter;
// "": "x") to p (test_acl). acl names another ACL to test instead ("":
// the connection's own); edgekv servers have no ACLs yet and refuse it.
func (c *Client) TestACL(ctx context.Context, p tree.Path, mode, acl string) (Access, error) {
	n := uint32(2)
	if mode != "" {
		n++
	}
	if acl != "" {
		n++
	}
	r, err := c.call(ctx, n, func(b []byte) []byte {
		b = tree.AppendPath(appendPair(b, "path"), p)
		if mode != "" {
			b = msgp.AppendString(appendPair(b, "mode"), mode)
		}
		if acl != "" {
			b = msgp.AppendString(appendPair(b, "acl"), acl)
		}
		return msgp.AppendString(appendPair(b, "action"), "test_acl")
	})
	if err != nil {
		return Access{}, err
	}
	v := r.val("access")
	switch msgp.NextType(v) {
	case msgp.BoolType:
		ok, _, err := msgp.ReadBoolBytes(v)
		return Access{Allowed: ok}, err
	case msgp.StrType:
		s, _, err := msgp.ReadStringBytes(v)
		return Access{Allowed: true, Letters: s}, err
	}
	return Access{}, errors.New("kvclient: test_acl reply without access")
}

// Root moves this connection's root to p, relative to its current root
// (the root action; it cannot be undone): every later path this client
// sends or receives is relative to it. It returns the new root entry.
func (c *Client) Root(ctx context.Context, p tree.Path) (Entry, error) {
	r, err := c.call(ctx, 2, func(b []byte) []byte {
		b = tree.AppendPath(appendPair(b, "path"), p)
		return msgp.AppendString(appendPair(b, "action"), "root")
	})
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Value: r.val("value")}
	e.Tock, _ = r.uint("tock")
	e.Chain, err = r.chain()
	return e, err
}

// MsgSend publishes data (one msgpack value) on the server's message bus
// (msg_send). topic holds the MQTT topic levels; a first level starting
// with ':' is relative to the server's bus root.
func (c *Client) MsgSend(ctx context.Context, topic []string, data []byte) error {
	if data == nil {
		return errors.New("kvclient: MsgSend: no data (msgpack nil is 0xc0)")
	}
	return c.msgSend(ctx, topic, "data", data)
}

// MsgSendRaw publishes raw bytes on the server's message bus (msg_send
// with raw).
func (c *Client) MsgSendRaw(ctx context.Context, topic []string, raw []byte) error {
	return c.msgSend(ctx, topic, "raw", msgp.AppendBytes(nil, raw))
}

func (c *Client) msgSend(ctx context.Context, topic []string, key string, value []byte) error {
	_, err := c.call(ctx, 3, func(b []byte) []byte {
		b = appendTopic(appendPair(b, "topic"), topic)
		b = append(appendPair(b, key), value...)
		return msgp.AppendString(appendPair(b, "action"), "msg_send")
	})
	return err
}

func appendTopic(b []byte, topic []string) []byte {
	b = msgp.AppendArrayHeader(b, uint32(len(topic)))
	for _, l := range topic {
		b = msgp.AppendString(b, l)
	}
	return b
}

// Message is one message of a monitor: its topic levels and either Data
// (one msgpack value) or Raw (the payload, with Err saying why it did not
// decode unless raw payloads were asked for). The first Message of a
// monitor has only Started set: the server's monitor is in place, and
// messages published from then on reach it.
type Message struct {
	Topic   []string
	Data    []byte
	Raw     []byte
	Err     string
	Started bool
}

// MsgMonitor calls fn for every message published on the server's
// message bus on a topic matching filter (MQTT topic filter levels, '+'
// and '#' allowed) from now on, until ctx ends (ctx's error), fn fails
// (its error) or the server ends the monitor (the server's error: a
// monitor that falls behind is ended). With raw, payloads are not
// decoded.
func (c *Client) MsgMonitor(ctx context.Context, filter []string, raw bool, fn func(Message) error) error {
	s, err := c.openStream(3, func(b []byte) []byte {
		b = appendTopic(appendPair(b, "topic"), filter)
		b = msgp.AppendBool(appendPair(b, "raw"), raw)
		return msgp.AppendString(appendPair(b, "action"), "msg_monitor")
	}, true)
	if err != nil {
		return err
	}
	defer s.close()
	for {
		r, err := s.next(ctx)
		if err != nil {
			return err
		}
		_, isMsg := r.get("topic")
		if e := r.err(); e != nil && !isMsg {
			// (A message whose payload did not decode has an error key
			// too, beside its topic.)
			return e
		}
		switch r.str("state") {
		case "start":
			if err := fn(Message{Started: true}); err != nil {
				return err
			}
			continue
		case "end":
			return nil
		}
		m := Message{Data: r.val("data"), Err: r.str("error")}
		if v, ok := r.get("raw"); ok {
			if m.Raw, _, err = msgp.ReadBytesBytes(v, nil); err != nil {
				return fmt.Errorf("kvclient: msg_monitor raw: %w", err)
			}
		}
		n, rest, err := msgp.ReadArrayHeaderBytes(r.val("topic"))
		if err != nil {
			return fmt.Errorf("kvclient: msg_monitor topic: %w", err)
		}
		m.Topic = make([]string, 0, min(n, 256))
		for range n {
			var l string
			if l, rest, err = msgp.ReadStringBytes(rest); err != nil {
				return fmt.Errorf("kvclient: msg_monitor topic: %w", err)
			}
			m.Topic = append(m.Topic, l)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
}

// MsgMonitorSeq is MsgMonitor as an iterator: for m, err := range
// c.MsgMonitorSeq(…). Breaking out of the loop ends the monitor; a failure
// is yielded last.
func (c *Client) MsgMonitorSeq(ctx context.Context, filter []string, raw bool) iter.Seq2[Message, error] {
	return func(yield func(Message, error) bool) {
		stop := errors.New("stopped")
		err := c.MsgMonitor(ctx, filter, raw, func(m Message) error {
			if !yield(m, nil) {
				return stop
			}
			return nil
		})
		if err != nil && !errors.Is(err, stop) {
			yield(Message{}, err)
		}
	}
}

// Save asks the node to write a save file called name into its dump
// directory (the save action): with full, the whole tree with node state;
// without, only the entries. An existing file is an error (a conflict)
// unless replace is set.
func (c *Client) Save(ctx context.Context, name string, full, replace bool) error {
	_, err := c.call(ctx, 4, func(b []byte) []byte {
		b = msgp.AppendString(appendPair(b, "path"), name)
		b = msgp.AppendBool(appendPair(b, "full"), full)
		b = msgp.AppendBool(appendPair(b, "replace"), replace)
		return msgp.AppendString(appendPair(b, "action"), "save")
	})
	return err
}

// DeleteTree deletes every value at and below p (delete_tree; p must not
// be the root) and returns how many were deleted. Entries the node keeps
// for itself (its status entries) stay.
func (c *Client) DeleteTree(ctx context.Context, p tree.Path) (int, error) {
	r, err := c.call(ctx, 2, func(b []byte) []byte {
		b = tree.AppendPath(appendPair(b, "path"), p)
		return msgp.AppendString(appendPair(b, "action"), "delete_tree")
	})
	if err != nil {
		return 0, err
	}
	n, _ := r.uint("changed")
	return int(n), nil
}

// ChangeLog starts the node's change log in the file name of its dump
// directory (the `log` action): with fetch the whole tree first, then
// every change; a log already running closes once this one is live. An
// empty name stops logging.
func (c *Client) ChangeLog(ctx context.Context, name string, fetch bool) error {
	_, err := c.call(ctx, 3, func(b []byte) []byte {
		b = msgp.AppendString(appendPair(b, "path"), name)
		b = msgp.AppendBool(appendPair(b, "fetch"), fetch)
		return msgp.AppendString(appendPair(b, "action"), "log")
	})
	return err
}
