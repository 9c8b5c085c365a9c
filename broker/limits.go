package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgekv/edgekv/internal/budget"
)

// connecting is how many connections beyond MaxConns a listener accepts:
// room for clients that mochi then refuses with a CONNACK that says why
// ("server busy", "server unavailable") rather than a bare close.
const connecting = 16

// connLimits is what all the broker's listeners share: the count of open
// connections and the budget of unfinished packets.
type connLimits struct {
	max    int // 0: no bound
	open   atomic.Int64
	budget *budget.Budget // nil: none
	packet int64          // mochi refuses packets larger than this unread
	log    *slog.Logger

	refusedMu  sync.Mutex
	refused    int       // connections refused since the last log line
	refusedLog time.Time // when that was
}

// admit counts a new connection; false means it is one too many (it has
// been logged, at most once every 10 s, and must be closed).
func (l *connLimits) admit() bool {
	n := l.open.Add(1)
	if l.max <= 0 || n <= int64(l.max+connecting) {
		return true
	}
	l.open.Add(-1)
	l.refusedMu.Lock()
	defer l.refusedMu.Unlock()
	l.refused++
	if time.Since(l.refusedLog) >= 10*time.Second {
		l.log.Warn("MQTT connections refused: the broker has as many as it may (limits.mqtt_connections, and a few more that are being refused with a CONNACK)",
			"limit", l.max, "refused", l.refused)
		l.refused, l.refusedLog = 0, time.Now()
	}
	return false
}

func (l *connLimits) release() { l.open.Add(-1) }

// meteredConn is an MQTT connection as mochi reads it, watched packet by
// packet: mochi reads a packet into one buffer of the length its header
// announces, before its body has come. A packet over budget.Free bytes is
// let through only once its length is taken from the node's budget (the
// connection waits, unread, while there is no room, and is closed if none
// comes), and it must arrive at budget.MinRate. The budget is given back
// when its last byte has passed.
type meteredConn struct {
	net.Conn
	lim    *connLimits
	ctx    context.Context // ends when the connection is closed
	cancel context.CancelFunc

	// Fixed-header parser state, on mochi's reading goroutine only.
	state   int   // 0: at a packet's first byte; 1: in its length; 2: in its body
	length  int64 // the remaining length being decoded, then the body left
	shift   uint
	total   int64 // the body's announced length
	held    int64 // taken from the budget for this packet
	start   time.Time
	failed  error // why we ended the connection
	mu      sync.Mutex
	mochiDL time.Time // the read deadline mochi asked for
	own     time.Time // ours, while a large packet arrives (zero: none)
}

func newMeteredConn(c net.Conn, lim *connLimits) *meteredConn {
	ctx, cancel := context.WithCancel(context.Background())
	return &meteredConn{Conn: c, lim: lim, ctx: ctx, cancel: cancel}
}

func (c *meteredConn) Close() error {
	c.cancel()
	return c.Conn.Close()
}

// SetDeadline and SetReadDeadline record mochi's read deadline (its
// keepalive), so that ours, while a large packet arrives, never extends
// it.
func (c *meteredConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

func (c *meteredConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.mochiDL = t
	c.mu.Unlock()
	return c.applyDeadline()
}

// setOwn sets our deadline (zero: none) and applies it. Reader only.
func (c *meteredConn) setOwn(t time.Time) {
	c.mu.Lock()
	c.own = t
	c.mu.Unlock()
	_ = c.applyDeadline()
}

// applyDeadline applies the earlier of mochi's read deadline and ours.
func (c *meteredConn) applyDeadline() error {
	c.mu.Lock()
	dl := c.mochiDL
	if !c.own.IsZero() && (dl.IsZero() || c.own.Before(dl)) {
		dl = c.own
	}
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(dl)
}

func (c *meteredConn) Read(p []byte) (int, error) {
	if c.failed != nil {
		return 0, c.failed
	}
	if c.held > 0 {
		c.setOwn(budget.Deadline(c.start, c.total-c.length))
	}
	n, err := c.Conn.Read(p)
	if ne := net.Error(nil); err != nil && c.held > 0 && errors.As(err, &ne) && ne.Timeout() {
		c.mu.Lock()
		mochiDL := c.mochiDL
		c.mu.Unlock()
		if mochiDL.IsZero() || time.Now().Before(mochiDL) {
			c.failed = fmt.Errorf("broker: packet of %d bytes: %d received in %s, slower than the %d KiB/s a packet over %d KiB must keep up",
				c.total, c.total-c.length, time.Since(c.start).Round(time.Millisecond), budget.MinRate>>10, budget.Free>>10)
			c.lim.log.Info("MQTT connection closed", "remote", c.RemoteAddr().String(), "reason", c.failed)
			return n, c.failed
		}
	}
	if ferr := c.scan(p[:n]); ferr != nil {
		c.failed = ferr
		c.lim.log.Info("MQTT connection closed", "remote", c.RemoteAddr().String(), "reason", ferr)
		return 0, ferr
	}
	return n, err
}

// scan follows the packets in b (what has just been read), taking budget
// for each large packet before its header is handed on.
func (c *meteredConn) scan(b []byte) error {
	for len(b) > 0 {
		switch c.state {
		case 0:
			c.state, c.length, c.shift = 1, 0, 0
			b = b[1:]
		case 1:
			d := b[0]
			b = b[1:]
			c.length |= int64(d&0x7f) << c.shift
			c.shift += 7
			if d&0x80 != 0 && c.shift < 28 {
				continue
			}
			// (a fifth length byte is malformed: mochi says so)
			c.total = c.length
			c.state = 2
			if c.length > budget.Free && c.length <= c.lim.packet && c.lim.budget != nil {
				if err := c.lim.budget.Take(c.ctx, c.length); err != nil {
					return fmt.Errorf("broker: packet of %d bytes: no room to receive it: %w", c.length, err)
				}
				c.held = c.length
				c.start = time.Now()
				c.setOwn(budget.Deadline(c.start, 0))
			}
			if c.length == 0 {
				c.endPacket()
			}
		case 2:
			k := min(int64(len(b)), c.length)
			c.length -= k
			b = b[k:]
			if c.length == 0 {
				c.endPacket()
			}
		}
	}
	return nil
}

func (c *meteredConn) endPacket() {
	c.state = 0
	if c.held > 0 {
		c.lim.budget.Give(c.held)
		c.held = 0
		c.setOwn(time.Time{})
	}
}

// releaseBudget gives back what an unfinished packet holds; called once
// the connection has ended.
func (c *meteredConn) releaseBudget() {
	if c.held > 0 {
		c.lim.budget.Give(c.held)
		c.held = 0
	}
}

// retainedBudget bounds the bytes (topic and payload) of retained messages
// on topics outside the tree and the sync prefix: KV topics are the tree's
// (bounded by its own limits), anything else a client retains stays in the
// broker's memory until someone clears it.
type retainedBudget struct {
	max   int64 // ≤ 0: no bound
	mu    sync.Mutex
	sizes map[string]int64
	total int64
}

// admit records a retained publish of payload on topic, or says why it
// does not fit. An empty payload clears the topic and always fits.
func (r *retainedBudget) admit(topic string, payload int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.sizes[topic]
	if payload == 0 {
		delete(r.sizes, topic)
		r.total -= old
		return nil
	}
	size := int64(len(topic) + payload)
	if r.max > 0 && r.total-old+size > r.max {
		return fmt.Errorf("retained messages outside the tree hold %d of the %d bytes allowed (limits.retained); this one needs %d",
			r.total, r.max, size-old)
	}
	if r.sizes == nil {
		r.sizes = map[string]int64{}
	}
	r.sizes[topic] = size
	r.total += size - old
	return nil
}

// bytes returns the bytes retained outside the tree.
func (r *retainedBudget) bytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}
