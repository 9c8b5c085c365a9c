package runner

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
)

// fakeHW is a Hardware with one sensor and one output.
type fakeHW struct {
	mu     sync.Mutex
	temp   float64
	driven []bool
}

func (h *fakeHW) ReadSensor(_ context.Context, p tree.Path) (float64, error) {
	if p.String() != "room.temp" {
		return 0, errors.New("no sensor bound at " + p.String())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.temp, nil
}

func (h *fakeHW) DriveOutput(_ context.Context, p tree.Path, on bool) error {
	if p.String() != "room.heat" {
		return errors.New("no output bound at " + p.String())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.driven = append(h.driven, on)
	return nil
}

// TestAPI: the kv module's calls from one job, each result written to
// the tree for the test to read: conditions on set and delete, events in
// order (the fetched entries of both watches, one ready, then changes,
// then a timer), the group's state, hardware.
func TestAPI(t *testing.T) {
	e := engine(t, "n1")
	put(t, e, path(t, "src.a"), int64(1))
	put(t, e, path(t, "src.b"), int64(2))
	put(t, e, path(t, "src2.z"), int64(26))
	hw := &fakeHW{temp: 21.5}
	setCode(t, e, "api", `
log := func(s) { state.log = append(state.log, s) }
if event.type == "start" {
	state.log = []
	kv.set("t.absent", 1, {absent: true})
	r := kv.set("t.absent", 2, {absent: true})
	kv.set("t.absent_failed", is_error(r))
	kv.set("t.prev_ok", kv.set("t.absent", 3, {prev: 1}))
	kv.set("t.prev_bad", is_error(kv.set("t.absent", 4, {prev: 1})))
	kv.set("t.del_bad", is_error(kv.delete("t.absent", {prev: 1})))
	kv.set("t.del_ok", kv.delete("t.absent", {prev: 3}))
	kv.set("t.del_none", kv.delete("t.absent"))
	kv.set("t.get_none", is_undefined(kv.get("t.nothing")))
	kv.set("t.group", kv.group())
	kv.set("t.temp", kv.hw.read("room.temp"))
	kv.set("t.hw_bad", is_error(kv.hw.read("room.nothing")))
	kv.hw.drive("room.heat", true)
	kv.set("t.data", [x, y])
	kv.watch("src")
	kv.watch("src2")
} else if event.type == "change" {
	log(event.path + "=" + string(event.value))
	if event.path == "src.c" { kv.timer("once", 0.05) }
} else if event.type == "ready" {
	log("ready")
} else if event.type == "timer" {
	log("timer " + event.name)
	kv.set("t.log", state.log)
	kv.exit("bye")
}
`, []string{"x", "y"}, map[string]any{"x": int64(1), "y": "default"})
	setJob(t, e, at(pre.Run, "at", "n1", "default", "api"), "api", map[string]any{"x": int64(5)}, nil)
	var ms members
	ms.set("n2", false)
	startRunner(t, e, Config{Node: "n1", HW: hw, Members: ms.get})
	eventually(t, "the start activation", func() bool { return value(t, e, path(t, "t.data")) != nil })
	put(t, e, path(t, "src.c"), int64(3))
	eventually(t, "the job's exit", func() bool { return state(t, e, at(pre.State, "at", "n1", "default", "api")).Result == "bye" })
	for p, want := range map[string]any{
		"t.absent_failed": true, "t.prev_ok": true, "t.prev_bad": true, "t.del_bad": true, "t.del_ok": true,
		"t.del_none": false, "t.get_none": true, "t.temp": 21.5, "t.hw_bad": true,
	} {
		if got := value(t, e, path(t, p)); got != want {
			t.Errorf("%s = %#v, want %#v", p, got, want)
		}
	}
	if d, _ := value(t, e, path(t, "t.data")).([]any); len(d) != 2 || d[0] != int64(5) || d[1] != "default" {
		t.Errorf("variables: %v, want the data's x over the default, y from the default", d)
	}
	if g, _ := value(t, e, path(t, "t.group")).(map[string]any); g["state"] != "complete" || !slices.Equal(g["live"].([]any), []any{"n1"}) {
		t.Errorf("group %v", g) // only n1 runs a runner here: n2 is not a member
	}
	log, _ := value(t, e, path(t, "t.log")).([]any)
	var lines []string
	for _, l := range log {
		lines = append(lines, l.(string))
	}
	// Each watch's events in order (the two watches interleave as they
	// come), one ready after all fetched entries, then the change, the timer.
	got := strings.Join(lines, ", ")
	ia, ib := slices.Index(lines, "src.a=1"), slices.Index(lines, "src.b=2")
	if len(lines) != 6 || ia < 0 || ib < ia || !slices.Contains(lines[:3], "src2.z=26") ||
		strings.Join(lines[3:], ", ") != "ready, src.c=3, timer once" {
		t.Errorf("events: %s", got)
	}
	hw.mu.Lock()
	if !slices.Equal(hw.driven, []bool{true}) {
		t.Errorf("driven %v", hw.driven)
	}
	hw.mu.Unlock()
}

// TestRepeatAndOkAfter: a job with repeat runs again that long after each
// good end; one that failed before and then runs longer than ok_after
// counts as working (backoff 0) while it still runs.
func TestRepeatAndOkAfter(t *testing.T) {
	e := engine(t, "n1")
	setCode(t, e, "count", `
n := kv.get("runs")
if is_undefined(n) { n = 0 }
kv.set("runs", n + 1)`, nil, nil)
	setJob(t, e, at(pre.Run, "at", "n1", "default", "rep"), "count", nil, func(j *Job) { j.Repeat = 0.1 })
	setCode(t, e, "long", `if event.type == "start" { kv.watch("never", false) }`, nil, nil)
	sp := at(pre.State, "at", "n1", "default", "long")
	b, _ := State{Started: 1, Stopped: 2, Backoff: 3, Reason: "backoff"}.Encode()
	e.Set(context.Background(), sp, b, node.Cond{})
	setJob(t, e, at(pre.Run, "at", "n1", "default", "long"), "long", nil, func(j *Job) { j.OkAfter = 0.2; j.Target = 3 })
	startRunner(t, e, Config{Node: "n1"})
	eventually(t, "five runs", func() bool { v, _ := value(t, e, path(t, "runs")).(int64); return v >= 5 })
	st := state(t, e, at(pre.State, "at", "n1", "default", "rep"))
	if st.Reason != "repeat" && st.Reason != "running" {
		t.Errorf("repeating job's state %+v", st)
	}
	eventually(t, "the long job working", func() bool { st := state(t, e, sp); return st.Node == "n1" && st.Backoff == 0 })
}

// TestErrorMerge: two nodes created a record for the same error at the
// same time (here: written by hand, as two runners would have); each
// moves its own detail to the record seen first and the loser's creator
// deletes it.
func TestErrorMerge(t *testing.T) {
	e := engine(t, "a")
	job := at(pre.Run, "at", "x", "default", "j")
	rec := func(node string, tock int64, first float64) tree.Path {
		p := append(tree.Path(nil), pre.Error...)
		p = append(p, tree.Str(node), tree.Int(tock))
		put(t, e, p, map[string]any{"path": job, "subsystem": "run", "severity": int64(0), "resolved": false,
			"count": int64(1), "first_seen": first, "last_seen": first})
		put(t, e, append(append(tree.Path(nil), p...), tree.Str(node)), map[string]any{"seen": first, "comment": "from " + node})
		return p
	}
	winner := rec("b", 7, 100)
	loser := rec("a", 9, 200)
	startRunner(t, e, Config{Node: "a"})
	startRunner(t, e, Config{Node: "b"})
	eventually(t, "the loser gone, both details on the winner", func() bool {
		return value(t, e, loser) == nil && value(t, e, append(append(tree.Path(nil), loser...), tree.Str("a"))) == nil &&
			value(t, e, append(append(tree.Path(nil), winner...), tree.Str("a"))) != nil &&
			value(t, e, append(append(tree.Path(nil), winner...), tree.Str("b"))) != nil
	})
}

// TestTimers: kv.every repeats until kv.cancel; a timer set anew replaces
// the old one; events of a cancelled timer are not delivered after.
func TestTimers(t *testing.T) {
	e := engine(t, "n1")
	setCode(t, e, "ticks", `
if event.type == "start" {
	state.n = 0
	kv.every("tick", 0.02)
	kv.timer("late", 5)
} else if event.name == "tick" {
	state.n += 1
	if state.n == 3 {
		kv.cancel("tick")
		kv.timer("late", 0.1)  // replaces the 5 s one
	}
} else if event.name == "late" {
	kv.exit(state.n)
}`, nil, nil)
	setJob(t, e, at(pre.Run, "at", "n1", "default", "ticks"), "ticks", nil, nil)
	startRunner(t, e, Config{Node: "n1"})
	sp := at(pre.State, "at", "n1", "default", "ticks")
	start := time.Now()
	eventually(t, "the job's exit", func() bool { return state(t, e, sp).Result != nil })
	if r := state(t, e, sp).Result; r != int64(3) {
		t.Errorf("ticks seen: %v, want 3 (the cancelled every stops)", r)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("exit after %s: the replaced 5 s timer fired, not the new one", d)
	}
}
