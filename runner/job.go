package runner

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
)

// jobInput is what the loop tells a job controller: its entry, its
// compiled code (nil: none), and the live members of its group.
type jobInput struct {
	entry jobEntry
	code  *compiled
	live  []string
}

// same reports whether a running instance may go on under in: the same
// entry and the same compiled code.
func (in jobInput) same(o jobInput) bool {
	return in.code == o.code && string(in.entry.raw) == string(o.entry.raw)
}

// jobCtl schedules and runs one job on this node: it owns the job's state
// entry (reference spec §7.4, §7.5) while it runs here.
type jobCtl struct {
	r         *Runner
	key       string    // the job entry's path text
	kind      string    // at, any or all
	statePath tree.Path // where its state lives

	mu      sync.Mutex
	in      jobInput // the latest input
	wake    chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
	dropped bool // stop: delete the state (the entry is gone)
	moved   bool // stop: another node runs it now; its state is not ours to write
}

func newJobCtl(r *Runner, je jobEntry) *jobCtl {
	st := slices.Clone(r.cfg.Prefix.State)
	switch je.kind {
	case kindAt:
		st = append(st, tree.Str(kindAt), tree.Str(r.cfg.Node), tree.Str(je.group))
	case kindAny:
		st = append(st, tree.Str(kindAny), tree.Str(je.group))
	case kindAll:
		st = append(st, tree.Str(kindAll), tree.Str(je.group), tree.Str(r.cfg.Node))
	}
	st = append(st, je.name...)
	return &jobCtl{r: r, key: je.path.String(), kind: je.kind, statePath: st, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

func (c *jobCtl) start(ctx context.Context) {
	ctx, c.cancel = context.WithCancel(ctx)
	go func() {
		defer close(c.done)
		c.run(ctx)
	}()
}

// offer hands the controller its latest input.
func (c *jobCtl) offer(in jobInput) {
	c.mu.Lock()
	if c.in.entry.path != nil && c.in.same(in) && slices.Equal(c.in.live, in.live) {
		c.mu.Unlock()
		return // nothing new: an idle job costs nothing per poll
	}
	c.in = in
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *jobCtl) latest() jobInput {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.in
}

// stop ends the controller and its instance and waits; with drop its state
// entry is deleted too, otherwise (another node runs the job now) it is
// left to that node.
func (c *jobCtl) stop(drop bool) {
	c.mu.Lock()
	c.dropped, c.moved = drop, !drop
	c.mu.Unlock()
	c.cancel()
	<-c.done
}

func (c *jobCtl) wait() {
	c.cancel()
	<-c.done
}

func (c *jobCtl) now() float64 { return unix(c.r.cfg.Now()) }

// schedule is MoaT-KV's should_start: when the job starts next (at; 0:
// not by itself), and why.
func schedule(in jobInput, st State, me string, now float64) (at float64, reason string) {
	j := in.entry.job
	switch {
	case in.entry.err != nil:
		return 0, "bad entry: " + in.entry.err.Error()
	case in.code == nil:
		return 0, "no code"
	case in.code.err != nil:
		return 0, "code does not compile"
	case st.Node != "" && st.Node != me:
		return 0, "node set"
	case !j.HasTarget:
		return 0, "no target"
	case st.Reason == reasonStopped:
		// Its runner stopped (a node shut down, or handed the job over):
		// start again at once, here or on the node that has it now.
		return now, "restart after " + reasonStopped
	case j.Target > st.Started:
		return j.Target, "target > started"
	case st.Backoff > 0:
		return st.Stopped + max(MinRetry, j.Delay*math.Pow(j.Backoff, float64(st.Backoff))), "backoff"
	case j.Repeat > 0:
		return st.Stopped + j.Repeat, "repeat"
	case st.Started > st.Stopped:
		return 0, "is started"
	case st.Started > 0:
		return 0, "done" // MoaT-KV says "no target"
	}
	return 0, "no target"
}

// reasonStopped is the state's reason when the job's runner stopped it.
const reasonStopped = "runner stopped"

// run is the controller's goroutine.
func (c *jobCtl) run(ctx context.Context) {
	r := c.r
	log := r.log.With("job", c.key)
	st := c.loadState(ctx)
	if st.Node == r.cfg.Node { // this node ran it when it went down
		st.Node, st.Stopped, st.Reason = "", c.now(), "runner restarted"
		st.Backoff = min(st.Backoff+1, MaxBackoff)
		r.errs.record(ctx, "run", mustParse(c.key), "Runner restarted")
		c.save(ctx, st)
	}
	restart := "" // why a running instance was stopped to start again now
	lastErr := "" // why the last run failed
	for {
		in := c.latest()
		if in.entry.path == nil { // no input yet
			select {
			case <-c.wake:
				continue
			case <-ctx.Done():
				c.finish(st, false)
				return
			}
		}
		if c.kind == kindAny {
			// The state is shared: another runner may have written it
			// meanwhile (let go of the job after a heal, taken it while
			// this node restarted).
			if cur, ok := c.readState(ctx); ok && cur.Node != r.cfg.Node {
				st = cur
			}
		}
		if c.kind == kindAny && st.Node != "" && st.Node != r.cfg.Node && !slices.Contains(in.live, st.Node) {
			// Its runner is gone (killed, or on the other side of a
			// split): this node takes the job over now.
			r.errs.record(ctx, "run", in.entry.path, fmt.Sprintf("Runner killed: %s offline", st.Node))
			log.Info("job's runner is gone; taking it over", "was", st.Node)
			restart = "taken over from " + st.Node
			st.Node, st.Stopped = "", c.now()
		}

		now := c.now()
		at, reason := schedule(in, st, r.cfg.Node, now)
		if restart != "" && in.code != nil && in.code.err == nil && in.entry.err == nil && in.entry.job.HasTarget {
			at, reason = now, restart
		}
		restart = ""
		if reason == "backoff" && lastErr != "" {
			reason = "backoff after error: " + lastErr
		}
		if at == 0 || at > now {
			if (st.Computed != at || st.Reason != reason) && (st.Node == "" || st.Node == r.cfg.Node) {
				// (A state another runner holds is its to write.)
				st.Computed, st.Reason = at, reason
				c.save(ctx, st)
			}
			var timer <-chan time.Time
			var t *time.Timer
			wait := time.Duration(-1)
			if at > 0 {
				wait = time.Duration((at - now) * float64(time.Second))
			}
			if c.kind == kindAny && st.Node != "" && (wait < 0 || wait > r.cfg.Poll) {
				wait = r.cfg.Poll // another runner has it: look again soon
			}
			if wait >= 0 {
				t = time.NewTimer(wait)
				timer = t.C
			}
			select {
			case <-c.wake:
			case <-timer:
			case <-ctx.Done():
			}
			if t != nil {
				t.Stop()
			}
			if ctx.Err() != nil {
				c.finish(st, false)
				return
			}
			continue
		}

		// Start.
		st.Node, st.Started, st.Computed, st.Reason = r.cfg.Node, now, 0, "running"
		c.save(ctx, st)
		log.Info("job starts", "code", in.code.path.String())
		ictx, icancel := context.WithCancel(ctx)
		inst := newInstance(c, in, log)
		outcome := make(chan runResult, 1)
		go func() { outcome <- inst.run(ictx) }()
		var res runResult
		cancelled := ""
		setup := inst.setup
		var recheck <-chan time.Time
		var tk *time.Ticker
		if c.kind == kindAny {
			tk = time.NewTicker(4 * r.cfg.Poll)
			recheck = tk.C
		}
	wait:
		for {
			select {
			case <-recheck:
				// Another runner may have written over the shared state
				// (the other side of a healed split): say again who runs it.
				if cur, ok := c.readState(ctx); ok && cur.Node != r.cfg.Node {
					c.save(ctx, st)
				}
			case res = <-outcome:
				break wait
			case <-setup:
				setup = nil // once
				if st.Backoff != 0 {
					st.Backoff = 0
					c.save(ctx, st)
				}
				r.errs.resolve(ctx, "run", in.entry.path)
			case <-c.wake:
				if n := c.latest(); !n.same(in) {
					switch {
					case n.code != in.code:
						cancelled = "Cancel: Code changed"
					case !n.entry.job.HasTarget:
						cancelled = "Cancel: target zeroed"
					default:
						cancelled = "Cancel: job changed"
					}
					icancel()
					res = <-outcome
					break wait
				}
			case <-ctx.Done():
				icancel()
				res = <-outcome
				cancelled = reasonStopped
				break wait
			}
		}
		icancel()
		if tk != nil {
			tk.Stop()
		}
		st.Node, st.Stopped = "", c.now()
		switch {
		case cancelled != "":
			st.Reason = cancelled
			why := cancelled
			c.mu.Lock()
			switch {
			case c.dropped:
				why = "its entry was deleted"
			case c.moved:
				why = "another node runs it now"
			}
			c.mu.Unlock()
			log.Info("job stopped", "reason", why)
			if ctx.Err() == nil && cancelled != "Cancel: target zeroed" {
				restart = "restarted: " + cancelled[len("Cancel: "):]
			}
		case res.err != nil:
			st.Backoff = min(st.Backoff+1, MaxBackoff)
			lastErr = res.err.Error()
			st.Reason = "error: " + lastErr
			log.Warn("job failed", "error", res.err, "backoff", st.Backoff)
			var rec errRecorded
			if !errors.As(res.err, &rec) { // kv.error recorded it already
				r.errs.record(ctx, "run", in.entry.path, res.err.Error())
			}
		default:
			lastErr = ""
			st.Backoff, st.Result, st.Reason = 0, res.result, "done"
			log.Info("job done")
			r.errs.resolve(ctx, "run", in.entry.path)
		}
		if ctx.Err() != nil {
			c.finish(st, true)
			return
		}
		c.save(ctx, st)
	}
}

// finish writes the last state when the controller ends: deleted with the
// job entry, or nobody running it. A job that moved to another node is
// left to it, unless this node was running it: then the state says it
// stopped here, and the new owner starts it at once.
func (c *jobCtl) finish(st State, wasRunning bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c.mu.Lock()
	drop, moved := c.dropped, c.moved
	c.mu.Unlock()
	if moved && !wasRunning {
		return
	}
	if drop {
		if _, err := c.r.tree.Delete(ctx, c.statePath, node.Cond{}); err != nil && !errors.Is(err, tree.ErrNotFound) {
			c.r.log.Debug("job state not deleted", "job", c.key, "error", err)
		}
		return
	}
	if st.Node == c.r.cfg.Node {
		st.Node, st.Stopped = "", c.now()
	}
	c.save(ctx, st)
}

func (c *jobCtl) loadState(ctx context.Context) State {
	st, _ := c.readState(ctx)
	return st
}

// readState reads the state entry; ok is false when it could not be read
// (the engine stopping): then the caller keeps what it has.
func (c *jobCtl) readState(ctx context.Context) (State, bool) {
	e, err := c.r.tree.Get(ctx, c.statePath)
	if err != nil {
		return State{}, false
	}
	if e.Value == nil {
		return State{}, true
	}
	st, err := DecodeState(e.Value)
	if err != nil {
		c.r.log.Warn("job state does not decode; starting afresh", "job", c.key, "error", err)
		return State{}, true
	}
	return st, true
}

func (c *jobCtl) save(ctx context.Context, st State) {
	b, err := st.Encode()
	if err != nil {
		st.Result = fmt.Sprint(st.Result)
		if b, err = st.Encode(); err != nil {
			c.r.log.Warn("job state does not encode", "job", c.key, "error", err)
			return
		}
	}
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
	}
	if _, err := c.r.tree.Set(ctx, c.statePath, b, node.Cond{Cond: tree.Cond{Idem: true}}); err != nil {
		c.r.log.Debug("job state not written", "job", c.key, "error", err)
	}
}
