package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/edgekv/edgekv/boards"
)

// clientTLSListener is a MoaT-KV client-protocol listener over TLS
// (listen.client_tls), its certificate loaded.
type clientTLSListener struct {
	Name   string // the YAML path, for errors: listen.client_tls[0]
	Addr   string
	Config *tls.Config
}

// clientTLSHandshakeTimeout bounds a client's TLS handshake: a client that
// connects and says nothing (such as a plain client waiting for the
// greeting) is dropped after it rather than held until shutdown.
const clientTLSHandshakeTimeout = 10 * time.Second

// clientTLSListeners loads the certificates of listen.client_tls. A file
// that cannot be read or does not hold a matching PEM certificate and key
// is an error naming the setting.
func clientTLSListeners(ls []boards.TLSListener) ([]clientTLSListener, error) {
	var out []clientTLSListener
	for i, l := range ls {
		name := fmt.Sprintf("listen.client_tls[%d]", i)
		cert, err := tls.LoadX509KeyPair(l.Cert, l.Key)
		if err != nil {
			return nil, fmt.Errorf("%s (%s): loading cert %s and key %s: %w", name, l.Addr, l.Cert, l.Key, err)
		}
		out = append(out, clientTLSListener{Name: name, Addr: l.Addr, Config: &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
		}})
	}
	return out, nil
}

// listenClientTLS opens the client-protocol TLS listeners into
// n.clientTLSLns; on error none stays open. serveClients serves each like
// the plain one, with the same tree.
func (n *node) listenClientTLS() error {
	for _, l := range n.cfg.ClientTLS {
		ln, err := net.Listen("tcp", l.Addr)
		if err != nil {
			for _, o := range n.clientTLSLns {
				o.Close()
			}
			n.clientTLSLns = nil
			return fmt.Errorf("client protocol TLS listener %s %s: %w", l.Name, l.Addr, err)
		}
		n.clientTLSLns = append(n.clientTLSLns, tlsListener{Listener: ln, cfg: l.Config})
		n.log.Info("client protocol listening", "addr", ln.Addr().String(), "tls", true)
	}
	return nil
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
