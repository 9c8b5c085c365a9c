package kvclient

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

func TestDialWithTLS(t *testing.T) {
	certFile, keyFile, cert := selfSignedCert(t)
	s := startMemServer(t, serverTLS(t, certFile, keyFile))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := DialWith(ctx, s.addr, DialOptions{TLS: trusting(cert)})
	if err != nil {
		t.Fatalf("TLS with the right CA: %v", err)
	}
	defer c.Close()
	if _, ok := c.conn.(*tls.Conn); !ok || c.Hello().Node != "fake" {
		t.Fatalf("connection %T, hello %+v", c.conn, c.Hello())
	}
	p := tree.Path{tree.Str("tls")}
	if _, err := c.Set(ctx, p, msgp.AppendString(nil, "secret"), WriteOpts{}); err != nil {
		t.Fatal(err)
	}
	if e, found, err := c.Get(ctx, p, 1); err != nil || !found || string(e.Value) != string(msgp.AppendString(nil, "secret")) {
		t.Fatalf("get over TLS: %+v %v %v", e, found, err)
	}

	t.Run("wrong CA", func(t *testing.T) {
		_, _, other := selfSignedCert(t)
		_, err := DialWith(ctx, s.addr, DialOptions{TLS: trusting(other)})
		var ve *tls.CertificateVerificationError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("err = %v, want a certificate verification error", err)
		}
	})
	t.Run("plain client, TLS listener", func(t *testing.T) {
		start := time.Now()
		_, err := DialWith(ctx, s.addr, DialOptions{Timeout: 300 * time.Millisecond})
		if err == nil || !strings.Contains(err.Error(), "is it a TLS listener?") || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("err = %v, want no greeting with a hint at TLS", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("took %v with a 300ms timeout", d)
		}
	})
	t.Run("TLS client, plain listener", func(t *testing.T) {
		plain := startMemServer(t, nil)
		_, err := DialWith(ctx, plain.addr, DialOptions{TLS: trusting(cert), Timeout: 5 * time.Second})
		if err == nil || !strings.Contains(err.Error(), "(TLS)") || !strings.Contains(err.Error(), "tls:") {
			t.Fatalf("err = %v, want a TLS handshake failure", err)
		}
		// Dial is plain TCP, as before.
		c, err := Dial(ctx, plain.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
}

// TestDialSetupBounded: a server that accepts and never greets cannot
// hold Dial beyond its timeout or its context.
func TestDialSetupBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent until the test ends
		}
	}()
	start := time.Now()
	_, err = DialWith(context.Background(), ln.Addr().String(), DialOptions{Timeout: 200 * time.Millisecond})
	if !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("timeout: %v after %v", err, time.Since(start))
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	_, err = Dial(ctx, ln.Addr().String()) // no deadline: 10 s, but cancelled
	if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Fatalf("cancel: %v after %v", err, time.Since(start))
	}
}
