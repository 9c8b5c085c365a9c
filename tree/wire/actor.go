package wire

import (
	"math"

	"github.com/tinylib/msgp/msgp"
)

// Actor messages: the asyncactor library's messages that MoaT-KV servers
// exchange on "<root>/ping" (reference spec §3.4). edgekv takes part in
// that group on a bus shared with MoaT-KV servers (tree/replica's actor).
//
//	{t: "init", node}
//	{t: "vers", node, cycle, gap, nodes, splits, n_hosts, version, force_in}
//	{t: "ping", node, value, history}
//	{t: "hist", value, history}        (node is history[0])
//
// A MoaT-KV server's value is [tock, tick], or nil before it has data.

// ActorType is the "t" of an actor message.
type ActorType uint8

// Actor message types.
const (
	ActorInit ActorType = iota + 1
	ActorVers
	ActorPing
	ActorHist
)

var actorTypeNames = [...]string{ActorInit: "init", ActorVers: "vers", ActorPing: "ping", ActorHist: "hist"}

func (t ActorType) String() string {
	if t >= ActorInit && t <= ActorHist {
		return actorTypeNames[t]
	}
	return "actor type ?"
}

// ActorSetup is a vers message's configuration: the group's timing. The
// highest Version wins network-wide.
type ActorSetup struct {
	Version int64
	Cycle   float64 // seconds between pings
	Gap     float64 // seconds of slack to agree on the next pinger
	Nodes   int64   // history length (-1: all)
	Splits  int64   // history entries sent with a ping
	NHosts  int64
	ForceIn int64
}

// MoaTPing is MoaT-KV 0.70's configuration of its servers' ping group
// (server.ping over asyncactor's defaults), as its vers message carries it.
var MoaTPing = ActorSetup{Version: 0, Cycle: 10, Gap: 2, Nodes: 5, Splits: 4, NHosts: 10, ForceIn: 0}

// ActorValue is a ping's value. A MoaT-KV server's is [tock, tick]; any
// other non-nil value is kept as Raw (msgpack), which compares above nil
// and by bytes against other raw values.
type ActorValue struct {
	Set        bool // false: nil
	Tock, Tick uint64
	Raw        []byte // a value that is not [tock, tick]
}

// Compare orders values as asyncactor's has_priority does: nil lowest,
// then [tock, tick] by tock and tick, then raw values.
func (v ActorValue) Compare(w ActorValue) int {
	switch {
	case !v.Set || !w.Set:
		return boolCmp(v.Set, w.Set)
	case (v.Raw == nil) != (w.Raw == nil):
		return boolCmp(v.Raw != nil, w.Raw != nil)
	case v.Raw != nil:
		return compareBytes(v.Raw, w.Raw)
	case v.Tock != w.Tock:
		return uintCmp(v.Tock, w.Tock)
	}
	return uintCmp(v.Tick, w.Tick)
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func uintCmp(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func compareBytes(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return uintCmp(uint64(a[i]), uint64(b[i]))
		}
	}
	return uintCmp(uint64(len(a)), uint64(len(b)))
}

// ActorMsg is one actor message.
type ActorMsg struct {
	Type    ActorType
	Node    string // the sender; for hist, History[0]
	Value   ActorValue
	History []string // ping, hist: the last pingers, most recent first
	Setup   ActorSetup
}

// AppendActor appends m in asyncactor's key order.
func AppendActor(b []byte, m ActorMsg) []byte {
	switch m.Type {
	case ActorInit:
		b = append(b, 0x82, 0xa1, 't', 0xa4, 'i', 'n', 'i', 't')
		b = append(b, kNode...)
		return msgp.AppendString(b, m.Node)
	case ActorVers:
		s := m.Setup
		if m.Node == "" { // as asyncactor's update_config sends it
			b = append(b, 0x88, 0xa1, 't', 0xa4, 'v', 'e', 'r', 's')
		} else {
			b = append(b, 0x89, 0xa1, 't', 0xa4, 'v', 'e', 'r', 's')
			b = append(b, kNode...)
			b = msgp.AppendString(b, m.Node)
		}
		b = appendNumber(msgp.AppendString(b, "cycle"), s.Cycle)
		b = appendNumber(msgp.AppendString(b, "gap"), s.Gap)
		b = msgp.AppendInt64(msgp.AppendString(b, "nodes"), s.Nodes)
		b = msgp.AppendInt64(msgp.AppendString(b, "splits"), s.Splits)
		b = msgp.AppendInt64(msgp.AppendString(b, "n_hosts"), s.NHosts)
		b = msgp.AppendInt64(msgp.AppendString(b, "version"), s.Version)
		return msgp.AppendInt64(msgp.AppendString(b, "force_in"), s.ForceIn)
	case ActorPing, ActorHist:
		if m.Type == ActorPing {
			b = append(b, 0x84, 0xa1, 't', 0xa4, 'p', 'i', 'n', 'g')
			b = append(b, kNode...)
			b = msgp.AppendString(b, m.Node)
		} else {
			b = append(b, 0x83, 0xa1, 't', 0xa4, 'h', 'i', 's', 't')
		}
		b = msgp.AppendString(b, "value")
		switch v := m.Value; {
		case !v.Set:
			b = msgp.AppendNil(b)
		case v.Raw != nil:
			b = append(b, v.Raw...)
		default:
			b = msgp.AppendArrayHeader(b, 2)
			b = msgp.AppendUint64(msgp.AppendUint64(b, v.Tock), v.Tick)
		}
		b = msgp.AppendString(b, "history")
		b = msgp.AppendArrayHeader(b, uint32(len(m.History)))
		for _, h := range m.History {
			b = msgp.AppendString(b, h)
		}
		return b
	}
	panic("wire: AppendActor of an invalid type")
}

// appendNumber writes a whole number as an integer (as Python's config
// values are) and anything else as a float64.
func appendNumber(b []byte, f float64) []byte {
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return msgp.AppendInt64(b, int64(f))
	}
	return msgp.AppendFloat64(b, f)
}

// DecodeActor decodes an actor message. Unknown keys are skipped; a
// missing or unknown "t", a ping or init without node, or a hist without
// history is an error.
func DecodeActor(b []byte) (ActorMsg, error) {
	m, rest, e := readActor(b)
	if e == nil {
		e = noTrailing(rest)
	}
	if e != nil {
		return ActorMsg{}, e.finish("actor message", len(b))
	}
	return m, nil
}

func readActor(b []byte) (ActorMsg, []byte, *Error) {
	var m ActorMsg
	n, rest, e := readMapHeader(b)
	if e != nil {
		return m, b, e
	}
	var seen uint16
	var setupSeen uint16
	for range n {
		at := rest
		k, ok, r, e := readKey(rest)
		if e != nil {
			return m, b, e
		}
		rest = r
		if !ok {
			if rest, e = skipValue(rest, 0); e != nil {
				return m, b, e.in("value of a non-string key")
			}
			continue
		}
		var bit uint16
		switch string(k) {
		case "t":
			bit = 1
			var t []byte
			if t, rest, e = readStr(rest); e == nil {
				switch string(t) {
				case "init":
					m.Type = ActorInit
				case "vers":
					m.Type = ActorVers
				case "ping":
					m.Type = ActorPing
				case "hist":
					m.Type = ActorHist
				default:
					e = fail(at, "unknown actor message type %q", t)
				}
			}
		case "node":
			bit = 2
			if isNil(rest) {
				rest = rest[1:]
			} else {
				m.Node, rest, e = readName(rest)
			}
		case "value":
			bit = 4
			m.Value, rest, e = readActorValue(rest)
		case "history":
			bit = 8
			m.History, rest, e = readNameList(rest)
		case "cycle", "gap":
			bit = 16
			if k[0] == 'g' {
				bit = 32
			}
			var f float64
			if f, rest, e = readNumber(rest); e == nil {
				if k[0] == 'c' {
					m.Setup.Cycle = f
				} else {
					m.Setup.Gap = f
				}
			}
		case "nodes", "splits", "n_hosts", "version", "force_in":
			bits := map[string]uint16{"nodes": 64, "splits": 128, "n_hosts": 256, "version": 512, "force_in": 1024}
			bit = bits[string(k)]
			setupSeen |= bit
			var i int64
			if i, rest, e = readSmallInt(rest); e == nil {
				switch string(k) {
				case "nodes":
					m.Setup.Nodes = i
				case "splits":
					m.Setup.Splits = i
				case "n_hosts":
					m.Setup.NHosts = i
				case "version":
					m.Setup.Version = i
				case "force_in":
					m.Setup.ForceIn = i
				}
			}
		default:
			rest, e = skipValue(rest, 0)
		}
		if bit != 0 {
			if seen&bit != 0 {
				return m, b, fail(at, "duplicate key %q", k)
			}
			seen |= bit
		}
		if e != nil {
			return m, b, e.inKey(string(k))
		}
	}
	switch {
	case seen&1 == 0:
		return m, b, fail(b, "missing key \"t\"")
	case m.Type == ActorHist:
		if len(m.History) == 0 {
			return m, b, fail(b, "hist message without history")
		}
		m.Node = m.History[0]
	case m.Node == "" && m.Type != ActorVers: // update_config sends vers without node
		return m, b, fail(b, "%s message without node", m.Type)
	case m.Type == ActorVers:
		if seen&(16|32) != 16|32 {
			return m, b, fail(b, "vers message without cycle and gap")
		}
		if !(m.Setup.Cycle >= 1 && m.Setup.Gap >= 0 && m.Setup.Cycle >= 3*m.Setup.Gap) || m.Setup.Cycle > 86400 {
			return m, b, fail(b, "vers message with cycle %g and gap %g (want 1 ≤ cycle ≤ 86400, 0 ≤ 3·gap ≤ cycle)", m.Setup.Cycle, m.Setup.Gap)
		}
		if setupSeen&64 == 0 {
			m.Setup.Nodes = MoaTPing.Nodes
		}
		if setupSeen&128 == 0 {
			m.Setup.Splits = MoaTPing.Splits
		}
		if setupSeen&256 == 0 {
			m.Setup.NHosts = MoaTPing.NHosts
		}
	}
	return m, rest, nil
}

// readActorValue reads nil, [tock, tick], or keeps any other value raw.
func readActorValue(b []byte) (ActorValue, []byte, *Error) {
	if isNil(b) {
		return ActorValue{}, b[1:], nil
	}
	rest, e := skipValue(b, 0)
	if e != nil {
		return ActorValue{}, b, e
	}
	raw := b[:len(b)-len(rest)]
	if n, r, e := readArrayHeader(raw); e == nil && n == 2 {
		if tock, r2, e := readUint(r); e == nil {
			if tick, r3, e := readUintOrNil(r2); e == nil && len(r3) == 0 {
				return ActorValue{Set: true, Tock: tock, Tick: tick}, rest, nil
			}
		}
	}
	return ActorValue{Set: true, Raw: raw}, rest, nil
}

// readNumber reads an integer or a float as float64.
func readNumber(b []byte) (float64, []byte, *Error) {
	switch msgp.NextType(b) {
	case msgp.Float64Type:
		f, rest, err := msgp.ReadFloat64Bytes(b)
		if err != nil {
			return 0, b, failCause(b, err, "want a number")
		}
		return f, rest, nil
	case msgp.Float32Type:
		f, rest, err := msgp.ReadFloat32Bytes(b)
		if err != nil {
			return 0, b, failCause(b, err, "want a number")
		}
		return float64(f), rest, nil
	}
	i, u, big, rest, e := readInt(b)
	if e != nil {
		return 0, b, e
	}
	if big {
		return float64(u), rest, nil
	}
	return float64(i), rest, nil
}

// readSmallInt reads an integer that fits in 32 bits.
func readSmallInt(b []byte) (int64, []byte, *Error) {
	i, _, big, rest, e := readInt(b)
	if e != nil {
		return 0, b, e
	}
	if big || i < math.MinInt32 || i > math.MaxInt32 {
		return 0, b, fail(b, "integer out of range")
	}
	return i, rest, nil
}
