package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/d5/tengo/v2"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
)

// A job instance runs as activations: the job's code runs once at start
// (event.type "start"), and once more for every event it asked for with
// kv.watch, kv.timer or kv.every ("change", "ready", "timer"), one at a
// time, each a fresh clone of the compiled code bounded by the runner's
// Limits. The map `state` carries over from one activation to the next.
// The instance ends when an activation fails (the job failed), when the
// code calls kv.exit(result), or when an activation leaves nothing to
// wait for (no watch, no timer): the job is done, its result the global
// `result`.

// maxEvents is how many events may wait for their activation; beyond
// that the job's watches wait (the engine queues for them, and ends a
// watch that falls too far behind: the job then fails).
const maxEvents = 32

// runResult is how an instance ended.
type runResult struct {
	result any
	err    error
}

// errRecorded is the failure kv.error raises: recorded already.
type errRecorded struct{ msg string }

func (e errRecorded) Error() string { return e.msg }

// errExit is kv.exit's way out of an activation.
type errExit struct{}

func (errExit) Error() string { return "exit" }

type event struct {
	kind  string // change, ready, timer
	path  tree.Path
	value []byte    // change: nil when deleted
	name  string    // timer
	timer *jobTimer // timer: which one (a cancelled or re-armed one's are dropped)
}

type instance struct {
	c    *jobCtl
	in   jobInput
	log  *slog.Logger
	lim  Limits
	api  *tengo.ImmutableMap
	vars map[string]tengo.Object

	setup chan struct{} // closed by kv.setup_done (or ok_after)

	// Set during an activation, taken after it (the instance's goroutine).
	newWatches []watchReq
	newTimers  []timerReq
	cancels    []string
	exit       *tengo.Object
	setupOnce  sync.Once

	events   chan event
	ctx      context.Context // the instance's
	actx     context.Context // the running activation's (the kv calls use it)
	wg       sync.WaitGroup
	timers   map[string]*jobTimer
	watching int
	unready  int // watches with fetch whose entries have not all come yet
}

type jobTimer struct {
	halt   chan struct{}
	once   sync.Once
	repeat bool
}

func (t *jobTimer) stop() { t.once.Do(func() { close(t.halt) }) }

type watchReq struct {
	path  tree.Path
	fetch bool
}

type timerReq struct {
	name   string
	after  time.Duration
	repeat bool
}

func newInstance(c *jobCtl, in jobInput, log *slog.Logger) *instance {
	inst := &instance{c: c, in: in, log: log, lim: c.r.cfg.Limits, setup: make(chan struct{}),
		events: make(chan event, maxEvents), timers: map[string]*jobTimer{}}
	// Variables: the job's data over the code's default.
	inst.vars = map[string]tengo.Object{}
	for k, v := range in.code.code.Default {
		inst.vars[k] = toTengo(v)
	}
	for _, k := range in.code.code.Vars {
		if _, ok := inst.vars[k]; !ok {
			inst.vars[k] = tengo.UndefinedValue
		}
	}
	data := map[string]tengo.Object{}
	for k, v := range inst.vars {
		data[k] = v
	}
	for k, v := range in.entry.job.Data {
		data[k] = toTengo(v)
		if _, declared := inst.vars[k]; declared {
			inst.vars[k] = data[k]
		}
	}
	inst.api = inst.newAPI(&tengo.ImmutableMap{Value: data})
	return inst
}

func (inst *instance) run(ctx context.Context) runResult {
	ctx, cancel := context.WithCancel(ctx)
	inst.ctx = ctx
	defer func() {
		cancel()
		for _, t := range inst.timers {
			t.stop()
		}
		inst.wg.Wait()
	}()
	if ok := inst.in.entry.job.OkAfter; ok > 0 {
		t := time.AfterFunc(time.Duration(ok*float64(time.Second)), inst.setupDone)
		defer t.Stop()
	}
	state := tengo.Object(&tengo.Map{Value: map[string]tengo.Object{}})
	var ev tengo.Object = &tengo.Map{Value: map[string]tengo.Object{"type": &tengo.String{Value: "start"}}}
	for {
		var res *tengo.Compiled
		var err error
		res, state, err = inst.activate(ctx, ev, state)
		switch {
		case errors.As(err, new(errExit)):
			v, cerr := fromTengoChecked(*inst.exit)
			if cerr != nil {
				return runResult{err: fmt.Errorf("kv.exit: %w", cerr)}
			}
			return runResult{result: v}
		case err != nil:
			return runResult{err: err}
		}
		inst.startRequests()
		if inst.watching == 0 && len(inst.timers) == 0 { // nothing more to wait for: done
			v, cerr := fromTengoChecked(res.Get("result").Object())
			if cerr != nil {
				return runResult{err: fmt.Errorf("result: %w", cerr)}
			}
			return runResult{result: v}
		}
		next, res2 := inst.nextEvent(ctx)
		if next == nil {
			return res2
		}
		ev = next
	}
}

// nextEvent waits for the next event that makes an activation: stale
// timer events are dropped, and the watches' "uptodate" make one "ready"
// once all of them have come. nil: the instance ends with the result.
func (inst *instance) nextEvent(ctx context.Context) (tengo.Object, runResult) {
	for {
		select {
		case <-ctx.Done():
			return nil, runResult{err: ctx.Err()}
		case e := <-inst.events:
			switch e.kind {
			case "failed":
				return nil, runResult{err: errors.New(e.name)}
			case "uptodate": // one watch has given its entries
				if inst.unready--; inst.unready > 0 {
					continue
				}
				e.kind = "ready" // all of them have: MoaT-KV's ReadyMsg
			case "timer":
				t := inst.timers[e.name]
				if t != e.timer {
					continue // from a timer cancelled or set anew since
				}
				if !t.repeat {
					delete(inst.timers, e.name)
				}
			}
			return inst.eventObject(e), runResult{}
		}
	}
}

// activate runs one activation: a clone of the code with the globals set.
func (inst *instance) activate(ctx context.Context, ev tengo.Object, state tengo.Object) (*tengo.Compiled, tengo.Object, error) {
	prog := inst.in.code.prog.Clone()
	set := func(name string, v tengo.Object) {
		if err := prog.Set(name, v); err != nil {
			inst.log.Debug("global not set", "name", name, "error", err)
		}
	}
	set("kv", inst.api)
	set("event", ev)
	set("state", state)
	set("data", inst.api.Value["data"])
	for k, v := range inst.vars {
		set(k, v)
	}
	tctx, cancel := context.WithTimeout(ctx, inst.lim.Activation)
	defer cancel()
	actx, hcancel := context.WithCancelCause(tctx)
	// The heap watch starts only for a run that lasts (a short one costs
	// a timer, no goroutine).
	var watcher sync.WaitGroup
	watcher.Add(1)
	late := time.AfterFunc(heapWatchAfter, func() {
		defer watcher.Done()
		watchHeap(actx, hcancel, inst.lim.MaxHeap)
	})
	inst.actx = actx
	err := prog.RunContext(actx)
	hcancel(nil)
	if late.Stop() { // it never started
		watcher.Done()
	}
	watcher.Wait()
	if err != nil {
		var heap errHeap
		switch {
		case ctx.Err() != nil:
			return nil, state, ctx.Err()
		case errors.As(context.Cause(actx), &heap):
			return nil, state, heap
		case errors.Is(err, context.DeadlineExceeded):
			return nil, state, fmt.Errorf("activation ran longer than %s (an endless loop?)", inst.lim.Activation)
		case errors.Is(err, tengo.ErrObjectAllocLimit):
			return nil, state, fmt.Errorf("activation allocated more than %d objects", inst.lim.MaxAllocs)
		}
		var rec errRecorded
		if errors.As(err, &rec) {
			return nil, state, rec
		}
		if errors.As(err, new(errExit)) {
			return prog, state, errExit{}
		}
		return nil, state, fmt.Errorf("%s", strings.TrimSpace(err.Error()))
	}
	state = prog.Get("state").Object()
	if _, err := measure(state, maxStateBytes); err != nil {
		return nil, state, fmt.Errorf("state: %w", err)
	}
	return prog, state, nil
}

// maxStateBytes bounds what a job keeps in `state` from one activation to
// the next.
const maxStateBytes = 1 << 20

func (inst *instance) eventObject(e event) tengo.Object {
	m := map[string]tengo.Object{"type": &tengo.String{Value: e.kind}}
	switch e.kind {
	case "change":
		m["path"] = &tengo.String{Value: e.path.String()}
		if e.value != nil {
			v, err := tree.DecodeValue(e.value)
			if err != nil {
				v = nil
			}
			m["value"] = toTengo(v)
		} else {
			m["deleted"] = tengo.TrueValue
		}
	case "timer":
		m["name"] = &tengo.String{Value: e.name}
	}
	return &tengo.Map{Value: m}
}

// startRequests starts what the last activation asked for.
func (inst *instance) startRequests() {
	for _, name := range inst.cancels {
		if t := inst.timers[name]; t != nil {
			t.stop()
			delete(inst.timers, name)
		}
	}
	inst.cancels = nil
	for _, tr := range inst.newTimers {
		if t := inst.timers[tr.name]; t != nil {
			t.stop()
		}
		inst.timers[tr.name] = inst.timer(tr)
	}
	inst.newTimers = nil
	for _, w := range inst.newWatches {
		inst.watching++
		if w.fetch {
			inst.unready++
		}
		inst.wg.Go(func() { inst.watch(w) })
	}
	inst.newWatches = nil
}

// deliver queues an event for an activation, or fails the instance when it
// is too far behind.
func (inst *instance) deliver(e event) error {
	select {
	case inst.events <- e:
		return nil
	case <-inst.ctx.Done():
		return inst.ctx.Err()
	}
}

// watch delivers the changes at or below w.path, in order; with fetch the
// entries there first, then "uptodate" (once every fetching watch is, the
// job gets a "ready" event). A watch that ends (the job fell too far
// behind) fails the job.
func (inst *instance) watch(w watchReq) {
	err := inst.c.r.tree.Watch(inst.ctx, w.path, w.fetch, func(it node.Item) error {
		if it.UpToDate {
			return inst.deliver(event{kind: "uptodate", path: w.path})
		}
		return inst.deliver(event{kind: "change", path: it.Path, value: it.Entry.Value})
	})
	if inst.ctx.Err() == nil {
		_ = inst.deliver(event{kind: "failed", name: fmt.Sprintf("watch of %s ended: %v", w.path, err)})
	}
}

// timer delivers "timer" events for tr on a goroutine of the instance's.
func (inst *instance) timer(tr timerReq) *jobTimer {
	jt := &jobTimer{halt: make(chan struct{}), repeat: tr.repeat}
	inst.wg.Go(func() {
		t := time.NewTimer(tr.after)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-jt.halt:
				return
			case <-inst.ctx.Done():
				return
			}
			select {
			case inst.events <- event{kind: "timer", name: tr.name, timer: jt}:
			case <-jt.halt:
				return
			case <-inst.ctx.Done():
				return
			}
			if !tr.repeat {
				return
			}
			t.Reset(tr.after)
		}
	})
	return jt
}

func (inst *instance) setupDone() {
	inst.setupOnce.Do(func() { close(inst.setup) })
}
