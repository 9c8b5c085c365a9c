package kvclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// DefaultDialTimeout bounds a connection's set-up when neither
// DialOptions.Timeout nor the context gives a deadline.
const DefaultDialTimeout = 10 * time.Second

// DialOptions are the settings of DialWith. The zero value is what Dial
// uses: plain TCP, set-up bounded by the context or DefaultDialTimeout.
type DialOptions struct {
	// TLS, if not nil, makes the connection use TLS with this config. A
	// config without ServerName is checked against the host of addr (as
	// tls.Dial does); set RootCAs to trust a private CA.
	TLS *tls.Config
	// Timeout bounds the set-up: connecting, the TLS handshake and the
	// server's greeting. 0: the context's deadline, or DefaultDialTimeout
	// without one; with both, whichever comes first.
	Timeout time.Duration
}

// DialWith connects to addr (host:port) as o says and reads the greeting.
//
// A certificate the config does not trust fails with the crypto/tls or
// crypto/x509 error (errors.As a *tls.CertificateVerificationError). A
// plain connection to a TLS listener gets no greeting (the server waits
// for a TLS handshake) and fails when the set-up time is up, with an
// error that suggests TLS; a TLS connection to a plain listener fails at
// once in the handshake.
func DialWith(ctx context.Context, addr string, o DialOptions) (*Client, error) {
	timeout := o.Timeout
	if _, ok := ctx.Deadline(); !ok && timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	var conn net.Conn
	var err error
	if o.TLS != nil {
		d := tls.Dialer{Config: o.TLS}
		conn, err = d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("kvclient: connect %s (TLS): %w", addr, err)
		}
	} else {
		var d net.Dialer
		if conn, err = d.DialContext(ctx, "tcp", addr); err != nil {
			return nil, fmt.Errorf("kvclient: connect %s: %w", addr, err)
		}
	}
	// A cancelled context ends the greeting's read at once.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	c, err := newClient(conn, addr, deadline)
	if !stop() { // ctx ended during the set-up
		switch {
		case err == nil:
			// Just as it finished: the deadline set may hit the read loop.
			c.Close()
			return nil, fmt.Errorf("kvclient: connect %s: %w", addr, ctx.Err())
		case errors.Is(ctx.Err(), context.Canceled):
			return nil, fmt.Errorf("kvclient: connect %s: %w (%v)", addr, ctx.Err(), err)
		}
	}
	return c, err
}

// greetingError describes a failure to read the server's greeting; on a
// plain connection that saw nothing at all, it suggests TLS.
func greetingError(conn net.Conn, addr string, err error) error {
	var ne net.Error
	silent := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || (errors.As(err, &ne) && ne.Timeout())
	if _, isTLS := conn.(*tls.Conn); !isTLS && silent {
		return fmt.Errorf("kvclient: %s: no greeting from the server (is it a TLS listener? then connect with TLS): %w", addr, err)
	}
	return fmt.Errorf("kvclient: %s: reading the greeting: %w", addr, err)
}

// notSentError marks a request that was not sent at all because the
// connection had already ended: repeating it on a new connection is safe,
// whatever it does.
type notSentError struct{ err error }

func (e notSentError) Error() string { return e.err.Error() }
func (e notSentError) Unwrap() error { return e.err }

// wasNotSent reports whether err says the request never left the client.
func wasNotSent(err error) bool {
	var ns notSentError
	return errors.As(err, &ns)
}

// alive reports whether the connection is still usable.
func (c *Client) alive() bool {
	// c.err is set before the requests under way learn that the
	// connection ended (c.done closes only later), and a failed write
	// ends it too: a caller told "closed" must not be handed c again.
	c.mu.Lock()
	ended := c.err != nil
	c.mu.Unlock()
	return !ended && !c.w.failed()
}
