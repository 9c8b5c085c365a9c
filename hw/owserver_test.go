package hw

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
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
