package kvproto

import (
	"context"
	"net"
	"testing"

	"github.com/edgekv/edgekv/tree"
)

// BenchmarkServerSetPipe measures one sequential set_value round trip
// through ServeConn over net.Pipe, with the fake tree (no network, no node).
func BenchmarkServerSetPipe(b *testing.B) {
	ft := newFakeTree("ref1", 1, 1)
	cli, srv := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Tree: ft}).ServeConn(ctx, srv) }()
	defer func() { cli.Close(); cancel(); <-done }()
	r := NewReader(cli, 0)
	if _, err := r.Next(); err != nil {
		b.Fatal(err)
	}
	cli.Write(AppendQLenReply(nil, 10))
	p := tree.Path{tree.Str("bench"), tree.Str("k")}
	b.ReportAllocs()
	seq := 0
	for b.Loop() {
		seq++
		if _, err := cli.Write(req("path", p, "value", seq, "nchain", 0, "action", "set_value", "seq", seq)); err != nil {
			b.Fatal(err)
		}
		if _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
	}
}
