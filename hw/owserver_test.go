package hw

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeOWServer starts Debian's owserver with fake devices (families 28
// DS18B20, 10 DS18S20, 22 DS1822, 3A DS2413, 29 DS2408) on a free loopback
// port; it is killed when the test ends.
func fakeOWServer(t *testing.T) *OWServer {
	t.Helper()
	bin, err := exec.LookPath("owserver")
	if err != nil {
		t.Fatal("owserver not found: install Debian's owserver (apt-get install owserver); .ci/run does this")
	}
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "--foreground", "--fake", "28,10,22,3A,29", "-p", addr)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c := &OWServer{Addr: addr, Timeout: 2 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := c.Dir(context.Background(), "/"); err == nil {
			return c
		} else if time.Now().After(deadline) {
			t.Fatalf("owserver on %s did not answer: %v\n%s", addr, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestOWServerReal(t *testing.T) {
	c := fakeOWServer(t)
	ctx := context.Background()
	ids, err := c.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fams := map[string]string{}
	for _, id := range ids {
		fams[id[:2]] = id
	}
	for _, f := range []string{"28", "10", "22", "3A", "29"} {
		if fams[f] == "" {
			t.Errorf("family %s not listed: %v", f, ids)
		}
	}
	v, err := c.Read(ctx, "/"+fams["28"]+"/temperature")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strconv.ParseFloat(v, 64); err != nil {
		t.Errorf("temperature %q: %v", v, err)
	}
	if _, err := c.Read(ctx, "/28.000000000000/temperature"); !errors.Is(err, ErrOWServer) || !strings.Contains(err.Error(), "error") {
		t.Errorf("reading a device that is not there: %v", err)
	}
	if err := c.Write(ctx, "/"+fams["3A"]+"/PIO.A", "1"); err != nil {
		t.Errorf("write PIO.A: %v", err)
	}
	dead := &OWServer{Addr: "127.0.0.1:" + strconv.Itoa(freePort(t)), Timeout: time.Second}
	if _, err := dead.Read(ctx, "/x"); !errors.Is(err, ErrOWServer) {
		t.Errorf("owserver down: %v", err)
	}
}

func owReply(payload int32, ret int32, size int32, data []byte) []byte {
	b := make([]byte, owHeader)
	for i, v := range []int32{0, payload, ret, owFlags, size, 0} {
		binary.BigEndian.PutUint32(b[4*i:], uint32(v))
	}
	return append(b, data...)
}

func TestReadOWReply(t *testing.T) {
	ping := owReply(-1, 0, 0, nil)
	good := owReply(12, 0, 12, []byte("     21.5625"))
	cases := []struct {
		name string
		in   []byte
		want string
		err  string
	}{
		{"value", good, "     21.5625", ""},
		{"after pings", append(append(append([]byte{}, ping...), ping...), good...), "     21.5625", ""},
		{"size shorter than payload", owReply(8, 0, 3, []byte("abcdefgh")), "abc", ""},
		{"error number", owReply(0, -2, 0, nil), "", "error 2 (no such device or property)"},
		{"huge payload", owReply(1<<30, 0, 0, nil), "", "declares a payload of 1073741824 bytes"},
		{"negative payload", owReply(-7, 0, 0, nil), "", "declares a payload of -7 bytes"},
		{"cut header", good[:10], "", "before a whole reply header"},
		{"cut payload", good[:30], "", "cut short"},
		{"empty", nil, "", "before a whole reply header"},
	}
	for _, tc := range cases {
		got, err := readOWReply(bytes.NewReader(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %q, %v; want an error containing %q", tc.name, got, err, tc.err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func FuzzReadOWReply(f *testing.F) {
	f.Add(owReply(12, 0, 12, []byte("     21.5625")))
	f.Add(owReply(-1, 0, 0, nil))
	f.Add(owReply(0, -22, 0, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := readOWReply(bytes.NewReader(in))
		if err == nil && len(got) > len(in) {
			t.Fatalf("%d bytes of data from %d of input", len(got), len(in))
		}
	})
}

// freePort returns a free loopback port.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestOWThermometer(t *testing.T) {
	c := fakeOWServer(t)
	ctx := context.Background()
	ids, _ := c.Devices(ctx)
	var ds []string
	for _, id := range ids {
		switch id[:2] {
		case "28", "10", "22":
			ds = append(ds, id)
		}
	}
	if len(ds) != 3 {
		t.Fatalf("thermometers: %v", ds)
	}
	for _, id := range ds {
		kernel := strings.ToLower(strings.Replace(id, ".", "-", 1)) // the kernel's form works too
		th, err := c.Thermometer(kernel)
		if err != nil {
			t.Fatal(err)
		}
		v, err := th.Read(ctx)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		t.Logf("%s: %v °C", id, v)
	}
	if _, err := c.Thermometer("28.XYZ"); err == nil {
		t.Error("a malformed id was accepted")
	}
}

func TestCheckReading(t *testing.T) {
	for _, c := range []float64{21.5, -10.0625, 0, 125, -55, 84.9375} {
		if err := CheckReading(c); err != nil {
			t.Errorf("%v: %v", c, err)
		}
	}
	for _, c := range []float64{85, 127.94, -127, 126, -56} {
		if err := CheckReading(c); !errors.Is(err, ErrNoReading) {
			t.Errorf("%v accepted (%v)", c, err)
		}
	}
}

// recordingProxy forwards connections to addr and keeps what clients
// sent: the real owserver answers, the test sees the requests.
func recordingProxy(t *testing.T, addr string) (string, func() []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var sent bytes.Buffer
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() {
				defer wg.Done()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					mu.Lock()
					sent.Write(buf[:n])
					mu.Unlock()
					s.Write(buf[:n])
					if err != nil {
						s.(*net.TCPConn).CloseWrite()
						return
					}
				}
			}()
			go func() { defer wg.Done(); io.Copy(c, s); c.Close(); s.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return bytes.Clone(sent.Bytes())
	}
}

// writeSuccesses reads owserver's count of successful writes.
func writeSuccesses(t *testing.T, c *OWServer) int {
	t.Helper()
	v, err := c.Read(context.Background(), "/statistics/write/success")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestOWSwitch drives DS2413 and DS2408 channels of a real owserver. Its
// fake devices do not keep what they are told (reads are random), so the
// test sees the requests through a proxy and owserver's own count of
// successful writes.
func TestOWSwitch(t *testing.T) {
	real := fakeOWServer(t)
	addr, sent := recordingProxy(t, real.Addr)
	c := &OWServer{Addr: addr, Timeout: 2 * time.Second}
	ctx := context.Background()
	ids, _ := c.Devices(ctx)
	var ds2413, ds2408 string
	for _, id := range ids {
		switch id[:2] {
		case "3A":
			ds2413 = id
		case "29":
			ds2408 = id
		}
	}
	before := writeSuccesses(t, real)
	writes := 0
	for _, ch := range []struct{ id, ch string }{{ds2413, "A"}, {ds2413, "b"}, {ds2408, "0"}, {ds2408, "7"}} {
		sw, err := c.Switch(ch.id, ch.ch)
		if err != nil {
			t.Fatal(err)
		}
		for _, level := range []bool{true, false} {
			if err := sw.Out(level); err != nil {
				t.Fatalf("%s: %v", sw, err)
			}
			writes++
			want := "/" + ch.id + "/PIO." + strings.ToUpper(ch.ch) + "\x00" + map[bool]string{true: "1", false: "0"}[level]
			if !bytes.Contains(sent(), []byte(want)) {
				t.Errorf("no write of %q sent", want)
			}
		}
	}
	if got := writeSuccesses(t, real) - before; got != writes {
		t.Errorf("owserver counted %d successful writes, want %d", got, writes)
	}
	sw, _ := c.Switch(ds2413, "B")
	if _, err := sw.Sensed(ctx); err != nil {
		t.Errorf("sensed.B: %v", err)
	}
	if !bytes.Contains(sent(), []byte("/"+ds2413+"/sensed.B\x00")) {
		t.Error("no read of sensed.B sent")
	}
	for _, bad := range []struct{ id, ch string }{{ds2413, "C"}, {ds2408, "8"}, {"28.67C6697351FF", "A"}, {"nope", "A"}} {
		if _, err := c.Switch(bad.id, bad.ch); err == nil {
			t.Errorf("Switch(%q, %q) accepted", bad.id, bad.ch)
		}
	}
}
