package kvclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edgekv/edgekv/broker/kvproto"
	"github.com/edgekv/edgekv/internal/testcert"
	"github.com/edgekv/edgekv/tree"
)

// memTree is an in-memory kvproto.Tree with watch, for tests of the
// client against a real kvproto.Server. Every write is a new version by
// node "fake" with the next tick.
type memTree struct {
	mu       sync.Mutex
	tick     uint64
	entries  map[string]kvproto.WatchItem // by path text; Value nil: deleted
	watchers map[chan kvproto.WatchItem]tree.Path
	writes   int           // Set and Delete calls that were applied
	watches  int           // Watch calls so far
	hang     chan struct{} // non-nil: writes hang after applying until it is closed or ctx ends
}

func newMemTree() *memTree {
	return &memTree{entries: map[string]kvproto.WatchItem{}, watchers: map[chan kvproto.WatchItem]tree.Path{}}
}

func (f *memTree) Hello(context.Context) (kvproto.Hello, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return kvproto.Hello{Node: "fake", Tick: f.tick, Tock: f.tick}, nil
}

func (f *memTree) Tock(context.Context) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tick, nil
}

func (f *memTree) Get(_ context.Context, p tree.Path) (kvproto.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it, ok := f.entries[p.String()]
	if !ok {
		return kvproto.Entry{}, nil
	}
	return kvproto.Entry{Value: it.Value, Chain: it.Chain, Tock: it.Tock}, nil
}

func (f *memTree) Set(ctx context.Context, p tree.Path, value []byte, _ kvproto.Cond) (kvproto.Result, error) {
	return f.write(ctx, p, value)
}

func (f *memTree) Delete(ctx context.Context, p tree.Path, _ kvproto.Cond) (kvproto.Result, error) {
	return f.write(ctx, p, nil)
}

func (f *memTree) write(ctx context.Context, p tree.Path, value []byte) (kvproto.Result, error) {
	it := f.put(p, value)
	f.mu.Lock()
	f.writes++
	hang := f.hang
	f.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-ctx.Done():
			return kvproto.Result{}, ctx.Err()
		}
	}
	return kvproto.Result{Chain: it.Chain, Tock: it.Tock}, nil
}

// put writes p (value nil: deletes) and tells the watchers.
func (f *memTree) put(p tree.Path, value []byte) kvproto.WatchItem {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tick++
	it := kvproto.WatchItem{Path: p.Clone(), Value: slices.Clone(value), Chain: tree.Chain{{Node: "fake", Tick: f.tick}}, Tock: f.tick}
	f.entries[p.String()] = it
	for ch, pre := range f.watchers {
		if p.HasPrefix(pre) {
			select {
			case ch <- it:
			default: // a test watcher this far behind has failed anyway
			}
		}
	}
	return it
}

// watchCount returns the number of Watch calls so far.
func (f *memTree) watchCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.watches
}

func (f *memTree) applied() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

func (f *memTree) Walk(_ context.Context, p tree.Path, fn func(kvproto.WatchItem) error) error {
	f.mu.Lock()
	var items []kvproto.WatchItem
	for _, it := range f.entries {
		if it.Value != nil && it.Path.HasPrefix(p) {
			items = append(items, it)
		}
	}
	f.mu.Unlock()
	slices.SortFunc(items, func(a, b kvproto.WatchItem) int { return a.Path.Compare(b.Path) })
	for _, it := range items {
		if err := fn(it); err != nil {
			return err
		}
	}
	return nil
}

func (f *memTree) Watch(ctx context.Context, p tree.Path, fetch bool, send func(kvproto.WatchItem) error) error {
	ch := make(chan kvproto.WatchItem, 1000)
	f.mu.Lock()
	var initial []kvproto.WatchItem
	if fetch {
		for _, it := range f.entries {
			if it.Value != nil && it.Path.HasPrefix(p) {
				initial = append(initial, it)
			}
		}
	}
	f.watchers[ch] = p
	f.watches++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.watchers, ch)
		f.mu.Unlock()
	}()
	slices.SortFunc(initial, func(a, b kvproto.WatchItem) int { return a.Path.Compare(b.Path) })
	for _, it := range initial {
		if err := send(it); err != nil {
			return err
		}
	}
	if fetch {
		if err := send(kvproto.WatchItem{UpToDate: true}); err != nil {
			return err
		}
	}
	for {
		select {
		case it := <-ch:
			if err := send(it); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// memServer serves a memTree on a loopback port that stays the same
// across stop and start, optionally over TLS.
type memServer struct {
	t    *testing.T
	tree *memTree
	srv  *kvproto.Server
	tls  *tls.Config // nil: plain
	addr string

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startMemServer(t *testing.T, tc *tls.Config) *memServer {
	t.Helper()
	ft := newMemTree()
	s := &memServer{t: t, tree: ft, srv: &kvproto.Server{Tree: ft}, tls: tc, addr: "127.0.0.1:0"}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// start listens on the server's address (the same port again after stop).
func (s *memServer) start() {
	s.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port may linger briefly after stop
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.ln, s.cancel, s.conns = ln, cancel, map[net.Conn]bool{}
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[conn] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.srv.ServeConn(ctx, conn)
			}()
		}
	}()
}

// drop closes every connection at once, as a crash would: requests under
// way get no reply. The listener stays.
func (s *memServer) drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = map[net.Conn]bool{}
}

// stop closes the listener and every connection and waits for them.
func (s *memServer) stop() {
	s.mu.Lock()
	ln, cancel := s.ln, s.cancel
	s.ln, s.cancel = nil, nil
	s.mu.Unlock()
	if ln == nil {
		return
	}
	ln.Close()
	s.drop()
	cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		// Fail rather than hang the whole package until its timeout.
		s.t.Errorf("memServer: connections still served 10 s after stop")
	}
}

// selfSignedCert writes a self-signed certificate for 127.0.0.1 and its
// key into a new directory and returns the files and the certificate.
func selfSignedCert(t *testing.T) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	p := testcert.Write(t, t.TempDir())
	return p.CertFile, p.KeyFile, p.Cert
}

// serverTLS loads a certificate pair as a server config.
func serverTLS(t *testing.T, certFile, keyFile string) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

// trusting is a client config that trusts cert.
func trusting(cert *x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// liveWatchers returns the number of watches registered now.
func (f *memTree) liveWatchers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.watchers)
}
