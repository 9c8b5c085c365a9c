package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/replica"
	"github.com/edgekv/edgekv/tree/store"
	"github.com/edgekv/edgekv/tree/wire"
)

// Observer sees every change of the tree, one at a time and in tock order,
// after it is in the store: Changed with the new value (nil: deleted) and
// the entry's chain and tock. It is called under the lock the engine works
// under, on the engine's goroutine or on that of a local write applied
// without a hand-off (see the package documentation). It must not block
// for long. (Entries that were there at the start are not shown: Cursor
// serves those who need them.)
type Observer interface {
	Changed(p tree.Path, value []byte, chain tree.Chain, tock uint64)
}

// Config configures an Engine. Zero fields take the defaults noted.
type Config struct {
	// Name is this node's name (required).
	Name string
	// FS holds the node's store (required): store.DirFS(dir), or a
	// store.MemFS in tests.
	FS store.FS
	// Store configures the store: sync policy, group-commit interval, …
	Store store.Options
	// ChainLen bounds chains (default tree.DefaultChainLen).
	ChainLen int
	// Now is the clock (default time.Now). Run's timers use the time
	// package's tickers; only timestamps written into the tree come from
	// Now.
	Now func() time.Time
	// Logger receives the engine's logs (default: discarded).
	Logger *slog.Logger
	// TickEvery is the replica's clock tick (default 100 ms; at most
	// Heartbeat).
	TickEvery time.Duration
	// Heartbeat is the heartbeat period (default 1 s).
	Heartbeat time.Duration
	// StatusEvery is how often link status and sync counters are written
	// into the tree (default 5 × Heartbeat).
	StatusEvery time.Duration
	// SnapshotCheck is how often the engine checks whether the log has
	// grown enough for a snapshot (default 30 s).
	SnapshotCheck time.Duration
	// MaxBatch bounds the updates folded into one batch message (default
	// 64).
	MaxBatch int
	// InboxMessages and InboxBytes bound the sync messages waiting for
	// the engine (defaults 8192 and 64 MiB); more are dropped.
	InboxMessages int
	InboxBytes    int
	// WatchQueue bounds the changes a watch may fall behind by before it
	// ends with an error (default 10000).
	WatchQueue int
	// Observer, if set, sees every change (see Observer).
	Observer Observer
	// FreshStart draws where a node with an empty store starts its ticks
	// (see replica.Config.FreshStart); default: at random in
	// [2^40, 2^50), so that a node whose data directory was lost cannot
	// reuse a tick of its earlier life. Return 0 to start at 1.
	FreshStart func() uint64
	// MoaT configures MoaT-KV's recovery on hub links ("hub:H"): the
	// ping group's timing (zero: MoaT-KV's 10 s cycle, 2 s gap), Off to
	// stay out of it, and Only to turn edgekv's own catch-up off (see
	// replica.Config.MoaTOnly).
	MoaT MoaTConfig
	// Replica, if set, adjusts the replica's configuration after the
	// engine has filled it in (tests: reservation sizes, timings).
	Replica func(*replica.Config)
}

// MoaTConfig: see Config.MoaT.
type MoaTConfig struct {
	Off   bool
	Only  bool
	Cycle time.Duration
	Gap   time.Duration
}

// randomFreshStart draws a start in [2^40, 2^50).
func randomFreshStart() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 1 << 40
	}
	return 1<<40 + binary.LittleEndian.Uint64(b[:])%(1<<50-1<<40)
}

// randomSeed draws the tree's hash seed (tree.Config.HashSeed).
func randomSeed() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails on Linux; zero is a seed too
	return binary.LittleEndian.Uint64(b[:])
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.TickEvery, 100*time.Millisecond)
	def(&c.Heartbeat, time.Second)
	c.TickEvery = min(c.TickEvery, c.Heartbeat)
	def(&c.StatusEvery, 5*c.Heartbeat)
	def(&c.SnapshotCheck, 30*time.Second)
	idef := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	idef(&c.MaxBatch, 64)
	idef(&c.InboxMessages, 8192)
	idef(&c.InboxBytes, 64<<20)
	idef(&c.WatchQueue, 10000)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.FreshStart == nil {
		c.FreshStart = randomFreshStart
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Engine is one running replica: see the package documentation. Create it
// with Open, then call Run (or drive it with a Stepper).
type Engine struct {
	cfg  Config
	log  *slog.Logger
	r    *replica.Replica
	st   *store.Store
	name string

	// Plumbing between callers and the loop.
	reqs     chan *request
	in       *inbox
	stopping chan struct{} // closed when the loop takes no more work
	// treeMu is held by the loop while it works; Get reads the tree under
	// its read lock while the loop waits for input, without a hand-off.
	treeMu   sync.RWMutex
	looping  atomic.Bool   // Run's loop serves (not a Stepper): Get may take treeMu
	queued   atomic.Int64  // requests submitted and not yet taken (see writeDirect)
	done     chan struct{} // closed when Run has returned
	started  atomic.Bool   // Run or a Stepper owns the engine
	stopOnce sync.Once

	// Counters read from other goroutines.
	inboxDropped   atomic.Int64
	watchOverflows atomic.Int64
	linkUps        atomic.Int64
	directWrites   atomic.Int64 // writes applied by writeDirect (tests)

	// Owned by the loop (or the Stepper).
	links     map[string]*link
	byID      map[replica.LinkID]*link
	nextID    replica.LinkID
	waiters   []waiter
	watchers  map[*watcher]struct{}
	status    map[string]string    // last written status value per entry name
	gone      map[string]time.Time // links that went down: last heard from
	syncDirty bool                 // something besides status changed since the counters were written
	lastStats replica.Stats
	lastActor replica.ActorStats // what the ping group did at the last status
	failed    error              // the store failed: the engine stops
	snapping  bool               // a snapshot is being written
	held      []heldMsg
}

// heldMsg is a message that vouches for state (replica.Message.Vouch)
// waiting until the store has synced the records appended before it.
type heldMsg struct {
	replica.Message
	mark uint64 // store.Appended when it was made
}

// Open opens the store in cfg.FS and restores the replica from it. It
// starts nothing; Run (or a Stepper) does the rest.
func Open(cfg Config) (*Engine, error) {
	if cfg.Name == "" {
		return nil, errors.New("node: Config.Name is empty")
	}
	if cfg.FS == nil {
		return nil, errors.New("node: Config.FS is nil")
	}
	cfg.setDefaults()
	log := cfg.Logger.With("node", cfg.Name)
	sopts := cfg.Store
	if sopts.Logger == nil {
		sopts.Logger = log
	}
	st, loaded, err := store.Open(cfg.FS, sopts)
	if err != nil {
		return nil, err
	}
	hb := max(1, int(cfg.Heartbeat/cfg.TickEvery))
	rcfg := replica.Config{Node: cfg.Name, ChainLen: cfg.ChainLen, HeartbeatTicks: hb, LiveTicks: 4 * hb,
		MissingTicks: hb, PurgeTicks: 10 * hb, DigestTicks: 30 * hb, Volatile: sopts.Sync == store.SyncNone,
		HashSeed: randomSeed(), Seed: randomSeed(), TickSeconds: cfg.TickEvery.Seconds(),
		ActorOff: cfg.MoaT.Off, MoaTOnly: cfg.MoaT.Only}
	if cfg.MoaT.Cycle > 0 || cfg.MoaT.Gap > 0 {
		rcfg.Actor = wire.MoaTPing
		if cfg.MoaT.Cycle > 0 {
			rcfg.Actor.Cycle = cfg.MoaT.Cycle.Seconds()
		}
		if cfg.MoaT.Gap > 0 {
			rcfg.Actor.Gap = cfg.MoaT.Gap.Seconds()
		}
	}
	if loaded.NodeRecord == nil && len(loaded.Snapshot) == 0 && len(loaded.Log) == 0 {
		rcfg.FreshStart = cfg.FreshStart()
	}
	if cfg.Replica != nil {
		cfg.Replica(&rcfg)
	}
	r := replica.New(rcfg)
	for _, e := range r.Restore(loaded.Snapshot, loaded.Log, loaded.NodeRecord) {
		log.Warn("store: skipped a record", "error", e)
	}
	if loaded.NodeRecord == nil && (len(loaded.Snapshot) > 0 || len(loaded.Log) > 0) {
		log.Warn("store: no node record beside the data (written by an older edgekv?): ticks issued before the last crash could be reused once")
	}
	own := r.Tree().Node(cfg.Name)
	log.Info("loaded", "entries", r.Tree().Len(), "tick", own.Tick(), "tock", r.Tree().Tock(),
		"skipped", own.Skipped().String(), "snapshot_records", len(loaded.Snapshot), "log_records", len(loaded.Log),
		"sync", sopts.Sync.String())
	e := &Engine{
		cfg:       cfg,
		log:       log,
		r:         r,
		st:        st,
		name:      cfg.Name,
		reqs:      make(chan *request, 1024),
		in:        newInbox(cfg.InboxMessages, cfg.InboxBytes),
		stopping:  make(chan struct{}),
		done:      make(chan struct{}),
		links:     make(map[string]*link),
		byID:      make(map[replica.LinkID]*link),
		watchers:  make(map[*watcher]struct{}),
		status:    make(map[string]string),
		gone:      make(map[string]time.Time),
		syncDirty: true,
	}
	return e, nil
}

// Close closes the store of an engine that never ran (Run closes it
// itself when it returns). It fails if Run or a Stepper owns the engine.
func (e *Engine) Close() error {
	if !e.started.CompareAndSwap(false, true) {
		return ErrRunning
	}
	close(e.stopping)
	return e.st.Close()
}

// Name returns the node's name.
func (e *Engine) Name() string { return e.name }

// Done is closed when Run has returned.
func (e *Engine) Done() <-chan struct{} { return e.done }

// InboxDropped counts sync messages dropped because the inbox was full.
func (e *Engine) InboxDropped() int64 { return e.inboxDropped.Load() }

// LinkUps counts the links brought up so far (tests and benchmarks wait
// on it).
func (e *Engine) LinkUps() int64 { return e.linkUps.Load() }

// WatchOverflows counts watches ended because they fell behind.
func (e *Engine) WatchOverflows() int64 { return e.watchOverflows.Load() }

// ErrRunning is returned by Run when the engine already runs (or a
// Stepper drives it).
var ErrRunning = errors.New("node: engine already running")

// Run serves until ctx is done or the store fails, then stops: it answers
// every write it has taken (after a last flush), ends the watches, waits
// for a snapshot being written, stops the store's group commit and closes
// the store. It returns nil after a clean stop, or the store's error. Run
// may be called once.
func (e *Engine) Run(ctx context.Context) error {
	if !e.started.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer close(e.done)
	storeCtx, stopStore := context.WithCancel(context.Background())
	storeErr := make(chan error, 1)
	go func() { storeErr <- e.st.Run(storeCtx) }()
	snapDone := make(chan error, 1) // the snapshot writer's result
	var snapWG sync.WaitGroup

	err := e.loop(ctx, storeErr, snapDone, &snapWG)

	e.stop(err)
	snapWG.Wait()
	stopStore()
	if serr := <-storeErr; serr != nil && err == nil {
		err = fmt.Errorf("node: store: %w", serr)
	}
	if cerr := e.st.Close(); cerr != nil && !errors.Is(cerr, store.ErrClosed) && err == nil {
		err = fmt.Errorf("node: closing the store: %w", cerr)
	}
	own := e.r.Tree().Node(e.name)
	e.log.Info("stopped", "entries", e.r.Tree().Len(), "tick", own.Tick(), "error", err)
	return err
}

// stop ends the engine's service: a last flush answers the writes taken,
// then no request is taken any more and every watch ends.
func (e *Engine) stop(cause error) {
	e.stopOnce.Do(func() {
		if e.failed == nil {
			if err := e.flush(); err != nil && cause == nil {
				e.log.Error("last flush failed", "error", err)
			}
		}
		e.answerWaiters(e.unavailable("stopped"))
		close(e.stopping)
		for w := range e.watchers {
			w.end()
			delete(e.watchers, w)
		}
	})
}

// unavailable is the error for requests the engine can no longer serve.
func (e *Engine) unavailable(why string) error {
	if e.failed != nil {
		return fmt.Errorf("%w: node %s %s: %v", tree.ErrUnavailable, e.name, why, e.failed)
	}
	return fmt.Errorf("%w: node %s is stopping", tree.ErrUnavailable, e.name)
}

func (e *Engine) loop(ctx context.Context, storeErr chan error, snapDone chan error, snapWG *sync.WaitGroup) error {
	e.treeMu.Lock() // the loop's while it works (see Engine.Get)
	defer e.treeMu.Unlock()
	e.looping.Store(true)
	defer e.looping.Store(false)      // under treeMu: Get and writeDirect check it under the lock
	if err := e.flush(); err != nil { // the reservation of Restore
		return err
	}
	// One ticker drives the replica's clock, the status entries and the
	// snapshot check (fewer channels for the select below to look at).
	tick := time.NewTicker(e.cfg.TickEvery)
	defer tick.Stop()
	statusEvery := max(1, int(e.cfg.StatusEvery/e.cfg.TickEvery))
	snapEvery := max(1, int(e.cfg.SnapshotCheck/e.cfg.TickEvery))
	ticks := 0
	fast := 0 // requests taken in a row without looking at the other inputs
	for {
		// The fast path: under load, requests come back to back; take
		// them without the full select over every input (ten channels),
		// but look at the others at least every 32 rounds.
		if fast < 32 {
			select {
			case q := <-e.reqs:
				fast++
				e.takeMore(q)
				if err := e.flush(); err != nil {
					return err
				}
				continue
			default:
			}
		}
		fast = 0
		// Readers (Engine.Get) may look at the tree only while the loop
		// waits here; every case takes the tree back first.
		e.treeMu.Unlock()
		select {
		case <-ctx.Done():
			e.treeMu.Lock()
			return nil
		case err := <-storeErr:
			e.treeMu.Lock()
			// The group commit failed: the log's tail is unknown. (Run
			// reads the channel again once the loop has ended.)
			e.failed = err
			storeErr <- err
			return fmt.Errorf("node: store: %w", err)
		case q := <-e.reqs:
			e.treeMu.Lock()
			e.takeMore(q)
		case <-e.in.wake:
			e.treeMu.Lock()
			e.drainInbox()
		case <-e.st.SyncedNotify():
			e.treeMu.Lock()
			e.releaseHeld()
		case <-tick.C:
			e.treeMu.Lock()
			ticks++
			e.r.Tick()
			if ticks%statusEvery == 0 {
				e.writeStatus()
			}
			if ticks%snapEvery == 0 && !e.snapping && e.st.SnapshotDue() {
				e.snapping = true
				snapWG.Add(1)
				go func() {
					defer snapWG.Done()
					snapDone <- e.snapshotAsync()
				}()
			}
		case err := <-snapDone:
			e.treeMu.Lock()
			e.snapping = false
			if err != nil {
				e.log.Error("snapshot failed", "error", err)
			}
		}
		if err := e.flush(); err != nil {
			return err
		}
	}
}

// takeMore takes q and whatever else waits (at most 256 more), so that
// one flush answers them all.
func (e *Engine) takeMore(q *request) {
	e.take(q)
	for range 256 {
		select {
		case q := <-e.reqs:
			e.take(q)
		default:
			return
		}
	}
}

// snapshotAsync writes a snapshot from the snapshot goroutine. Only
// capturing the records runs on the loop, snapChunk entries per turn
// (snapWalk), so that writes go on between the turns (replica.SnapshotHeader
// says why a snapshot taken over many turns restores the same state).
func (e *Engine) snapshotAsync() error {
	start := e.cfg.Now()
	var longest time.Duration
	err := e.st.Snapshot(func(yield func([]byte) error) error {
		w := &snapWalk{}
		for {
			if w.sortMe != nil {
				sortPairs(w.sortMe) // off the loop: the copy is the walk's own
			}
			res, err := call(e, context.Background(), func(e *Engine) snapResult {
				t0 := time.Now()
				var res snapResult
				add := func(b []byte) error { res.recs = append(res.recs, b); return nil }
				done, err := w.step(e, snapChunk, add)
				res.more, res.err = !done, err
				res.took = time.Since(t0)
				return res
			})
			if err != nil {
				return err
			}
			if res.err != nil {
				return res.err
			}
			longest = max(longest, res.took)
			for _, r := range res.recs {
				if err := yield(r); err != nil {
					return err
				}
			}
			if !res.more {
				return nil
			}
		}
	})
	if err == nil {
		e.log.Info("snapshot written", "took", e.cfg.Now().Sub(start).Round(time.Millisecond),
			"longest_turn", longest.Round(time.Microsecond))
	}
	return err
}

// snapChunk is how many entries a snapshot captures per turn of the loop
// (a few milliseconds).
const snapChunk = 4096

type snapResult struct {
	recs [][]byte
	more bool
	took time.Duration
	err  error
}

// flush handles the replica's Ready (see the package documentation): node
// record, records, answers, messages, changes. A store failure stops the
// engine: nothing of this step is sent or shown, and the waiting writes
// get the error.
func (e *Engine) flush() error {
	if e.failed != nil {
		return e.failed
	}
	if !e.r.HasReady() && len(e.waiters) == 0 {
		return nil
	}
	rd := e.r.Ready()
	if rd.NodeRecord != nil {
		if err := e.st.SaveNodeRecord(rd.NodeRecord); err != nil {
			return e.fail(fmt.Errorf("saving the reservation: %w", err))
		}
	}
	if len(rd.Records) > 0 {
		if err := e.st.AppendBatch(rd.Records); err != nil {
			return e.fail(fmt.Errorf("persisting %d records: %w", len(rd.Records), err))
		}
	}
	e.answerWaiters(nil)
	msgs := rd.Messages
	if rd.MustSync && e.cfg.Store.Sync == store.SyncInterval {
		// A heartbeat or a superseded claim vouches for state that must
		// survive a crash. A claim answers a peer catching up, which
		// should not wait: sync now. A heartbeat (once a second) waits
		// for the group commit that syncs what it says, so that no write
		// waits behind an fsync on this goroutine; the rest goes now.
		if mark := e.st.Appended(); e.st.SyncedThrough() < mark {
			if slices.ContainsFunc(rd.Messages, func(m replica.Message) bool { return m.Vouch && m.Kind != wire.KindHeartbeat }) {
				if err := e.st.Flush(); err != nil {
					return e.fail(fmt.Errorf("syncing before a superseded claim: %w", err))
				}
			} else {
				msgs = make([]replica.Message, 0, len(rd.Messages))
				for _, m := range rd.Messages {
					if m.Vouch {
						e.held = append(e.held, heldMsg{m, mark})
					} else {
						msgs = append(msgs, m)
					}
				}
			}
		}
	}
	e.sendAll(msgs)
	e.releaseHeld()
	for _, c := range rd.Changes {
		if !isStatusPath(c.Path) {
			e.syncDirty = true
		}
		if c.Purged {
			continue
		}
		if len(e.watchers) > 0 {
			e.notifyWatchers(c)
		}
		if e.cfg.Observer != nil {
			e.cfg.Observer.Changed(c.Path, c.Value, c.Chain, c.Tock)
		}
	}
	e.r.Recycle(rd) // nothing above keeps its slices (held messages are copies)
	return nil
}

// releaseHeld sends the held messages whose state the store has synced.
func (e *Engine) releaseHeld() {
	if len(e.held) == 0 {
		return
	}
	synced := e.st.SyncedThrough()
	var out []replica.Message
	keep := e.held[:0]
	for _, h := range e.held {
		if h.mark <= synced {
			out = append(out, h.Message)
		} else {
			keep = append(keep, h)
		}
	}
	e.held = keep
	e.sendAll(out)
}

// fail records a store failure: the engine stops.
func (e *Engine) fail(err error) error {
	err = fmt.Errorf("node %s: store: %w", e.name, err)
	e.failed = err
	e.log.Error("the store failed: stopping", "error", err)
	// Its record may have reached the disk before the failure: the
	// outcome of these writes is unknown, as after a crash before the
	// answer.
	e.answerWaiters(fmt.Errorf("%w: %v (the write may or may not have been kept)", tree.ErrUnavailable, err))
	return err
}

// waiter is a write waiting for its records to be persisted.
type waiter struct {
	reply chan<- writeResult
	res   writeResult
}

func (e *Engine) answerWaiters(err error) {
	for _, w := range e.waiters {
		res := w.res
		if err != nil {
			res = writeResult{err: err}
		}
		answer(w.reply, res)
	}
	e.waiters = e.waiters[:0]
}

// answer sends r to a write's caller, if it waits (reply is not nil).
func answer(reply chan<- writeResult, r writeResult) {
	if reply != nil {
		reply <- r
	}
}
