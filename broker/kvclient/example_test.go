package kvclient_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/broker/kvclient"
	"github.com/edgekv/edgekv/tree"
)

// Connect to a node, write a value, read it back, and watch a subtree.
// (Not run as a test: it needs a node listening on 127.0.0.1:27586.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := kvclient.Dial(ctx, "127.0.0.1:27586")
	if err != nil {
		fmt.Println("no node:", err)
		return
	}
	defer c.Close()

	temp := tree.Path{tree.Str("room"), tree.Str("temp")}
	if _, err := c.Set(ctx, temp, msgp.AppendFloat64(nil, 21.5), kvclient.WriteOpts{}); err != nil {
		fmt.Println(err)
		return
	}
	e, found, err := c.Get(ctx, temp, 1)
	if err != nil || !found {
		fmt.Println("not found", err)
		return
	}
	v, _, _ := msgp.ReadFloat64Bytes(e.Value)
	fmt.Println(v, "written by", e.Chain[0].Node)

	// A conditional write: only if nobody changed it since we read it.
	if _, err := c.Set(ctx, temp, msgp.AppendFloat64(nil, 22), kvclient.WriteOpts{Head: &e.Chain[0]}); err != nil {
		fmt.Println("someone else wrote first:", err)
	}

	// Watch: the current entries, an up-to-date marker, then changes.
	_ = c.Watch(ctx, tree.Path{tree.Str("room")}, true, func(it kvclient.Item) error {
		if it.UpToDate {
			return context.Canceled // stop after the initial state
		}
		fmt.Println(it.Path)
		return nil
	})
}

// A client that survives node restarts: calls wait (with backoff) for the
// node to come back, until their context ends, and a watch carries on
// where it was. It connects over TLS, trusting the node's CA; leave TLS
// out for the plain listener. (Not run as a test: it needs a node with a
// listen.client_tls listener on 127.0.0.1:27587.)
func ExampleReconnecting() {
	pem, err := os.ReadFile("ca.pem")
	if err != nil {
		fmt.Println(err)
		return
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	r := kvclient.NewReconnecting("127.0.0.1:27587", kvclient.ReconnectOptions{
		DialOptions: kvclient.DialOptions{
			TLS:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			Timeout: 5 * time.Second,
		},
		MaxBackoff: 2 * time.Second,
	})
	defer r.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	temp := tree.Path{tree.Str("room"), tree.Str("temp")}
	_, err = r.Set(ctx, temp, msgp.AppendFloat64(nil, 21.5), kvclient.WriteOpts{Idem: true})
	if errors.Is(err, kvclient.ErrUnknownOutcome) {
		// The node went away after the write was sent: it may or may not
		// have it. Read it back to know.
		e, found, err := r.Get(ctx, temp, 0)
		fmt.Println("stored:", found, e.Value, err)
	} else if err != nil {
		fmt.Println(err)
		return
	}

	// Every change below room, across restarts, each once.
	for it, err := range r.WatchSeq(ctx, tree.Path{tree.Str("room")}, true) {
		if err != nil {
			fmt.Println("watch ended:", err)
			break
		}
		if it.UpToDate {
			fmt.Println("-- up to date")
			continue
		}
		fmt.Println(it.Path, it.Value != nil)
	}
}
