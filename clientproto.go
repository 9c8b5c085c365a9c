package edgekv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/edgekv/edgekv/boards"
	"github.com/edgekv/edgekv/broker"
	"github.com/edgekv/edgekv/broker/kvproto"
	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
	"github.com/edgekv/edgekv/tree/wire"
)

// kvTree gives the MoaT-KV client-protocol server (broker/kvproto) the
// node: every call is one of the engine's local API, and writes are
// answered after the store has them, like MQTT writes.
type kvTree struct{ n *Node }

func (k kvTree) eng() *node.Engine { return k.n.eng }

func (k kvTree) Hello(ctx context.Context) (kvproto.Hello, error) {
	name, tick, tock, err := k.eng().Hello(ctx)
	return kvproto.Hello{Node: name, Tick: tick, Tock: tock}, err
}

func (k kvTree) Tock(ctx context.Context) (uint64, error) { return k.eng().Tock(ctx) }

// QuickWrites: a pipelining client's requests are answered on its
// connection's reader unless every write waits for an fsync (kvproto's
// QuickWriter).
func (k kvTree) QuickWrites() bool { return !k.eng().SyncsEachWrite() }

func (k kvTree) Get(ctx context.Context, p tree.Path) (kvproto.Entry, error) {
	en, err := k.eng().Get(ctx, p)
	return kvproto.Entry{Value: en.Value, Chain: en.Chain, Tock: en.Tock}, err
}

func cond(c kvproto.Cond) node.Cond {
	return node.Cond{Cond: tree.Cond{MustNotExist: c.MustNotExist, Head: c.Head, Idem: c.Idem}, Prev: c.Prev}
}

func result(r node.Result) kvproto.Result {
	return kvproto.Result{NoOp: r.NoOp, Prev: r.Prev, Chain: r.Chain, Tock: r.Tock}
}

func (k kvTree) Set(ctx context.Context, p tree.Path, value []byte, c kvproto.Cond) (kvproto.Result, error) {
	r, err := k.eng().Set(ctx, p, value, cond(c))
	return result(r), err
}

func (k kvTree) Delete(ctx context.Context, p tree.Path, c kvproto.Cond) (kvproto.Result, error) {
	r, err := k.eng().Delete(ctx, p, cond(c))
	return result(r), err
}

func watchItem(it node.Item) kvproto.WatchItem {
	return kvproto.WatchItem{Path: it.Path, Value: it.Entry.Value, Chain: it.Entry.Chain, Tock: it.Entry.Tock, UpToDate: it.UpToDate}
}

// Watch implements kvproto.Watcher.
func (k kvTree) Watch(ctx context.Context, p tree.Path, fetch bool, send func(kvproto.WatchItem) error) error {
	return k.eng().Watch(ctx, p, fetch, func(it node.Item) error { return send(watchItem(it)) })
}

// Subscribe implements kvproto.Subscriber: the connection's watches are
// served by one goroutine.
func (k kvTree) Subscribe(ctx context.Context, p tree.Path, fetch bool, notify func()) (kvproto.Subscription, error) {
	s, err := k.eng().Subscribe(ctx, p, fetch, notify)
	if err != nil {
		return nil, err
	}
	sub := &subscription{s: s}
	sub.itemFn = sub.item
	return sub, nil
}

// subscription adapts a node.Subscription to kvproto.Subscription. Its
// callback is made once: the pump drains a watch at every change, and a
// Drain should allocate nothing.
type subscription struct {
	s      *node.Subscription
	fn     func(kvproto.WatchItem) bool // the current Drain's
	itemFn func(node.Item) bool         // item, as a value
}

func (s *subscription) item(it node.Item) bool { return s.fn(watchItem(it)) }

func (s *subscription) Drain(fn func(kvproto.WatchItem) bool) error {
	s.fn = fn
	err := s.s.Drain(s.itemFn)
	s.fn = nil
	return err
}

func (s *subscription) Close() { s.s.Close() }

func (s *subscription) Tock() uint64 { return s.s.Tock() }

// Walk implements kvproto.Walker.
func (k kvTree) Walk(ctx context.Context, p tree.Path, fn func(kvproto.WatchItem) error) error {
	return k.eng().Walk(ctx, p, func(it node.Item) error { return fn(watchItem(it)) })
}

// WalkEmpty implements kvproto.EmptyWalker.
func (k kvTree) WalkEmpty(ctx context.Context, p tree.Path, fn func(kvproto.WatchItem) error) error {
	return k.eng().WalkEmpty(ctx, p, func(it node.Item) error { return fn(watchItem(it)) })
}

// State implements kvproto.Stater.
func (k kvTree) State(ctx context.Context) (kvproto.State, error) {
	st, err := k.eng().State(ctx)
	if err != nil {
		return kvproto.State{}, err
	}
	out := kvproto.State{Node: st.Node, Tock: st.Tock, Ticks: map[string]uint64{},
		Known: map[string]tree.RangeSet{}, Present: map[string]tree.RangeSet{},
		Deleted: map[string]tree.RangeSet{}, Missing: map[string]tree.RangeSet{},
		Skipped: map[string]tree.RangeSet{}}
	for name, ns := range st.Nodes {
		out.Ticks[name] = ns.Tick
		out.Known[name] = ns.Superseded
		out.Present[name] = ns.Present
		out.Deleted[name] = ns.Deleted
		out.Missing[name] = ns.Missing
		out.Skipped[name] = ns.Skipped
	}
	return out, nil
}

// Import implements kvproto.Importer.
func (k kvTree) Import(ctx context.Context, ev tree.Event) (bool, error) {
	return k.eng().Import(ctx, ev)
}

// ImportInfo implements kvproto.Importer.
func (k kvTree) ImportInfo(ctx context.Context, ticks map[string]uint64, known map[string]tree.RangeSet) error {
	return k.eng().ImportInfo(ctx, ticks, known)
}

// KillNode implements kvproto.NodeOps.
func (k kvTree) KillNode(ctx context.Context, name string) error {
	return k.eng().KillNode(ctx, name)
}

// CheckDeleted implements kvproto.NodeOps.
func (k kvTree) CheckDeleted(ctx context.Context, nodes map[string]tree.RangeSet) (map[string]tree.RangeSet, error) {
	return k.eng().CheckDeleted(ctx, nodes)
}

// ApplyClientInfo implements kvproto.NodeOps.
func (k kvTree) ApplyClientInfo(ctx context.Context, in wire.Info) error {
	return k.eng().ApplyClientInfo(ctx, in)
}

// SendInfo implements kvproto.NodeOps.
func (k kvTree) SendInfo(ctx context.Context, in wire.Info, fake bool) error {
	return k.eng().SendInfo(ctx, in, fake)
}

// ByTick implements kvproto.TickLookup.
func (k kvTree) ByTick(ctx context.Context, nodeName string, tick uint64) (tree.Path, kvproto.Entry, error) {
	p, en, err := k.eng().ByTick(ctx, nodeName, tick)
	return p, kvproto.Entry{Value: en.Value, Chain: en.Chain, Tock: en.Tock}, err
}

// NodeTicks implements kvproto.NodeLister.
func (k kvTree) NodeTicks(ctx context.Context, nodeName string, max int, current bool) ([]uint64, error) {
	return k.eng().NodeTicks(ctx, nodeName, max, current)
}

// Save implements kvproto.Saver: a MoaT-KV save file named name (a plain
// file name) in the dump directory (data.dumps: never among the store's
// files), written from one consistent state; full includes the meta tree.
// An existing file is kept unless replace is set; the file is fsynced
// before it takes its name, and a full disk is an error that leaves
// nothing behind.
func (k kvTree) Save(ctx context.Context, name string, full, replace bool) (int, error) {
	if err := dumpName("save", name); err != nil {
		return 0, err
	}
	b, n, err := k.eng().SaveFile(ctx, full)
	if err != nil {
		return 0, err
	}
	if err := writeDump(k.n.cfg.Data.DumpDir(), name, b, replace); err != nil {
		return 0, err
	}
	return n, nil
}

// writeDump writes b as dir/name: to a temporary file, fsynced, then
// renamed (replace) or linked (never over an existing file), and the
// directory fsynced.
func writeDump(dir, name string, b []byte, replace bool) (err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save: dump directory %s: %w", dir, err)
	}
	dst := filepath.Join(dir, name)
	if _, err := os.Lstat(dst); err == nil && !replace {
		return fmt.Errorf("%w: save: %s exists (send replace: true to overwrite it)", tree.ErrConflict, dst)
	}
	f, err := os.CreateTemp(dir, ".save-*.tmp")
	if err != nil {
		return diskError(dst, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return diskError(dst, err)
	}
	if replace {
		err = os.Rename(tmp, dst)
	} else if err = os.Link(tmp, dst); err == nil {
		os.Remove(tmp)
	} else if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: save: %s exists (send replace: true to overwrite it)", tree.ErrConflict, dst)
	}
	if err != nil {
		return diskError(dst, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		derr = d.Sync()
		d.Close()
		if derr != nil {
			return diskError(dst, derr)
		}
	}
	return nil
}

// diskError words a failed save: a full disk says so.
func diskError(dst string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: save %s: the disk is full: %v", tree.ErrUnavailable, dst, err)
	}
	return fmt.Errorf("save %s: %w", dst, err)
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

// MonitorQueue bounds the bus messages a msg_monitor may fall behind by
// before it ends with an error (the bus and other clients are
// unaffected). A variable only so that a test can make it small.
var MonitorQueue = 1000

// errMonitorOverflow ends a msg_monitor that fell too far behind.
var errMonitorOverflow = fmt.Errorf("%w: monitor fell too many messages behind; monitor ended", tree.ErrUnavailable)

// Monitor implements kvproto.Messenger with a monitor of the node's
// broker: its messages wait in a queue of MonitorQueue; when that overflows
// (the client reads too slowly) the monitor delivers what was queued and
// ends with an error.
func (k kvTree) Monitor(ctx context.Context, filter string, ready func(), deliver func(kvproto.BusMessage) error) error {
	m, err := k.n.br.Monitor(filter, MonitorQueue)
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
		case <-k.n.eng.Done():
			return errStopped
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

// clientListener is one client-protocol listener: plain (tls nil) or TLS.
type clientListener struct {
	name string // the config key, for errors: listen.client, listen.client_tls[0]
	addr string
	tls  *tls.Config
}

// clientTLSHandshakeTimeout bounds a client's TLS handshake: a client that
// connects and says nothing (such as a plain client waiting for the
// greeting) is dropped after it rather than held until shutdown.
const clientTLSHandshakeTimeout = 10 * time.Second

// clientTLSListeners loads the certificates of listen.client_tls. A file
// that cannot be read or does not hold a matching PEM certificate and key
// is an error naming the setting.
func clientTLSListeners(ls []boards.TLSListener) ([]clientListener, error) {
	var out []clientListener
	for i, l := range ls {
		name := fmt.Sprintf("listen.client_tls[%d]", i)
		cert, err := tls.LoadX509KeyPair(l.Cert, l.Key)
		if err != nil {
			return nil, fmt.Errorf("%s (%s): loading cert %s and key %s: %w", name, l.Addr, l.Cert, l.Key, err)
		}
		out = append(out, clientListener{name: name, addr: l.Addr, tls: &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
		}})
	}
	return out, nil
}

// listenClients opens every client-protocol listener; on error none stays
// open.
func (n *Node) listenClients() ([]net.Listener, error) {
	var lns []net.Listener
	var addrs []net.Addr
	for _, c := range n.client {
		ln, err := net.Listen("tcp", c.addr)
		if err != nil {
			for _, o := range lns {
				o.Close()
			}
			return nil, fmt.Errorf("client protocol listener %s %s: %w", c.name, c.addr, err)
		}
		addrs = append(addrs, ln.Addr())
		if c.tls != nil {
			ln = tlsListener{Listener: ln, cfg: c.tls}
		}
		lns = append(lns, ln)
		n.log.Info("client protocol listening", "addr", ln.Addr().String(), "tls", c.tls != nil)
	}
	n.mu.Lock()
	n.addrs = addrs
	n.mu.Unlock()
	return lns, nil
}

// serveClients serves every listener until ctx is done, then closes them
// and waits for their connections to end.
func (n *Node) serveClients(ctx context.Context, lns []net.Listener) error {
	srv := &kvproto.Server{Tree: kvTree{n}, Logger: n.log,
		MaxConns: n.cfg.Limits.ClientConnections, MaxMessage: int(n.cfg.Limits.ClientMessage), Budget: n.recv}
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.accept(ctx, srv, ln)
		}()
	}
	wg.Wait()
	return nil
}

// accept serves the connections of one listener until ctx is done, then
// waits for them to end.
func (n *Node) accept(ctx context.Context, srv *kvproto.Server, ln net.Listener) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	var pause time.Duration // after a failed accept (out of file descriptors, …)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			n.log.Warn("client protocol: accept failed", "error", err, "retry_in", pause)
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		pause = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer n.trim.Poke()
			if err := srv.ServeConn(ctx, conn); err != nil && ctx.Err() == nil && !isStopped(err) && !kvproto.HangUp(err) {
				n.log.Info("client connection ended", "remote", conn.RemoteAddr().String(), "error", err)
			}
		}()
	}
}

// tlsListener is tls.NewListener with a bounded handshake: Accept returns
// at once, and the handshake runs on the connection's first read or write,
// in the goroutine that serves it.
type tlsListener struct {
	net.Listener
	cfg *tls.Config
}

func (l tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsConn{Conn: tls.Server(c, l.cfg)}, nil
}

// tlsConn completes the TLS handshake, within clientTLSHandshakeTimeout,
// before its first read or write.
type tlsConn struct {
	*tls.Conn
	once sync.Once
	err  error
}

func (c *tlsConn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), clientTLSHandshakeTimeout)
		defer cancel()
		if err := c.Conn.HandshakeContext(ctx); err != nil {
			c.err = fmt.Errorf("TLS handshake: %w", err)
		}
	})
	return c.err
}

func (c *tlsConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *tlsConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
