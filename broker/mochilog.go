package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"

	"github.com/mochi-mqtt/server/v2/packets"
)

// mochiLog wraps the handler mochi logs to. mochi warns "error processing
// packet" with the whole packet struct (every field of every packet kind,
// an empty CONNECT included) also when the only problem is that the client
// has gone (broken pipe, connection reset): those are logged at debug, and
// every such line carries a short description of the packet instead of the
// dump.
type mochiLog struct{ slog.Handler }

func (h mochiLog) WithAttrs(as []slog.Attr) slog.Handler { return mochiLog{h.Handler.WithAttrs(as)} }
func (h mochiLog) WithGroup(name string) slog.Handler    { return mochiLog{h.Handler.WithGroup(name)} }

func (h mochiLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != "error processing packet" {
		return h.Handler.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "pk":
			if pk, ok := a.Value.Any().(packets.Packet); ok {
				a = slog.String("packet", describePacket(pk))
			}
		case "error":
			if err, ok := a.Value.Any().(error); ok && clientGone(err) {
				out.Level = slog.LevelDebug
			}
		}
		out.AddAttrs(a)
		return true
	})
	if !h.Handler.Enabled(ctx, out.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, out)
}

// clientGone reports whether err only says that the connection is gone.
func clientGone(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}

// describePacket is a one-line description of pk: its type, id and topic.
func describePacket(pk packets.Packet) string {
	s := fmt.Sprintf("type %d id %d", pk.FixedHeader.Type, pk.PacketID)
	if pk.TopicName != "" {
		s += fmt.Sprintf(" topic %q", pk.TopicName)
	}
	return s
}
