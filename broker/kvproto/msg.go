package kvproto

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// msg_send and msg_monitor pass messages through the node's message bus
// (MoaT-KV: its MQTT or Serf backend; edgekv: its embedded MQTT broker).
//
// Topics. A topic is a string or a path (a plain array or extension type
// 3) of string and integer elements; the elements, joined with '/', are
// the MQTT topic. As in MoaT-KV, msg_send takes a string as one element
// ("a/b" is the topic a/b) and msg_monitor parses a string as path text
// ("a.b" and "a/b" are both a/b; "a.#" is a/#). A first element that
// starts with ':' stands for the bus root (Messenger.BusRoot) followed by
// the rest of that element: [":run", "x"] is "<root>/run/x", [":"] the
// root itself. (MoaT-KV 0.70 meant the same but looks up a configuration
// key that does not exist and keeps the ':' element; reference spec §11
// item 15.) msg_send needs a topic name (no '+' or '#'); msg_monitor takes
// a filter ('+' and '#' as whole levels, '#' last).
//
// msg_send {topic, data | raw}: data is any msgpack value and is published
// as its msgpack bytes, exactly as the client encoded it; raw is a binary
// string published as it is; exactly one of the two. Reply {seq, tock}
// (MoaT-KV returns nothing). A topic the node keeps for itself is refused
// with kind "permission".
//
// msg_monitor {topic, raw?} is a stream: {state: start} once the monitor
// is subscribed, then one message per bus message published after that
// (retained messages are not replayed), in the order the bus delivered
// them:
// {topic: [levels], data: value} when the payload is one msgpack value,
// else {topic, raw: payload, error: why}; with raw: true always
// {topic, raw}. Each carries seq, wseq and a fresh tock. It ends when the
// client stops it (stop) or the connection ends. A monitor that falls
// behind (the client reads too slowly, or does not acknowledge within the
// flow-control window) is not allowed to hold up the bus: once the node's
// queue for it is full, the stream ends with an error and {state: end}, as
// an overflowing watch does.

// BusMessage is one message a monitor saw on the bus.
type BusMessage struct {
	Topic   string // MQTT topic name
	Payload []byte
}

// Messenger is implemented by a Tree that reaches the node's message bus.
type Messenger interface {
	// BusRoot is the topic that a first topic element starting with ':'
	// stands for (MoaT-KV's server root): levels joined with '/'.
	BusRoot() string
	// Publish publishes payload on topic (an MQTT topic name). A topic
	// the node keeps for itself is an error wrapping ErrReservedTopic.
	Publish(ctx context.Context, topic string, payload []byte) error
	// Monitor subscribes to filter (an MQTT topic filter), calls ready
	// once the subscription is in place, then calls deliver, in order,
	// for every message published on a matching topic, until ctx ends
	// (it returns nil) or deliver fails (it returns that error). It never
	// blocks the bus: messages wait in a bounded queue, and a monitor
	// whose queue overflows ends with an error after delivering what was
	// queued. It never skips messages silently.
	Monitor(ctx context.Context, filter string, ready func(), deliver func(BusMessage) error) error
}

// ErrReservedTopic marks a topic that msg_send may not publish on; the
// client gets an error of kind "permission".
var ErrReservedTopic = errors.New("kvproto: reserved topic")

// maxTopic is the longest MQTT topic.
const maxTopic = 65535

// busTopic reads the topic key of msg_send (filter false) or msg_monitor
// (filter true) and returns the MQTT topic, or an invalid-request error.
func busTopic(req Request, a args, filter bool, root string) (string, error) {
	v, ok := a["topic"]
	if !ok || msgp.IsNil(v) {
		return "", invalid(req, "%s: no topic", req.Action)
	}
	var elems tree.Path
	switch {
	case msgp.NextType(v) == msgp.StrType:
		s, _, err := a.str("topic")
		if err != nil {
			return "", invalid(req, "%s: %v", req.Action, err)
		}
		if !filter {
			elems = tree.Path{tree.Str(s)}
		} else if elems, err = tree.ParsePath(s); err != nil {
			return "", invalid(req, "%s: topic %q: %v", req.Action, s, err)
		}
	default:
		p, rest, err := tree.ReadPath(v)
		if err != nil || len(rest) != 0 {
			return "", invalid(req, "%s: topic: want a string or a list of strings, got %s", req.Action, wire.Describe(v))
		}
		elems = p
	}
	levels := make([]string, 0, len(elems)+4)
	for i, e := range elems {
		switch e.Kind() {
		case tree.KindString:
			s := e.StrVal()
			if i == 0 && strings.HasPrefix(s, ":") {
				if root != "" {
					levels = append(levels, strings.Split(root, "/")...)
				}
				if s = s[1:]; s == "" {
					continue
				}
			}
			levels = append(levels, s)
		case tree.KindInt:
			levels = append(levels, strconv.FormatInt(e.IntVal(), 10))
		default:
			return "", invalid(req, "%s: topic element %d: want a string or an integer, got %s", req.Action, i, tree.Path{e})
		}
	}
	if len(levels) == 0 {
		return "", invalid(req, "%s: empty topic", req.Action)
	}
	topic := strings.Join(levels, "/")
	if msg := checkTopic(topic, filter); msg != "" {
		return "", invalid(req, "%s: topic %q: %s", req.Action, topic, msg)
	}
	return topic, nil
}

// checkTopic says why topic is not an MQTT topic name (filter false) or
// topic filter ("" if it is one).
func checkTopic(topic string, filter bool) string {
	switch {
	case len(topic) > maxTopic:
		return fmt.Sprintf("%d bytes long (MQTT allows %d)", len(topic), maxTopic)
	case !utf8.ValidString(topic) || strings.ContainsRune(topic, 0):
		return "not valid UTF-8, or contains NUL"
	case !filter && strings.ContainsAny(topic, "+#"):
		return "a topic to publish on may not contain '+' or '#'"
	}
	if filter {
		levels := strings.Split(topic, "/")
		for i, l := range levels {
			switch {
			case l == "#" && i != len(levels)-1:
				return "'#' must be the last level"
			case l != "+" && l != "#" && strings.ContainsAny(l, "+#"):
				return "'+' and '#' must be whole levels"
			}
		}
	}
	return ""
}

// msgSend serves msg_send.
func (s *Server) msgSend(ctx context.Context, req Request) ([]byte, error) {
	m, ok := s.Tree.(Messenger)
	if !ok {
		return nil, unsupported(req)
	}
	a, err := readArgs(req)
	if err != nil {
		return nil, err
	}
	topic, err := busTopic(req, a, false, m.BusRoot())
	if err != nil {
		return nil, err
	}
	data, hasData := a["data"]
	raw, hasRaw := a["raw"]
	var payload []byte
	switch {
	case hasData && hasRaw:
		return nil, invalid(req, "msg_send: give data or raw, not both")
	case hasRaw:
		if msgp.NextType(raw) != msgp.BinType {
			return nil, invalid(req, "msg_send: raw: want binary data, got %s", wire.Describe(raw))
		}
		if payload, _, err = msgp.ReadBytesZC(raw); err != nil {
			return nil, invalid(req, "msg_send: raw: %v", err)
		}
	case hasData:
		payload = data // one msgpack value (the frame reader checked it)
	default:
		return nil, invalid(req, "msg_send: no data (or raw)")
	}
	if err := m.Publish(ctx, topic, payload); err != nil {
		if errors.Is(err, ErrReservedTopic) {
			return nil, &RequestError{Seq: req.Seq, HasSeq: true, Kind: tree.KindPermission, Msg: "msg_send: " + err.Error()}
		}
		return nil, err
	}
	tock, _ := s.Tree.Tock(ctx)
	b := msgp.AppendMapHeader(nil, 2)
	b = msgp.AppendUint64(appendKey(b, "seq"), req.Seq)
	return msgp.AppendUint64(appendKey(b, "tock"), tock), nil
}

// msgMonitor serves msg_monitor as a stream.
func (s *Server) msgMonitor(ctx context.Context, req Request, send streamSend) {
	fail := func(err error) { send(0, s.handle(ctx, req, err)) }
	m, ok := s.Tree.(Messenger)
	if !ok {
		fail(unsupported(req))
		return
	}
	a, err := readArgs(req)
	if err != nil {
		fail(err)
		return
	}
	filter, err := busTopic(req, a, true, m.BusRoot())
	if err != nil {
		fail(err)
		return
	}
	raw, err := a.bool("raw")
	if err != nil {
		fail(invalid(req, "msg_monitor: %v", err))
		return
	}
	st := &stream{s: s, ctx: ctx, seq: req.Seq, path: req.Path, send: send}
	started := false
	err = m.Monitor(ctx, filter, func() {
		started = true
		st.state("start")
	}, func(bm BusMessage) error {
		st.wseq++
		st.send(st.wseq, appendBusMessage(nil, bm, raw, req.Seq, st.wseq, st.tock()))
		return nil
	})
	switch {
	case err == nil || ctx.Err() != nil:
	case !started:
		fail(err) // no subscription: a plain error reply
	default:
		st.fail(err)
		st.state("end")
	}
}

// appendBusMessage appends one monitored message in MoaT-KV's key order:
// {topic, data | raw[, error], seq, wseq, tock}.
func appendBusMessage(b []byte, bm BusMessage, raw bool, seq, wseq, tock uint64) []byte {
	var why string
	if !raw {
		if len(bm.Payload) == 0 {
			why = "empty payload"
		} else if rest, msg := skip(bm.Payload); msg != "" {
			why = "payload is not msgpack: " + msg
		} else if len(rest) != 0 {
			why = fmt.Sprintf("payload is not one msgpack value: %d bytes after it", len(rest))
		}
	}
	n := uint32(5)
	if why != "" {
		n++
	}
	b = msgp.AppendMapHeader(b, n)
	b = appendKey(b, "topic")
	levels := strings.Split(bm.Topic, "/")
	b = msgp.AppendArrayHeader(b, uint32(len(levels)))
	for _, l := range levels {
		b = msgp.AppendString(b, l)
	}
	switch {
	case raw:
		b = msgp.AppendBytes(appendKey(b, "raw"), bm.Payload)
	case why != "":
		b = msgp.AppendBytes(appendKey(b, "raw"), bm.Payload)
		b = msgp.AppendString(appendKey(b, "error"), why)
	default:
		b = append(appendKey(b, "data"), bm.Payload...)
	}
	b = msgp.AppendUint64(appendKey(b, "seq"), seq)
	b = msgp.AppendUint64(appendKey(b, "wseq"), wseq)
	return msgp.AppendUint64(appendKey(b, "tock"), tock)
}
