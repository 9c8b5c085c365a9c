package kvclient

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net"
	"sync"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/broker/kvproto"
	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// Errors.
var (
	// ErrClosed: the connection is gone.
	ErrClosed = errors.New("kvclient: connection closed")
)

// ServerError is an error reply: the server's text and, from edgekv
// servers, a kind ("not found", "conflict", "invalid", …).
type ServerError struct {
	Msg  string
	Kind string
}

func (e *ServerError) Error() string {
	if e.Kind != "" {
		return fmt.Sprintf("server: %s (%s)", e.Msg, e.Kind)
	}
	return "server: " + e.Msg
}

// Is lets errors.Is match tree.ErrNotFound and tree.ErrConflict by kind.
func (e *ServerError) Is(target error) bool {
	switch target {
	case tree.ErrNotFound:
		return e.Kind == tree.KindNotFound.String()
	case tree.ErrConflict:
		return e.Kind == tree.KindConflict.String()
	}
	return false
}

// Hello is the server's greeting.
type Hello struct {
	Node       string
	Tick, Tock uint64
	QLen       uint64
	// Auth is the server's auth list, nil if it announced none (no login:
	// the connection acts as super-root). A first element "" stands for
	// MoaT-KV's None: login is not required.
	Auth []string
}

// Client is one connection to a server.
type Client struct {
	conn  net.Conn
	hello Hello
	qlen  uint64 // the window this client announced (0: none)

	w writer // sends requests, combining concurrent ones

	mu      sync.Mutex
	seq     uint64
	pending map[uint64]chan reply
	err     error // set when the connection ended
	done    chan struct{}
}

// reply is a reply map's pairs in the order sent, each value its raw
// msgpack (replies have a handful of keys: a slice beats a map).
type reply []field

type field struct {
	k string
	v []byte
}

// Dial connects to addr (host:port) over plain TCP and reads the
// greeting; ctx bounds the connection set-up (10 s without a deadline).
// DialWith connects with TLS or another timeout.
func Dial(ctx context.Context, addr string) (*Client, error) {
	return DialWith(ctx, addr, DialOptions{})
}

// newClient reads the greeting on a new connection, answers it and starts
// the read loop; the set-up must end by deadline. It closes conn on error.
func newClient(conn net.Conn, addr string, deadline time.Time) (*Client, error) {
	conn.SetDeadline(deadline)
	rd := kvproto.NewReader(conn, 0)
	msg, err := rd.Next()
	if err != nil {
		conn.Close()
		return nil, greetingError(conn, addr, err)
	}
	r, err := parseReply(msg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("kvclient: %s: greeting: %w", addr, err)
	}
	if e := r.err(); e != nil {
		conn.Close()
		return nil, e
	}
	c := &Client{conn: conn, w: writer{conn: conn}, pending: make(map[uint64]chan reply), done: make(chan struct{})}
	c.hello.Node = r.str("node")
	c.hello.Tick, _ = r.uint("tick")
	c.hello.Tock, _ = r.uint("tock")
	c.hello.QLen, _ = r.uint("qlen")
	if c.hello.Auth, err = r.auth(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("kvclient: %s: greeting: %w", addr, err)
	}
	if c.hello.QLen > 0 {
		ans := msgp.AppendMapHeader(nil, 2)
		ans = msgp.AppendString(ans, "seq")
		ans = msgp.AppendUint64(ans, 0)
		ans = msgp.AppendString(ans, "qlen")
		c.qlen = min(c.hello.QLen, 99)
		ans = msgp.AppendUint64(ans, c.qlen)
		if _, err := conn.Write(ans); err != nil {
			conn.Close()
			return nil, fmt.Errorf("kvclient: %s: %w", addr, err)
		}
	}
	conn.SetDeadline(time.Time{})
	go c.readLoop(rd)
	return c, nil
}

// Hello returns the server's greeting.
func (c *Client) Hello() Hello { return c.hello }

// Close ends the connection.
func (c *Client) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}

func (c *Client) readLoop(rd *kvproto.Reader) {
	defer close(c.done)
	var err error
	for {
		var msg []byte
		if msg, err = rd.Next(); err != nil {
			break
		}
		var r reply
		if r, err = parseReply(msg); err != nil {
			break
		}
		seq, ok := r.uint("seq")
		if !ok {
			if e := r.err(); e != nil {
				err = e
			} else {
				err = errors.New("kvclient: a reply without seq")
			}
			break
		}
		c.mu.Lock()
		ch := c.pending[seq]
		c.mu.Unlock()
		if ch == nil {
			continue // a stream we stopped listening to
		}
		ch <- r // streams have a deep buffer; a slow reader slows the connection
	}
	c.mu.Lock()
	c.err = fmt.Errorf("%w: %v", ErrClosed, err)
	for seq, ch := range c.pending {
		close(ch)
		delete(c.pending, seq)
	}
	c.mu.Unlock()
}

// start sends a request built by build (which appends the map's pairs;
// n counts them, without seq) and returns its seq and reply channel.
func (c *Client) start(n uint32, build func([]byte) []byte, depth int) (uint64, chan reply, error) {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, nil, notSentError{err} // nothing of it was written
	}
	c.seq++
	seq := c.seq
	ch := make(chan reply, depth)
	c.pending[seq] = ch
	crowd := len(c.pending) > 1
	c.mu.Unlock()
	b := msgp.AppendMapHeader(make([]byte, 0, 128), n+1) // most requests fit
	b = build(b)
	b = msgp.AppendString(b, "seq")
	b = msgp.AppendUint64(b, seq)
	if err := c.w.send(b, crowd); err != nil {
		c.finish(seq)
		return 0, nil, fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return seq, ch, nil
}

// ack sends {seq, state: ack, ack: wseq} for a stream.
func (c *Client) ack(seq, wseq uint64) {
	b := msgp.AppendMapHeader(nil, 3)
	b = msgp.AppendUint64(appendPair(b, "seq"), seq)
	b = msgp.AppendString(appendPair(b, "state"), "ack")
	b = msgp.AppendUint64(appendPair(b, "ack"), wseq)
	c.w.send(b, true)
}

func (c *Client) finish(seq uint64) {
	c.mu.Lock()
	delete(c.pending, seq)
	c.mu.Unlock()
}

// call sends a single-reply request and waits for the reply.
func (c *Client) call(ctx context.Context, n uint32, build func([]byte) []byte) (reply, error) {
	seq, ch, err := c.start(n, build, 1)
	if err != nil {
		return nil, err
	}
	defer c.finish(seq)
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, c.closedErr()
		}
		if e := r.err(); e != nil {
			return r, e
		}
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Client) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return ErrClosed
}

func appendPair(b []byte, k string) []byte { return msgp.AppendString(b, k) }

// Entry is an entry as get_value returns it.
type Entry struct {
	Value []byte // raw msgpack; nil: no value
	Chain tree.Chain
	Tock  uint64
}

// Get reads the entry at p with up to nchain chain links. found is false
// when the entry holds no value.
func (c *Client) Get(ctx context.Context, p tree.Path, nchain int) (e Entry, found bool, err error) {
	r, err := c.call(ctx, 3, func(b []byte) []byte {
		b = tree.AppendPath(appendPair(b, "path"), p)
		b = msgp.AppendInt(appendPair(b, "nchain"), nchain)
		return msgp.AppendString(appendPair(b, "action"), "get_value")
	})
	if err != nil {
		return e, false, err
	}
	e.Value = r.val("value")
	e.Tock, _ = r.uint("tock")
	e.Chain, err = r.chain()
	return e, e.Value != nil, err
}

// WriteOpts are the conditions of a write.
type WriteOpts struct {
	// MustNotExist: fail with a conflict if the entry holds a value.
	MustNotExist bool
	// Head: fail with a conflict unless the entry's chain head is this.
	Head *tree.Link
	// Idem: writing the stored value changes nothing.
	Idem bool
}

// Result is what a write returns.
type Result struct {
	Changed bool
	Prev    []byte // the old value (raw msgpack), when the server sent it
	Chain   tree.Chain
	Tock    uint64
}

// Set writes value (one msgpack value) at p.
func (c *Client) Set(ctx context.Context, p tree.Path, value []byte, o WriteOpts) (Result, error) {
	return c.write(ctx, "set_value", p, value, o)
}

// Delete removes the value at p.
func (c *Client) Delete(ctx context.Context, p tree.Path, o WriteOpts) (Result, error) {
	return c.write(ctx, "delete_value", p, nil, o)
}

func (c *Client) write(ctx context.Context, action string, p tree.Path, value []byte, o WriteOpts) (Result, error) {
	n := uint32(3)
	if value != nil {
		n++
	}
	if o.MustNotExist || o.Head != nil {
		n++
	}
	if o.Idem {
		n++
	}
	r, err := c.call(ctx, n, func(b []byte) []byte {
		b = tree.AppendPath(appendPair(b, "path"), p)
		if value != nil {
			b = append(appendPair(b, "value"), value...)
		}
		switch {
		case o.MustNotExist:
			b = msgp.AppendNil(appendPair(b, "chain"))
		case o.Head != nil:
			b = kvproto.AppendChain(appendPair(b, "chain"), tree.Chain{*o.Head}, 1)
		}
		if o.Idem {
			b = msgp.AppendBool(appendPair(b, "idem"), true)
		}
		b = msgp.AppendInt(appendPair(b, "nchain"), 3)
		return msgp.AppendString(appendPair(b, "action"), action)
	})
	if err != nil {
		return Result{}, err
	}
	res := Result{Prev: r.val("prev")}
	res.Changed = r.bool("changed")
	res.Tock, _ = r.uint("tock")
	res.Chain, err = r.chain()
	return res, err
}

// Item is one entry of a tree walk or watch, with its full path. UpToDate
// marks the end of a watch's initial state.
type Item struct {
	Path     tree.Path
	Value    []byte
	Chain    tree.Chain
	Tock     uint64
	UpToDate bool
}

// Tree calls fn for every entry at or below p (get_tree), in order.
func (c *Client) Tree(ctx context.Context, p tree.Path, fn func(Item) error) error {
	return c.stream(ctx, p, "get_tree", false, fn)
}

// TreeEmpty is Tree with MoaT-KV's `empty` flag: the entries that hold no
// value come too (Item.Value nil: inner entries of paths, deletions not
// yet purged).
func (c *Client) TreeEmpty(ctx context.Context, p tree.Path, fn func(Item) error) error {
	return c.streamOpts(ctx, p, "get_tree", false, true, fn)
}

// Watch calls fn for the current entries below p (if fetch), an UpToDate
// item (if fetch), then every change, until ctx ends or fn fails.
func (c *Client) Watch(ctx context.Context, p tree.Path, fetch bool, fn func(Item) error) error {
	return c.stream(ctx, p, "watch", fetch, fn)
}

func (c *Client) stream(ctx context.Context, p tree.Path, action string, fetch bool, fn func(Item) error) error {
	return c.streamOpts(ctx, p, action, fetch, false, fn)
}

func (c *Client) streamOpts(ctx context.Context, p tree.Path, action string, fetch, empty bool, fn func(Item) error) error {
	pairs := uint32(4)
	if empty {
		pairs++
	}
	s, err := c.openStream(pairs, func(b []byte) []byte {
		b = tree.AppendPath(appendPair(b, "path"), p)
		b = msgp.AppendBool(appendPair(b, "fetch"), fetch)
		b = msgp.AppendInt(appendPair(b, "nchain"), 3)
		if empty {
			b = msgp.AppendBool(appendPair(b, "empty"), true)
		}
		return msgp.AppendString(appendPair(b, "action"), action)
	}, action == "watch")
	if err != nil {
		return err
	}
	defer s.close()
	var last tree.Path // relative path of the previous item
	for {
		r, err := s.next(ctx)
		if err != nil {
			return err
		}
		if e := r.err(); e != nil {
			return e
		}
		switch r.str("state") {
		case "start":
			continue
		case "end":
			return nil
		case "uptodate":
			if err := fn(Item{UpToDate: true}); err != nil {
				return err
			}
			continue
		}
		rel, _, err := tree.ReadPath(r.val("path"))
		if err != nil {
			return fmt.Errorf("kvclient: %s item: %w", action, err)
		}
		depth, _ := r.uint("depth")
		if int(depth) > len(last) {
			return fmt.Errorf("kvclient: %s item: depth %d beyond the previous path %s", action, depth, last)
		}
		full := append(last[:depth:depth], rel...)
		last = full
		it := Item{Path: p.Append(full...), Value: r.val("value")}
		it.Tock, _ = r.uint("tock")
		if it.Chain, err = r.chain(); err != nil {
			return err
		}
		if err := fn(it); err != nil {
			return err
		}
	}
}

// State is a node's state as get_state reports it.
type State struct {
	Node    string
	Tock    uint64
	Ticks   map[string]uint64
	Missing map[string]tree.RangeSet
	Known   map[string]tree.RangeSet // superseded ticks
	Skipped map[string]tree.RangeSet // ticks their nodes declared skipped
}

// State asks the node for its name, tock, every node's tick and the ticks
// it is missing, has superseded, or that were declared skipped.
func (c *Client) State(ctx context.Context) (State, error) {
	r, err := c.call(ctx, 5, func(b []byte) []byte {
		b = msgp.AppendBool(appendPair(b, "nodes"), true)
		b = msgp.AppendBool(appendPair(b, "missing"), true)
		b = msgp.AppendBool(appendPair(b, "known"), true)
		b = msgp.AppendBool(appendPair(b, "skipped"), true)
		return msgp.AppendString(appendPair(b, "action"), "get_state")
	})
	if err != nil {
		return State{}, err
	}
	st := State{Node: r.str("node"), Ticks: map[string]uint64{}, Missing: map[string]tree.RangeSet{}, Known: map[string]tree.RangeSet{}, Skipped: map[string]tree.RangeSet{}}
	st.Tock, _ = r.uint("tock")
	if v, ok := r.get("nodes"); ok {
		n, rest, err := msgp.ReadMapHeaderBytes(v)
		for i := uint32(0); err == nil && i < n; i++ {
			var name string
			var tick uint64
			if name, rest, err = msgp.ReadStringBytes(rest); err == nil {
				tick, rest, err = msgp.ReadUint64Bytes(rest)
				st.Ticks[name] = tick
			}
		}
		if err != nil {
			return st, fmt.Errorf("kvclient: get_state nodes: %w", err)
		}
	}
	for key, dst := range map[string]map[string]tree.RangeSet{"missing": st.Missing, "known": st.Known, "skipped": st.Skipped} {
		v, ok := r.get(key)
		if !ok {
			continue
		}
		n, rest, err := msgp.ReadMapHeaderBytes(v)
		for i := uint32(0); err == nil && i < n; i++ {
			var name string
			var rs tree.RangeSet
			if name, rest, err = msgp.ReadStringBytes(rest); err == nil {
				rs, rest, err = wire.ReadRangeSet(rest)
				dst[name] = rs
			}
		}
		if err != nil {
			return st, fmt.Errorf("kvclient: get_state %s: %w", key, err)
		}
	}
	return st, nil
}

// Import sends an event as it is (MoaT-KV's update action): the node
// applies it with its own chain and tock, as if a peer had sent it. It
// reports whether the event was new there.
func (c *Client) Import(ctx context.Context, ev tree.Event) (bool, error) {
	entry := wire.AppendEntry(nil, ev) // {value?, chain, tock, path}
	n, body, err := msgp.ReadMapHeaderBytes(entry)
	if err != nil {
		return false, err
	}
	r, err := c.call(ctx, n+1, func(b []byte) []byte {
		b = append(b, body...)
		return msgp.AppendString(appendPair(b, "action"), "update")
	})
	if err != nil {
		return false, err
	}
	return r.bool("changed"), nil
}

// ImportInfo sends node state (MoaT-KV's fake_info action): ticks and
// superseded ("known") tick sets per node.
func (c *Client) ImportInfo(ctx context.Context, from string, ticks map[string]uint64, known map[string]tree.RangeSet) error {
	info := wire.AppendInfo(nil, wire.Info{Node: from, Ticks: ticks, Known: known})
	n, body, err := msgp.ReadMapHeaderBytes(info)
	if err != nil {
		return err
	}
	_, err = c.call(ctx, n+1, func(b []byte) []byte {
		b = append(b, body...)
		return msgp.AppendString(appendPair(b, "action"), "fake_info")
	})
	return err
}

// WatchSeq is Watch as an iterator: for it, err := range c.WatchSeq(…).
// Breaking out of the loop ends the watch; a failure is yielded last.
func (c *Client) WatchSeq(ctx context.Context, p tree.Path, fetch bool) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		stop := errors.New("stopped")
		err := c.Watch(ctx, p, fetch, func(it Item) error {
			if !yield(it, nil) {
				return stop
			}
			return nil
		})
		if err != nil && !errors.Is(err, stop) {
			yield(Item{}, err)
		}
	}
}
