package hw

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// OWServer is a client of OWFS's owserver (TCP, port 4304 by default): one
// connection per request, as owserver's own tools make them. No
// well-kept Go library speaks this protocol, so this is a small one of our
// own: a 24-byte header each way (version, payload length, type or return
// value, flags, size, offset; big-endian int32s) and the payload.
type OWServer struct {
	// Addr is owserver's "host:port".
	Addr string
	// Timeout bounds one request, connection included. Default 5 s.
	Timeout time.Duration
}

// owserver message types and flags.
const (
	owRead   = 2
	owWrite  = 3
	owDirAll = 7
	// owFlags asks for temperatures in °C and device names as
	// "28.67C6697351FF", and says the client speaks the network protocol.
	owFlags = 0x00000100
	// owMaxReply bounds a reply's payload: a directory of a large bus
	// fits many times over; more is garbage.
	owMaxReply = 1 << 20
	owHeader   = 24
)

// ErrOWServer wraps every error an owserver reports or a reply that is
// not its protocol.
var ErrOWServer = errors.New("owserver")

// Read returns the value of an owserver path ("/28.67C6697351FF/temperature"),
// spaces trimmed.
func (c *OWServer) Read(ctx context.Context, path string) (string, error) {
	data, err := c.do(ctx, owRead, path, nil)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}

// Write writes value to an owserver path ("/3A.54F81BE8E78D/PIO.A").
func (c *OWServer) Write(ctx context.Context, path, value string) error {
	_, err := c.do(ctx, owWrite, path, []byte(value))
	return err
}

// Dir lists the entries under path ("/" lists the devices and owserver's
// own directories such as /bus.0 and /settings).
func (c *OWServer) Dir(ctx context.Context, path string) ([]string, error) {
	data, err := c.do(ctx, owDirAll, path, nil)
	if err != nil {
		return nil, err
	}
	s := strings.TrimRight(string(data), "\x00")
	if s == "" {
		return nil, nil
	}
	return strings.Split(s, ","), nil
}

// Devices lists the 1-wire devices owserver sees, as "28.67C6697351FF".
func (c *OWServer) Devices(ctx context.Context) ([]string, error) {
	entries, err := c.Dir(ctx, "/")
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		name := strings.TrimPrefix(e, "/")
		if isOWID(name) {
			ids = append(ids, name)
		}
	}
	return ids, nil
}

// isOWID reports whether s is a device name as owserver writes it: two hex
// digits of family, a dot, twelve hex digits.
func isOWID(s string) bool {
	if len(s) != 15 || s[2] != '.' {
		return false
	}
	for i, r := range s {
		if i != 2 && !strings.ContainsRune("0123456789ABCDEFabcdef", r) {
			return false
		}
	}
	return true
}

// do makes one request and returns the reply's data.
func (c *OWServer) do(ctx context.Context, typ int32, path string, data []byte) ([]byte, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrOWServer, c.Addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(owRequest(typ, path, data)); err != nil {
		return nil, fmt.Errorf("%w %s: %s %s: %v", ErrOWServer, c.Addr, owTypeName(typ), path, err)
	}
	reply, err := readOWReply(conn)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %s %s: %v", ErrOWServer, c.Addr, owTypeName(typ), path, err)
	}
	return reply, nil
}

func owTypeName(typ int32) string {
	switch typ {
	case owRead:
		return "read"
	case owWrite:
		return "write"
	case owDirAll:
		return "dir"
	}
	return "request " + strconv.Itoa(int(typ))
}

// owRequest encodes a request: the path NUL-terminated, then for a write
// the value (size: its length); for a read, size is the most it accepts.
func owRequest(typ int32, path string, data []byte) []byte {
	payload := append([]byte(path), 0)
	size := int32(8192)
	if typ == owWrite {
		payload = append(payload, data...)
		size = int32(len(data))
	}
	b := make([]byte, owHeader, owHeader+len(payload))
	for i, v := range []int32{0, int32(len(payload)), typ, owFlags, size, 0} {
		binary.BigEndian.PutUint32(b[4*i:], uint32(v))
	}
	return append(b, payload...)
}

// readOWReply reads one reply: headers with a payload length of -1 are
// owserver's "still working" pings and are skipped; a negative return
// value is an error number; the data is the payload's first size bytes.
func readOWReply(r io.Reader) ([]byte, error) {
	var h [owHeader]byte
	for pings := 0; ; pings++ {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("connection closed before a whole reply header (%w)", io.ErrUnexpectedEOF)
			}
			return nil, err
		}
		payload := int32(binary.BigEndian.Uint32(h[4:]))
		ret := int32(binary.BigEndian.Uint32(h[8:]))
		size := int32(binary.BigEndian.Uint32(h[16:]))
		if payload == -1 {
			if pings > 1000 {
				return nil, errors.New("more than 1,000 keep-alive pings without a reply")
			}
			continue
		}
		if ret < 0 {
			return nil, fmt.Errorf("error %d (%s)", -ret, owErrorText(-ret))
		}
		if payload < 0 || payload > owMaxReply {
			return nil, fmt.Errorf("reply header declares a payload of %d bytes (at most %d)", payload, owMaxReply)
		}
		data := make([]byte, payload)
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, fmt.Errorf("reply payload of %d bytes cut short: %w", payload, err)
		}
		if size >= 0 && size < payload {
			data = data[:size]
		}
		return data, nil
	}
}

// owErrorText names the errno values owserver returns most.
func owErrorText(e int32) string {
	switch e {
	case 2:
		return "no such device or property"
	case 5:
		return "input/output error on the bus"
	case 13:
		return "permission denied"
	case 22:
		return "invalid argument"
	case 110:
		return "timed out on the bus"
	}
	return "owserver error"
}
