package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// openListener is a socket we opened and the mochi listener serving it.
type openListener struct {
	ln    net.Listener
	mochi listeners.Listener
}

// connectTimeout bounds how long a new connection may take to send its
// CONNECT packet (mochi reads it without a deadline; after CONNECT it
// applies the client's keepalive).
const connectTimeout = 10 * time.Second

// listen opens every configured socket. We open them ourselves (rather
// than letting mochi do it) so that bind errors surface here and Addrs
// reports the real ports of ":0" addresses. On error nothing stays open.
func (b *Broker) listen() ([]openListener, error) {
	var out []openListener
	fail := func(err error) ([]openListener, error) {
		for _, l := range out {
			l.ln.Close()
		}
		return nil, err
	}
	for i, addr := range b.cfg.MQTT {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fail(fmt.Errorf("broker: MQTT listener: %w", err))
		}
		out = append(out, openListener{ln, newNetListener(fmt.Sprintf("tcp%d", i), "tcp", ln, b.limits)})
	}
	for i, addr := range b.cfg.WebSocket {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fail(fmt.Errorf("broker: WebSocket listener: %w", err))
		}
		out = append(out, openListener{ln, newWSListener(fmt.Sprintf("ws%d", i), ln, b.limits)})
	}
	for i, l := range b.cfg.TLS {
		cert, err := tls.LoadX509KeyPair(l.Cert, l.Key)
		if err != nil {
			return fail(fmt.Errorf("broker: TLS listener %s: %w", l.Addr, err))
		}
		ln, err := net.Listen("tcp", l.Addr)
		if err != nil {
			return fail(fmt.Errorf("broker: TLS listener: %w", err))
		}
		tln := tls.NewListener(ln, &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
		})
		out = append(out, openListener{tln, newNetListener(fmt.Sprintf("tls%d", i), "tls", tln, b.limits)})
	}
	return out, nil
}

// connSet tracks a listener's open connections so that Close can end
// those that mochi does not know yet (still before CONNECT): mochi's
// Close waits for every connection's goroutine.
type connSet struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// add tracks c; it reports false (and closes c) once the set is closed.
func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// closeAll closes every tracked connection and refuses new ones.
func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// serveConn hands one connection to mochi, counted against the broker's
// connection limit and metered against its budget of unfinished packets
// (meteredConn), with a deadline for its CONNECT packet, and logs how it
// ended at debug level (mochi's own listeners log every ended connection
// as a warning). Deadlines go to c (a wsConn passes them to its socket).
func serveConn(id string, c net.Conn, lim *connLimits, conns *connSet, establish listeners.EstablishFn, log *slog.Logger) {
	if !lim.admit() {
		c.Close()
		return
	}
	defer lim.release()
	mc := newMeteredConn(c, lim)
	defer mc.releaseBudget()
	if !conns.add(mc) {
		return
	}
	defer conns.remove(mc)
	_ = mc.SetDeadline(time.Now().Add(connectTimeout))
	if err := establish(id, mc); err != nil {
		log.Debug("connection ended", "listener", id, "remote", c.RemoteAddr().String(), "error", err)
	}
}

// netListener serves MQTT on a TCP or TLS socket we opened.
type netListener struct {
	id, protocol string
	ln           net.Listener
	log          *slog.Logger
	lim          *connLimits
	conns        connSet
	closed       atomic.Bool
}

func newNetListener(id, protocol string, ln net.Listener, lim *connLimits) *netListener {
	return &netListener{id: id, protocol: protocol, ln: ln, lim: lim}
}

func (l *netListener) ID() string       { return l.id }
func (l *netListener) Address() string  { return l.ln.Addr().String() }
func (l *netListener) Protocol() string { return l.protocol }

func (l *netListener) Init(log *slog.Logger) error {
	l.log = log
	return nil
}

// Serve accepts until Close; failed accepts (out of file descriptors, for
// example) are retried with a backoff of up to 1 s instead of ending the
// listener.
func (l *netListener) Serve(establish listeners.EstablishFn) {
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("accepting a connection failed", "listener", l.id, "error", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go serveConn(l.id, c, l.lim, &l.conns, establish, l.log)
	}
}

// Close stops accepting, disconnects the listener's clients, and closes
// connections that have not sent CONNECT yet.
func (l *netListener) Close(closeClients listeners.CloseFn) {
	if l.closed.CompareAndSwap(false, true) {
		_ = l.ln.Close()
	}
	closeClients(l.id)
	l.conns.closeAll()
}

// wsListener serves MQTT over WebSocket (binary frames, subprotocol
// "mqtt", any path) on a socket we opened; mochi's own WebSocket listener
// binds only when it starts serving and cannot report its port.
type wsListener struct {
	id       string
	ln       net.Listener
	http     *http.Server
	upgrader websocket.Upgrader
	log      *slog.Logger
	lim      *connLimits
	conns    connSet
	closed   atomic.Bool
}

func newWSListener(id string, ln net.Listener, lim *connLimits) *wsListener {
	l := &wsListener{
		id:  id,
		ln:  ln,
		lim: lim,
		upgrader: websocket.Upgrader{
			Subprotocols: []string{"mqtt"},
			CheckOrigin:  func(*http.Request) bool { return true },
		},
	}
	l.http = &http.Server{ReadHeaderTimeout: connectTimeout}
	return l
}

func (l *wsListener) ID() string       { return l.id }
func (l *wsListener) Address() string  { return l.ln.Addr().String() }
func (l *wsListener) Protocol() string { return "ws" }

func (l *wsListener) Init(log *slog.Logger) error {
	l.log = log
	return nil
}

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.closed.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		c, err := l.upgrader.Upgrade(w, r, nil)
		if err != nil {
			return // the upgrader has answered
		}
		serveConn(l.id, &wsConn{Conn: c.NetConn(), ws: c}, l.lim, &l.conns, establish, l.log)
	})
	if err := l.http.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !l.closed.Load() {
		l.log.Error("websocket listener failed", "listener", l.id, "error", err)
	}
}

// Close stops accepting, then disconnects the listener's clients
// (upgraded connections are hijacked, so Shutdown does not wait for them)
// and closes connections that have not sent CONNECT yet.
func (l *wsListener) Close(closeClients listeners.CloseFn) {
	if l.closed.CompareAndSwap(false, true) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = l.http.Shutdown(ctx)
		cancel()
		_ = l.ln.Close()
	}
	closeClients(l.id)
	l.conns.closeAll()
}

// wsConn presents a WebSocket connection as the byte stream mochi reads:
// MQTT packets may span binary messages and messages may hold several
// packets. Deadlines and addresses are the underlying connection's.
// mochi serialises writes per client, as gorilla/websocket requires.
type wsConn struct {
	net.Conn
	ws *websocket.Conn
	r  io.Reader // the current message, nil between messages
}

var errWSText = errors.New("broker: websocket message is not binary")

func (c *wsConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errWSText
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error { return c.ws.Close() }
