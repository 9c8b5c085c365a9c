package kvproto

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/tinylib/msgp/msgp"
)

func readAll(r *Reader) ([][]byte, error) {
	var out [][]byte
	for {
		m, err := r.Next()
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
}

func TestReaderSplitsStream(t *testing.T) {
	w := loadWire(t)
	var stream []byte
	var want [][]byte
	for _, name := range []string{"a.qlen.c2s", "b.watch.c2s", "c.set.c2s", "d.get.c2s", "e.set.c2s"} {
		stream = append(stream, w[name]...)
		want = append(want, w[name])
	}
	for _, tc := range []struct {
		name string
		r    io.Reader
	}{
		{"whole", bytes.NewReader(stream)},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(stream))},
		{"half", iotest.HalfReader(bytes.NewReader(stream))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(NewReader(tc.r, 0))
			if !errors.Is(err, io.EOF) {
				t.Fatalf("err = %v", err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d messages, want %d", len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Errorf("message %d: % x", i, got[i])
				}
			}
		})
	}
}

func TestReaderErrors(t *testing.T) {
	nested := bytes.Repeat([]byte{0x81, 0xa1, 'k'}, MaxDepth+1)
	big := msgp.AppendMapHeader(nil, 1)
	big = msgp.AppendString(big, "v")
	big = msgp.AppendBytes(big, make([]byte, 2000))
	for _, tc := range []struct {
		name  string
		in    []byte
		max   int
		frame bool   // a *FrameError, else io.ErrUnexpectedEOF
		text  string // part of the message
	}{
		{"truncated map", []byte{0x82, 0xa3, 's', 'e', 'q'}, 0, false, "stream ended"},
		{"truncated str", []byte{0x81, 0xa3, 's'}, 0, false, "stream ended"},
		{"not a map", []byte{0x93, 1, 2, 3}, 0, true, "want a map, got array"},
		{"int", []byte{0x05}, 0, true, "want a map, got int"},
		{"reserved", []byte{0x81, 0xc1, 0xc0}, 0, true, "reserved byte 0xc1"},
		{"huge map", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, 0, true, "cannot fit"},
		{"huge array inside", []byte{0x81, 0xa1, 'k', 0xdd, 0x7f, 0xff, 0xff, 0xff}, 0, true, "cannot fit"},
		{"huge str", []byte{0x81, 0xa1, 'k', 0xdb, 0x7f, 0xff, 0xff, 0xff}, 0, true, "larger than"},
		{"too deep", nested, 0, true, "nested deeper"},
		{"too large", big, 1000, true, "larger than 1000 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAll(NewReader(bytes.NewReader(tc.in), tc.max))
			var fe *FrameError
			if tc.frame != errors.As(err, &fe) || (!tc.frame && !errors.Is(err, io.ErrUnexpectedEOF)) {
				t.Fatalf("err = %v (%T)", err, err)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("err = %q, want %q in it", err, tc.text)
			}
			if tc.frame && !errors.Is(err, ErrFrame) {
				t.Errorf("%v does not wrap ErrFrame", err)
			}
		})
	}
}

func TestReaderMessageIndexAndOffset(t *testing.T) {
	in := append(AppendQLenReply(nil, 10), 0x82, 0xa1, 'k', 0xc1)
	_, err := readAll(NewReader(bytes.NewReader(in), 0))
	var fe *FrameError
	if !errors.As(err, &fe) || fe.Message != 1 || fe.Offset != 3 {
		t.Fatalf("err = %#v", err)
	}
}

func TestReaderLargeMessages(t *testing.T) {
	var stream []byte
	var want [][]byte
	for _, size := range []int{10, 300 << 10, 5, 1 << 20, 7} {
		m := msgp.AppendMapHeader(nil, 1)
		m = msgp.AppendString(m, "v")
		m = msgp.AppendBytes(m, bytes.Repeat([]byte{'x'}, size))
		stream = append(stream, m...)
		want = append(want, m)
	}
	r := NewReader(iotest.HalfReader(bytes.NewReader(stream)), 2<<20)
	got, err := readAll(r)
	if !errors.Is(err, io.EOF) || len(got) != len(want) {
		t.Fatalf("%d messages, err %v", len(got), err)
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("message %d differs", i)
		}
	}
	if len(r.buf) > 64<<10 {
		t.Errorf("buffer of %d bytes kept after the large messages", len(r.buf))
	}
}
