package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// Retained messages of KV topics come from the tree (issue 9): no second
// copy in the broker. These tests hold the node, as its own process, to
// MQTT's behaviour with real clients (paho, mosquitto_sub): every value
// once, none older after a newer one, before and after writes, with '#'
// and '+', after deletes and a restart, and for a subscriber that arrives
// while writes go on.

// recorder collects what a paho subscriber receives, per topic, in order.
type recorder struct {
	mu   sync.Mutex
	msgs map[string][]string
	ret  map[string]int // how many came with the retain flag
	n    int
}

func newRecorder() *recorder { return &recorder{msgs: map[string][]string{}, ret: map[string]int{}} }

func (r *recorder) on(p *paho.Publish) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs[p.Topic] = append(r.msgs[p.Topic], string(p.Payload))
	if p.Retain {
		r.ret[p.Topic]++
	}
	r.n++
}

// forget drops what came on topic.
func (r *recorder) forget(topic string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n -= len(r.msgs[topic])
	delete(r.msgs, topic)
	delete(r.ret, topic)
}

func (r *recorder) has(topic string, n int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs[topic]) >= n
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *recorder) snapshot() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]string, len(r.msgs))
	for k, v := range r.msgs {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// subscribeQoS1 subscribes c to filter at QoS 1.
func subscribeQoS1(t *testing.T, c *paho.Client, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if err != nil || len(sa.Reasons) != 1 || sa.Reasons[0] != 1 {
		t.Fatalf("subscribe %s: %v %+v", filter, err, sa)
	}
}

// waitCount waits until r has received want messages in all.
func waitCount(t *testing.T, r *recorder, want int, what string) {
	t.Helper()
	eventually(t, 30*time.Second, what, func() error {
		if got := r.count(); got < want {
			return fmt.Errorf("%d of %d messages", got, want)
		}
		return nil
	})
}

// TestE2ERetainedFromTree: subscribers before and after writes, with '#'
// and '+', see every entry once; deletes remove retained messages; a
// restart serves the same retained messages from the store.
func TestE2ERetainedFromTree(t *testing.T) {
	dir := t.TempDir()
	c := e2eCfg{name: "board1", port: freePorts(t, 1)[0], data: filepath.Join(dir, "data")}
	node := startNodeCfg(t, dir, "", c)

	early := newRecorder()
	sub := dialMQTT(t, c.port, "early", "", "", early.on)
	subscribeQoS1(t, sub, "kv/ret/#")
	earlyPlus := newRecorder()
	subPlus := dialMQTT(t, c.port, "early-plus", "", "", earlyPlus.on)
	subscribeQoS1(t, subPlus, "kv/ret/+/meta")

	const groups, n = 30, 1500
	w := dialMQTT(t, c.port, "writer", "", "", nil)
	// A subscription's retained walk runs after its SUBACK; what is
	// written before the walk reaches it comes from the walk, retained.
	// A sentinel that sorts after every entry below (and matches both
	// filters) shows when both walks are past: set, seen, deleted, seen.
	const sentinel = "kv/ret/~walked/meta"
	mustPublish(t, w, sentinel, "1")
	eventually(t, 10*time.Second, "the sentinel", func() error {
		if !early.has(sentinel, 1) || !earlyPlus.has(sentinel, 1) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	mustPublish(t, w, sentinel, "")
	eventually(t, 10*time.Second, "the sentinel's deletion", func() error {
		if !early.has(sentinel, 2) || !earlyPlus.has(sentinel, 2) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	early.forget(sentinel)
	earlyPlus.forget(sentinel)
	want := map[string]string{}
	for i := range n {
		topic := fmt.Sprintf("kv/ret/%d/%d", i%groups, i)
		mustPublish(t, w, topic, strconv.Itoa(i))
		want[topic] = strconv.Itoa(i)
	}
	for g := range groups {
		topic := fmt.Sprintf("kv/ret/%d/meta", g)
		mustPublish(t, w, topic, fmt.Sprintf(`{"group":%d}`, g))
		want[topic] = fmt.Sprintf(`{"group":%d}`, g)
	}

	// Subscribed before the writes: each write once, live (not retained).
	waitCount(t, early, n+groups, "early '#' subscriber")
	waitCount(t, earlyPlus, groups, "early '+' subscriber")
	time.Sleep(300 * time.Millisecond) // anything extra would arrive now
	checkOnce(t, "early #", early, want, false)
	wantMeta := map[string]string{}
	for g := range groups {
		k := fmt.Sprintf("kv/ret/%d/meta", g)
		wantMeta[k] = want[k]
	}
	checkOnce(t, "early +", earlyPlus, wantMeta, false)

	// Subscribed after: every entry retained, once (mosquitto_sub and paho).
	if got := dumpRetained(t, c.port, "kv/ret"); !sameMap(got, want) {
		t.Fatalf("mosquitto_sub kv/ret/#: %d retained messages, want %d (%s)", len(got), len(want), firstDiff(got, want))
	}
	late := newRecorder()
	lateSub := dialMQTT(t, c.port, "late", "", "", late.on)
	subscribeQoS1(t, lateSub, "kv/ret/+/meta")
	waitCount(t, late, groups, "late '+' subscriber")
	time.Sleep(300 * time.Millisecond)
	checkOnce(t, "late +", late, wantMeta, true)
	group7 := newRecorder()
	g7 := dialMQTT(t, c.port, "group7", "", "", group7.on)
	subscribeQoS1(t, g7, "kv/ret/7/+")
	wantG7 := map[string]string{}
	for k, v := range want {
		var g int
		var rest string
		if _, err := fmt.Sscanf(k, "kv/ret/%d/%s", &g, &rest); err == nil && g == 7 {
			wantG7[k] = v
		}
	}
	waitCount(t, group7, len(wantG7), "'kv/ret/7/+' subscriber")
	time.Sleep(300 * time.Millisecond)
	checkOnce(t, "late kv/ret/7/+", group7, wantG7, true)

	// Deletes: current subscribers see an empty payload; the retained
	// messages are gone.
	for i := 0; i < n; i += 15 {
		topic := fmt.Sprintf("kv/ret/%d/%d", i%groups, i)
		mustPublish(t, w, topic, "")
		delete(want, topic)
	}
	waitCount(t, early, n+groups+n/15, "deletes at the early subscriber")
	if got := dumpRetained(t, c.port, "kv/ret"); !sameMap(got, want) {
		t.Fatalf("after deletes: %d retained messages, want %d (%s)", len(got), len(want), firstDiff(got, want))
	}

	// Restart: the same retained messages, from the store.
	if took := node.stop(syscall.SIGTERM); took > 5*time.Second {
		t.Errorf("SIGTERM took %v", took)
	}
	node.restart()
	if got := dumpRetained(t, c.port, "kv/ret"); !sameMap(got, want) {
		t.Fatalf("after a restart: %d retained messages, want %d (%s)", len(got), len(want), firstDiff(got, want))
	}
}

// TestE2ERetainedWhileWriting: a subscriber that arrives while a writer
// goes round 400 keys gets, for each key, values that only go forward
// (never one twice, never an older after a newer) and ends with the last;
// one subscribed from the start gets every value once, in order.
func TestE2ERetainedWhileWriting(t *testing.T) {
	dir := t.TempDir()
	c := e2eCfg{name: "board1", port: freePorts(t, 1)[0], data: filepath.Join(dir, "data")}
	startNodeCfg(t, dir, "", c)
	const keys, rounds = 400, 15
	first := newRecorder()
	subscribeQoS1(t, dialMQTT(t, c.port, "first", "", "", first.on), "kv/live/#")
	w := dialMQTT(t, c.port, "writer", "", "", nil)
	mid := newRecorder()
	var midSub *paho.Client
	for r := 1; r <= rounds; r++ {
		for k := range keys {
			mustPublish(t, w, fmt.Sprintf("kv/live/%d", k), strconv.Itoa(r))
			if r == 3 && k == keys/2 {
				// Subscribe from another goroutine while writes go on.
				done := make(chan *paho.Client)
				go func() {
					cl, err := tryDialMQTT(c.port, "mid", "", "", mid.on)
					if err != nil {
						t.Error(err)
						close(done)
						return
					}
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					if _, err := cl.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "kv/live/#", QoS: 1}}}); err != nil {
						t.Error(err)
					}
					done <- cl
				}()
				defer func() {
					if midSub = <-done; midSub != nil {
						_ = midSub.Disconnect(&paho.Disconnect{})
					}
				}()
			}
		}
	}
	final := strconv.Itoa(rounds)
	eventually(t, 30*time.Second, "the late subscriber has every key's last value", func() error {
		got := mid.snapshot()
		for k := range keys {
			v := got[fmt.Sprintf("kv/live/%d", k)]
			if len(v) == 0 || v[len(v)-1] != final {
				return fmt.Errorf("kv/live/%d: %v", k, v)
			}
		}
		return nil
	})
	waitCount(t, first, keys*rounds, "the first subscriber")
	time.Sleep(300 * time.Millisecond)
	for topic, vals := range mid.snapshot() {
		for i := 1; i < len(vals); i++ {
			a, _ := strconv.Atoi(vals[i-1])
			b, _ := strconv.Atoi(vals[i])
			if b <= a {
				t.Fatalf("late subscriber, %s: %v (repeated or older after newer)", topic, vals)
			}
		}
	}
	for topic, vals := range first.snapshot() {
		if len(vals) != rounds {
			t.Fatalf("first subscriber, %s: %v, want 1..%d once each", topic, vals, rounds)
		}
		for i, v := range vals {
			if v != strconv.Itoa(i+1) {
				t.Fatalf("first subscriber, %s: %v, want 1..%d in order", topic, vals, rounds)
			}
		}
	}
	mid.mu.Lock()
	retained := len(mid.ret)
	mid.mu.Unlock()
	if retained == 0 {
		t.Errorf("the late subscriber got no retained message: it subscribed after the writes began, so some must come from the tree")
	}
	t.Logf("late subscriber: %d messages, %d topics with a retained one", mid.count(), retained)
}

// checkOnce checks that r received exactly want, each topic once, with
// the retain flag set or not.
func checkOnce(t *testing.T, what string, r *recorder, want map[string]string, retained bool) {
	t.Helper()
	got := r.snapshot()
	if len(got) != len(want) {
		t.Fatalf("%s: %d topics, want %d", what, len(got), len(want))
	}
	for k, v := range want {
		if vs := got[k]; len(vs) != 1 || vs[0] != v {
			t.Fatalf("%s: %s = %v, want [%s] once", what, k, vs, v)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range want {
		if (r.ret[k] == 1) != retained {
			t.Fatalf("%s: %s retain flag %v, want %v", what, k, r.ret[k] == 1, retained)
		}
	}
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func firstDiff(got, want map[string]string) string {
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			return fmt.Sprintf("%s: got %q (present %v), want %q", k, g, ok, v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			return fmt.Sprintf("%s = %q not expected", k, v)
		}
	}
	return "no difference"
}

// TestE2ERootEntry: the tree's root is the topic "kv" itself, which
// "kv/#" matches: a value written there goes out live and is served
// retained, as any other entry's.
func TestE2ERootEntry(t *testing.T) {
	dir := t.TempDir()
	c := e2eCfg{name: "board1", port: freePorts(t, 1)[0], data: filepath.Join(dir, "data")}
	startNodeCfg(t, dir, "", c)
	early := newRecorder()
	sub := dialMQTT(t, c.port, "early", "", "", early.on)
	subscribeQoS1(t, sub, "kv/#")
	w := dialMQTT(t, c.port, "writer", "", "", nil)
	mustPublish(t, w, "kv", `"top"`)
	mustPublish(t, w, "kv/a", "1")
	waitCount(t, early, 2, "'kv/#' subscriber")
	want := map[string]string{"kv": `"top"`, "kv/a": "1"}
	checkOnce(t, "live kv/#", early, want, false)
	if got := dumpRetained(t, c.port, "kv"); !sameMap(got, want) {
		t.Fatalf("mosquitto_sub kv/#: %v, want %v", got, want)
	}
}
