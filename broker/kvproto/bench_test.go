package kvproto

import (
	"bytes"
	"context"
	"net"
	"testing"

	"github.com/tinylib/msgp/msgp"

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

// BenchmarkReadRequests frames and parses set_value requests from a
// buffered stream: the msgpack reading a request costs before any work.
func BenchmarkReadRequests(b *testing.B) {
	p := tree.Path{tree.Str("bench"), tree.Str("sensor"), tree.Str("temp")}
	value := msgp.AppendMapHeader(nil, 2)
	value = msgp.AppendFloat64(msgp.AppendString(value, "t"), 21.5)
	value = msgp.AppendString(msgp.AppendString(value, "unit"), "C")
	var stream []byte
	const n = 1000
	for i := range n {
		stream = append(stream, req("path", p, "value", value, "nchain", 0, "action", "set_value", "seq", i+1)...)
	}
	b.SetBytes(int64(len(stream) / n))
	b.ReportAllocs()
	var r *Reader
	i := n
	for b.Loop() {
		if i == n {
			r, i = NewReader(bytes.NewReader(stream), 0), 0
		}
		m, err := r.Next()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ParseRequest(m); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
