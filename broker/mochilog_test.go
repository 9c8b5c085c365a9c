package broker

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestMochiLog: a client that has gone is not worth a warning, and no
// line dumps a whole packet.
func TestMochiLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(mochiLog{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})}).With("component", "mqtt")
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, PacketID: 7, TopicName: "kv/x"}
	log.Warn("error processing packet", "error", fmt.Errorf("write: %w", syscall.EPIPE), "client", "c1", "pk", pk)
	if buf.Len() != 0 {
		t.Fatalf("a broken pipe was logged at info or above: %s", buf.String())
	}
	log.Warn("error processing packet", "error", packets.ErrProtocolViolation, "client", "c2", "pk", pk)
	got := buf.String()
	if !strings.Contains(got, "level=WARN") || !strings.Contains(got, `packet="type 3 id 7 topic \"kv/x\""`) || strings.Contains(got, "Connect") {
		t.Fatalf("log line %q: want a warning with the packet described, not dumped", got)
	}
	log.Info("something else", "a", 1)
	if !strings.Contains(buf.String(), "something else") {
		t.Fatal("other lines are dropped")
	}
}
