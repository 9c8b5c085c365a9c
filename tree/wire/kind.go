package wire

import "fmt"

// Kind is the kind of a sync message. Each kind has its own topic, the
// link's topic prefix (e.g. "moat/kv/") followed by TopicSuffix. The zero
// Kind is not a valid kind.
type Kind uint8

// Message kinds. Update, Info and Ping are MoaT-KV's; the others are
// edgekv's additions on their own topics, which MoaT-KV does not subscribe
// to.
const (
	KindUpdate Kind = iota + 1
	KindInfo
	KindHello
	KindDigest
	KindHeartbeat
	KindBatch
	KindHeads
	// KindPing: asyncactor messages of MoaT-KV's server group (ActorMsg).
	KindPing
)

var kindNames = [...]string{
	KindUpdate:    "update",
	KindInfo:      "info",
	KindHello:     "hello",
	KindDigest:    "digest",
	KindHeartbeat: "heartbeat",
	KindBatch:     "batch",
	KindHeads:     "heads",
	KindPing:      "ping",
}

var kindTopics = [...]string{
	KindUpdate:    "update",
	KindInfo:      "info",
	KindHello:     "edgekv/hello",
	KindDigest:    "edgekv/digest",
	KindHeartbeat: "edgekv/heartbeat",
	KindBatch:     "edgekv/batch",
	KindHeads:     "edgekv/heads",
	KindPing:      "ping",
}

// Valid reports whether k is one of the defined kinds.
func (k Kind) Valid() bool { return k >= KindUpdate && k <= KindPing }

func (k Kind) String() string {
	if k.Valid() {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// TopicSuffix is the topic of k's messages below the link's topic prefix:
// "update", "info", "edgekv/hello", "edgekv/digest", "edgekv/heartbeat",
// "edgekv/batch", "edgekv/heads" or "ping". It is "" for an invalid kind.
func (k Kind) TopicSuffix() string {
	if k.Valid() {
		return kindTopics[k]
	}
	return ""
}

// KindForTopicSuffix returns the kind whose TopicSuffix is s. Other topics
// (MoaT-KV's del group, client traffic) report false.
func KindForTopicSuffix(s string) (Kind, bool) {
	for k := KindUpdate; k <= KindPing; k++ {
		if kindTopics[k] == s {
			return k, true
		}
	}
	return 0, false
}
