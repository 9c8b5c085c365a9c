package kvclient

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/broker/kvproto"
)

// greetWith serves one connection that sends greeting and then waits.
func greetWith(t *testing.T, greeting []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write(greeting)
		buf := make([]byte, 256)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	return ln.Addr().String()
}

func TestHelloAuthList(t *testing.T) {
	addr := greetWith(t, kvproto.AppendHello(nil, kvproto.Hello{Node: "n1", QLen: 10, Auth: []string{"", "password"}}))
	c, err := Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Hello().Auth; !slices.Equal(got, []string{"", "password"}) {
		t.Fatalf("Auth = %q, want [\"\" password]", got)
	}
}

func TestHelloBadAuthList(t *testing.T) {
	g := kvproto.AppendHello(nil, kvproto.Hello{Node: "n1", QLen: 10})
	g[0]++ // one more key
	g = msgp.AppendString(g, "auth")
	g = msgp.AppendArrayHeader(g, 1)
	g = msgp.AppendInt(g, 5)
	_, err := Dial(context.Background(), greetWith(t, g))
	if err == nil || !strings.Contains(err.Error(), "auth method 0") {
		t.Fatalf("Dial = %v, want an error about the auth list", err)
	}
}
