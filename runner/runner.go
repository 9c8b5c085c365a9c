package runner

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
)

// Tree is what the runner needs of the engine: its local API.
type Tree interface {
	Get(ctx context.Context, p tree.Path) (node.Entry, error)
	Set(ctx context.Context, p tree.Path, value []byte, c node.Cond) (node.Result, error)
	Delete(ctx context.Context, p tree.Path, c node.Cond) (node.Result, error)
	Watch(ctx context.Context, p tree.Path, fetch bool, send func(node.Item) error) error
}

// Hardware is the node's bound hardware, for a job's kv.hw: a sensor's
// reading by its path, an output driven by its path. Only bindings of the
// runner's own node are reachable.
type Hardware interface {
	ReadSensor(ctx context.Context, path tree.Path) (float64, error)
	DriveOutput(ctx context.Context, path tree.Path, on bool) error
}

// Prefixes are where the runner's records live. The defaults are MoaT-KV's
// (reference spec §7.2; its 0.70 config's stray quote after run and state
// is not copied).
type Prefixes struct {
	Code, Module, Run, State, Error tree.Path
}

// DefaultPrefixes are MoaT-KV's: :.moat.kv.code.proc and so on.
func DefaultPrefixes() Prefixes {
	m := func(s ...string) tree.Path {
		p := tree.Path{tree.Str(".moat"), tree.Str("kv")}
		for _, e := range s {
			p = append(p, tree.Str(e))
		}
		return p
	}
	return Prefixes{Code: m("code", "proc"), Module: m("code", "module"), Run: m("run"), State: m("state"), Error: m("error")}
}

// The job kinds' path elements below the run and state prefixes.
const (
	kindAt  = "at"
	kindAny = "any"
	kindAll = "all"
)

// DefaultGroup is the group of jobs added without one.
const DefaultGroup = "default"

// Config configures a Runner.
type Config struct {
	Node   string   // this node's name
	Groups []string // the any-node groups it serves; default [default]
	Prefix Prefixes // zero: DefaultPrefixes
	Limits Limits
	Log    *slog.Logger
	Now    func() time.Time // default time.Now
	HW     Hardware         // nil: jobs have no hardware
	// Members reports the other nodes this node knows of and whether each
	// is live now; with GroupsOf, it decides who runs any-node jobs. nil:
	// this node is alone.
	Members func(ctx context.Context) (map[string]bool, error)
	// Poll is how often membership is checked. Default 250ms.
	Poll time.Duration
	// AnyGrace is how long after start the runner learns who else serves
	// its groups (their records, their heartbeats) before it takes any
	// any-node job. Default 2s.
	AnyGrace time.Duration
}

// Runner runs the jobs of one node: its single-node jobs, every all-node
// job, and the any-node jobs of its groups that rendezvous hashing over the
// group's live members gives it.
type Runner struct {
	cfg  Config
	tree Tree
	log  *slog.Logger
	errs *errorLog

	mu      sync.Mutex
	groupOf map[string][]string // node → its any-node groups, from :n.edgekv.runner records
}

// New returns a runner of t's jobs.
func New(t Tree, cfg Config) *Runner {
	if len(cfg.Prefix.Run) == 0 {
		cfg.Prefix = DefaultPrefixes()
	}
	if len(cfg.Groups) == 0 {
		cfg.Groups = []string{DefaultGroup}
	}
	cfg.Limits = cfg.Limits.withDefaults()
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Poll == 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.AnyGrace == 0 {
		cfg.AnyGrace = 2 * time.Second
	}
	r := &Runner{cfg: cfg, tree: t, log: cfg.Log.With("component", "runner"), groupOf: map[string][]string{}}
	r.errs = &errorLog{r: r, index: map[errKey]tree.Path{}}
	return r
}

// membersPath is where each runner says which any-node groups it serves:
// in the meta tree (synced, never an MQTT topic, out of reach of a
// client's delete_tree), :n.edgekv.runner.NODE = {groups: [...]}.
func membersPath(node string) tree.Path {
	return tree.Path{tree.Nil(), tree.Str("edgekv"), tree.Str("runner"), tree.Str(node)}
}

// change is one item of one of the runner's watches.
type change struct {
	src      int // srcCode, srcModule, srcRun, srcMembers, srcErrors
	path     tree.Path
	val      []byte // nil: deleted
	reset    bool   // the watch starts (again): what it does not fetch is gone
	upToDate bool   // the watch has fetched every entry
}

const (
	srcCode = iota
	srcModule
	srcRun
	srcMembers
	srcErrors
)

// Run runs the jobs until ctx ends; every job instance has ended when it
// returns.
func (r *Runner) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()

	// Say which groups this node serves.
	groups := make([]any, len(r.cfg.Groups))
	for i, g := range r.cfg.Groups {
		groups[i] = g
	}
	rec, _ := tree.AppendValue(nil, map[string]any{"groups": groups})
	if _, err := r.tree.Set(ctx, membersPath(r.cfg.Node), rec, node.Cond{Cond: tree.Cond{Idem: true}}); err != nil {
		return fmt.Errorf("runner: %w", err)
	}

	changes := make(chan change, 256)
	watch := func(src int, p tree.Path) {
		wg.Go(func() {
			send := func(c change) error {
				select {
				case changes <- c:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			for ctx.Err() == nil {
				if send(change{src: src, reset: true}) != nil {
					return
				}
				err := r.tree.Watch(ctx, p, true, func(it node.Item) error {
					if it.UpToDate {
						return send(change{src: src, upToDate: true})
					}
					return send(change{src: src, path: it.Path, val: it.Entry.Value})
				})
				if ctx.Err() != nil {
					return
				}
				r.log.Warn("runner watch ended; watching again", "path", p.String(), "error", err)
				select { // fetch again: a watch that fell behind missed changes
				case <-time.After(time.Second):
				case <-ctx.Done():
				}
			}
		})
	}
	watch(srcModule, r.cfg.Prefix.Module)
	watch(srcCode, r.cfg.Prefix.Code)
	watch(srcRun, r.cfg.Prefix.Run)
	watch(srcMembers, membersPath("")[:3])
	watch(srcErrors, r.cfg.Prefix.Error)

	l := &loop{r: r, ctx: ctx, anyFrom: time.Now().Add(r.cfg.AnyGrace),
		known: map[int]map[string]tree.Path{}, pending: map[int]map[string]tree.Path{}, codes: map[string]*compiled{}, codeText: map[string]Code{}, modules: map[string]string{},
		jobs: map[string]*jobCtl{}, entries: map[string]jobEntry{}}
	defer l.stopAll()
	poll := time.NewTicker(r.cfg.Poll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-changes:
			l.apply(c)
			for drained := false; !drained; { // take what came together before placing jobs
				select {
				case c := <-changes:
					l.apply(c)
				default:
					drained = true
				}
			}
			l.place()
		case <-poll.C:
			l.place()
		}
	}
}

// jobEntry is a job entry as the loop knows it.
type jobEntry struct {
	kind, group string
	path        tree.Path // the entry's full path
	name        tree.Path // the job's path below the group
	job         Job
	err         error // the entry does not decode
	raw         []byte
}

// loop is the state of Run's goroutine.
type loop struct {
	r        *Runner
	ctx      context.Context
	anyFrom  time.Time                    // any-node jobs are placed from then on
	anyOK    bool                         // anyReady said yes (it stays so)
	lastLive map[string]bool              // the last membership read
	known    map[int]map[string]tree.Path // per watch: the paths it has given that hold values
	pending  map[int]map[string]tree.Path // per watch starting again: those it has not given again yet
	codeText map[string]Code              // code path text → code
	codes    map[string]*compiled         // code path text → compiled
	modules  map[string]string            // module name → source
	entries  map[string]jobEntry          // job entry path text → entry (every job of the tree)
	jobs     map[string]*jobCtl           // job entry path text → its controller here
}

func (l *loop) apply(c change) {
	r := l.r
	// What each watch has given, so that a watch that starts again (it
	// fell behind) can tell what was deleted meanwhile.
	if l.known[c.src] == nil {
		l.known[c.src] = map[string]tree.Path{}
	}
	switch {
	case c.reset:
		l.pending[c.src] = maps.Clone(l.known[c.src])
		return
	case c.upToDate:
		gone := l.pending[c.src]
		delete(l.pending, c.src)
		for _, p := range gone {
			l.apply(change{src: c.src, path: p})
		}
		return
	}
	k := c.path.String()
	delete(l.pending[c.src], k)
	if c.val == nil {
		delete(l.known[c.src], k)
	} else {
		l.known[c.src][k] = c.path
	}
	switch c.src {
	case srcModule:
		name := c.path[len(r.cfg.Prefix.Module):].String()
		if c.val == nil {
			delete(l.modules, name)
		} else if m, err := DecodeModule(c.val); err != nil {
			r.log.Warn("module entry does not decode", "path", c.path.String(), "error", err)
			r.errs.record(l.ctx, "compile", c.path, err.Error())
			delete(l.modules, name)
		} else {
			l.modules[name] = m.Text
		}
		for k, code := range l.codeText { // modules changed: every code again
			l.compile(k, code)
		}
	case srcCode:
		rel := c.path[len(r.cfg.Prefix.Code):]
		k := rel.String()
		if c.val == nil {
			delete(l.codeText, k)
			delete(l.codes, k)
			return
		}
		code, err := DecodeCode(c.val)
		if err != nil {
			r.errs.record(l.ctx, "compile", c.path, err.Error())
			delete(l.codeText, k)
			delete(l.codes, k)
			return
		}
		l.codeText[k] = code
		l.compile(k, code)
	case srcRun:
		k := c.path.String()
		if c.val == nil {
			delete(l.entries, k)
			return
		}
		je, ok := l.entryOf(c.path)
		if !ok {
			return
		}
		je.raw = c.val
		je.job, je.err = DecodeJob(c.val)
		l.entries[k] = je
	case srcMembers:
		if len(c.path) != 4 {
			return
		}
		name, ok := strElem(c.path[3])
		if !ok {
			return
		}
		var groups []string
		if v, err := tree.DecodeValue(c.val); err == nil {
			if m, ok := v.(map[string]any); ok {
				if gs, ok := m["groups"].([]any); ok {
					for _, g := range gs {
						if s, ok := g.(string); ok {
							groups = append(groups, s)
						}
					}
				}
			}
		}
		r.mu.Lock()
		if c.val == nil {
			delete(r.groupOf, name)
		} else {
			r.groupOf[name] = groups
		}
		r.mu.Unlock()
	case srcErrors:
		r.errs.seen(l.ctx, c.path, c.val)
	}
}

// entryOf splits a job entry's path: run.at.NODE.GROUP.name...,
// run.any.GROUP.name..., run.all.GROUP.name...
func (l *loop) entryOf(p tree.Path) (jobEntry, bool) {
	rel := p[len(l.r.cfg.Prefix.Run):]
	str := func(i int) string {
		if i >= len(rel) {
			return ""
		}
		s, _ := strElem(rel[i])
		return s
	}
	je := jobEntry{kind: str(0), path: p}
	switch je.kind {
	case kindAt:
		if len(rel) < 4 || str(1) == "" || str(2) == "" {
			return jobEntry{}, false
		}
		je.group, je.name = str(2), rel[3:]
		if str(1) != l.r.cfg.Node {
			je.kind = "" // another node's
		}
	case kindAny, kindAll:
		if len(rel) < 3 || str(1) == "" {
			return jobEntry{}, false
		}
		je.group, je.name = str(1), rel[2:]
	default:
		return jobEntry{}, false
	}
	return je, true
}

func (l *loop) compile(k string, code Code) {
	r := l.r
	p := append(slices.Clone(r.cfg.Prefix.Code), mustParse(k)...)
	c := compile(p, code, l.modules, r.cfg.Limits)
	l.codes[k] = c
	if c.err != nil {
		r.log.Warn("code does not compile", "path", p.String(), "error", c.err)
		r.errs.record(l.ctx, "compile", p, c.err.Error())
		return
	}
	r.errs.resolve(l.ctx, "compile", p)
}

func mustParse(s string) tree.Path {
	p, err := tree.ParsePath(s)
	if err != nil {
		return tree.Path{tree.Str(s)}
	}
	return p
}

// place starts, updates and stops the job controllers of this node: every
// job entry it should run, with its code.
func (l *loop) place() {
	r := l.r
	live := l.liveMembers()
	anyReady := l.anyReady(live)
	want := map[string]bool{}
	for k, je := range l.entries {
		switch je.kind {
		case kindAt, kindAll:
		case kindAny:
			if !anyReady || !slices.Contains(r.cfg.Groups, je.group) || owner(k, live[je.group]) != r.cfg.Node {
				continue
			}
		default:
			continue
		}
		want[k] = true
		var code *compiled
		if je.err == nil {
			code = l.codes[je.job.Code.String()]
		}
		ctl := l.jobs[k]
		if ctl == nil {
			ctl = newJobCtl(r, je)
			l.jobs[k] = ctl
			ctl.start(l.ctx)
		}
		ctl.offer(jobInput{entry: je, code: code, live: live[je.group]})
	}
	for k, ctl := range l.jobs {
		if !want[k] {
			_, exists := l.entries[k]
			ctl.stop(!exists) // deleted: its state goes too; moved: the state stays for the new owner
			delete(l.jobs, k)
		}
	}
}

// anyReady says whether the runner knows enough of its groups to place
// any-node jobs: AnyGrace after start, once it hears another member of
// its groups (a node that restarts is cut off until its peers dial it
// again), or, if it hears none, 5 × AnyGrace after start (the others are
// gone).
func (l *loop) anyReady(live map[string][]string) bool {
	now := time.Now()
	if l.anyOK || now.Before(l.anyFrom) {
		return l.anyOK
	}
	r := l.r
	others := false
	r.mu.Lock()
	for n, gs := range r.groupOf {
		if n != r.cfg.Node && slices.ContainsFunc(gs, func(g string) bool { return slices.Contains(r.cfg.Groups, g) }) {
			others = true
		}
	}
	r.mu.Unlock()
	heard := false
	for _, nodes := range live {
		heard = heard || len(nodes) > 1
	}
	l.anyOK = !others || heard || now.After(l.anyFrom.Add(4*r.cfg.AnyGrace))
	return l.anyOK
}

// liveMembers returns, per any-node group this node serves, the live nodes
// serving it, this one included, sorted.
func (l *loop) liveMembers() map[string][]string {
	r := l.r
	live := l.lastLive // a failed call (the engine stopping) changes nothing
	if r.cfg.Members != nil {
		if ms, err := r.cfg.Members(l.ctx); err == nil {
			live, l.lastLive = ms, ms
		}
	}
	out := map[string][]string{}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range r.cfg.Groups {
		nodes := []string{r.cfg.Node}
		for n, gs := range r.groupOf {
			if n != r.cfg.Node && live[n] && slices.Contains(gs, g) {
				nodes = append(nodes, n)
			}
		}
		slices.Sort(nodes)
		out[g] = nodes
	}
	return out
}

// owner picks the node that runs job k among nodes by rendezvous hashing:
// the highest hash of (node, job) wins, so jobs spread over the members and
// only the jobs of a node that leaves or joins move.
func owner(k string, nodes []string) string {
	var best string
	var bestH uint64
	for _, n := range nodes {
		h := fnv.New64a()
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write([]byte(k))
		if v := h.Sum64(); best == "" || v > bestH || v == bestH && n < best {
			best, bestH = n, v
		}
	}
	return best
}

func (l *loop) stopAll() {
	var wg sync.WaitGroup
	for _, ctl := range l.jobs {
		wg.Go(func() { ctl.wait() })
	}
	wg.Wait()
}

// strElem returns a string element's text.
func strElem(e tree.Elem) (string, bool) {
	if e.Kind() != tree.KindString {
		return "", false
	}
	return e.StrVal(), true
}
