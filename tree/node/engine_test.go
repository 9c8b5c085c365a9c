package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tinylib/msgp/msgp"
	"go.uber.org/goleak"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/replica"
	"github.com/edgekv/edgekv/tree/store"
	"github.com/edgekv/edgekv/tree/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func str(s string) []byte { return msgp.AppendString(nil, s) }

func pth(s string) tree.Path {
	p, err := tree.ParsePath(s)
	if err != nil {
		panic(err)
	}
	return p
}

// running is an engine whose Run goroutine the test owns.
type running struct {
	e      *Engine
	fs     *store.MemFS
	cancel context.CancelFunc
	done   chan error
}

func open(t *testing.T, fs *store.MemFS, mutate func(*Config)) *Engine {
	t.Helper()
	cfg := Config{Name: "a", FS: fs, Store: store.Options{Sync: store.SyncAlways}, FreshStart: func() uint64 { return 0 }}
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func start(t *testing.T, mutate func(*Config)) *running {
	t.Helper()
	fs := store.NewMemFS()
	e := open(t, fs, mutate)
	return run(t, e, fs)
}

func run(t *testing.T, e *Engine, fs *store.MemFS) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{e: e, fs: fs, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- e.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of the cancel")
		return nil
	}
}

// block occupies the engine's loop until the returned function is called;
// it returns once the loop is inside.
func block(t *testing.T, e *Engine) (release func()) {
	t.Helper()
	inside, out := make(chan struct{}), make(chan struct{})
	q := &request{run: func(*Engine) { close(inside); <-out }}
	if err := e.submit(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	<-inside
	var once sync.Once
	return func() { once.Do(func() { close(out) }) }
}

func TestSetGetDelete(t *testing.T) {
	r := start(t, nil)
	ctx := context.Background()
	res, err := r.e.Set(ctx, pth("room.temp"), str("21.5"), Cond{})
	if err != nil || res.Chain.String() != "a:1" || res.Prev != nil {
		t.Fatalf("Set: %+v, %v", res, err)
	}
	en, err := r.e.Get(ctx, pth("room.temp"))
	if err != nil || string(en.Value) != string(str("21.5")) || en.Chain.String() != "a:1" {
		t.Fatalf("Get: %+v, %v", en, err)
	}
	// Conditions: must-not-exist, previous value, head, idempotent.
	if _, err := r.e.Set(ctx, pth("room.temp"), str("x"), Cond{Cond: tree.Cond{MustNotExist: true}}); !errors.Is(err, tree.ErrConflict) {
		t.Errorf("MustNotExist on an existing entry: %v", err)
	}
	if _, err := r.e.Set(ctx, pth("room.temp"), str("x"), Cond{Prev: str("nope")}); !errors.Is(err, tree.ErrConflict) {
		t.Errorf("wrong Prev: %v", err)
	}
	res, err = r.e.Set(ctx, pth("room.temp"), str("21.5"), Cond{Cond: tree.Cond{Idem: true}})
	if err != nil || !res.NoOp || res.Chain.String() != "a:1" {
		t.Errorf("idempotent: %+v, %v", res, err)
	}
	res, err = r.e.Delete(ctx, pth("room.temp"), Cond{Cond: tree.Cond{Head: &tree.Link{Node: "a", Tick: 1}}})
	if err != nil || string(res.Prev) != string(str("21.5")) {
		t.Fatalf("Delete: %+v, %v", res, err)
	}
	if _, err := r.e.Delete(ctx, pth("room.temp"), Cond{}); !errors.Is(err, tree.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if _, err := r.e.Set(ctx, pth("x"), nil, Cond{}); !errors.Is(err, tree.ErrInvalidValue) {
		t.Errorf("Set with no value: %v", err)
	}
	if _, err := r.e.Set(ctx, pth("x"), []byte{0xc1}, Cond{}); !errors.Is(err, tree.ErrInvalidValue) {
		t.Errorf("Set with a malformed value: %v", err)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := r.e.Get(ctx, pth("x")); !errors.Is(err, tree.ErrUnavailable) {
		t.Errorf("Get after stop: %v", err)
	}
	if _, err := r.e.Set(ctx, pth("x"), str("y"), Cond{}); !errors.Is(err, tree.ErrUnavailable) || tree.KindOf(err) != tree.KindUnavailable {
		t.Errorf("Set after stop: %v", err)
	}
}

// TestGiveUpNeverApplies: a write whose caller gives up before the engine
// takes it never happens, and the caller gets the context's error.
func TestGiveUpNeverApplies(t *testing.T) {
	r := start(t, nil)
	release := block(t, r.e)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.e.Set(ctx, pth("late"), str("v"), Cond{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Set while the engine is busy: %v", err)
	}
	release()
	en, err := r.e.Get(context.Background(), pth("late"))
	if err != nil || en.Exists() {
		t.Fatalf("the abandoned write happened after all: %+v, %v", en, err)
	}
}

// TestStateWhileBusy reproduces the old data race: State with a short
// deadline while the loop is busy returns the deadline error, and the
// result of a request that ran anyway is never written into the caller's
// variables (results come back over channels; -race checks).
func TestStateWhileBusy(t *testing.T) {
	r := start(t, nil)
	for range 20 {
		release := block(t, r.e)
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		st, err := r.e.State(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || st.Nodes != nil {
			t.Fatalf("State while busy: %+v, %v", st, err)
		}
		release()
		if _, err := r.e.State(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStopAnswersEveryCaller: writes racing with the stop either happen
// (and are persisted) or fail with tree.ErrUnavailable; none hangs.
func TestStopAnswersEveryCaller(t *testing.T) {
	fs := store.NewMemFS()
	e := open(t, fs, func(c *Config) { c.Store.Sync = store.SyncInterval })
	r := run(t, e, fs)
	var wg sync.WaitGroup
	results := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.Set(context.Background(), pth(fmt.Sprintf("k:%d", i)), str("v"), Cond{})
			results <- err
		}()
	}
	first := <-results // a barrier: at least one write is through
	results <- first
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(results)
	ok := 0
	for err := range results {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, tree.ErrUnavailable):
			t.Errorf("a write racing the stop: %v", err)
		}
	}
	// Every write that succeeded is in the store.
	e2 := open(t, fs, func(c *Config) { c.Store.Sync = store.SyncInterval })
	stp, err := e2.Stepper()
	if err != nil {
		t.Fatal(err)
	}
	if got := stp.Replica().Tree().Len(); got != ok {
		t.Errorf("%d writes acknowledged, %d entries after reopening", ok, got)
	}
	stp.Close()
}

// TestStoreFailureStops: a failed fsync stops the engine: the write gets
// an unavailable error, Run returns the store's error, nothing more runs.
func TestStoreFailureStops(t *testing.T) {
	fs := store.NewMemFS()
	e := open(t, fs, nil)
	r := run(t, e, fs)
	if _, err := e.Set(context.Background(), pth("a"), str("1"), Cond{}); err != nil {
		t.Fatal(err)
	}
	injected := errors.New("injected")
	fs.FailAfter("sync", 0, injected)
	_, err := e.Set(context.Background(), pth("b"), str("2"), Cond{})
	if !errors.Is(err, tree.ErrUnavailable) {
		t.Fatalf("write on a failing disk: %v", err)
	}
	select {
	case err := <-r.done:
		close(r.done)
		if !errors.Is(err, injected) {
			t.Fatalf("Run returned %v, want the disk's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the engine did not stop after its store failed")
	}
	if _, err := e.Get(context.Background(), pth("a")); !errors.Is(err, tree.ErrUnavailable) {
		t.Errorf("Get after the failure: %v", err)
	}
}

// TestGroupCommitFailureStops: under sync interval, a failed group commit
// (the store's own goroutine) stops the engine too.
func TestGroupCommitFailureStops(t *testing.T) {
	fs := store.NewMemFS()
	e := open(t, fs, func(c *Config) { c.Store.Sync = store.SyncInterval; c.Store.SyncInterval = time.Millisecond })
	r := run(t, e, fs)
	if _, err := e.Set(context.Background(), pth("a"), str("1"), Cond{}); err != nil {
		t.Fatal(err)
	}
	injected := errors.New("injected")
	fs.FailAfter("sync", 0, injected)
	e.Set(context.Background(), pth("b"), str("2"), Cond{}) // something for the next group commit
	select {
	case err := <-r.done:
		close(r.done)
		if !errors.Is(err, injected) {
			t.Fatalf("Run returned %v, want the disk's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the engine did not stop after its group commit failed")
	}
	if _, err := e.Set(context.Background(), pth("c"), str("3"), Cond{}); !errors.Is(err, tree.ErrUnavailable) {
		t.Fatalf("a write after the failure: %v", err)
	}
}

// TestSnapshotDuringStop: a snapshot being written when the engine stops
// neither deadlocks the stop nor loses anything.
func TestSnapshotDuringStop(t *testing.T) {
	for i := range 20 {
		fs := store.NewMemFS()
		e := open(t, fs, func(c *Config) {
			c.SnapshotCheck = time.Millisecond
			c.Store.SnapshotAfterBytes = 1
		})
		r := run(t, e, fs)
		n := 20 + 5*i // a different moment in the snapshot cycle each round
		for j := range n {
			if _, err := e.Set(context.Background(), pth(fmt.Sprintf("k:%d", j)), str("v"), Cond{}); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
		e2 := open(t, fs, nil)
		stp, _ := e2.Stepper()
		if got := stp.Replica().Tree().Len(); got != n {
			t.Fatalf("round %d: %d entries after reopening, want %d", i, got, n)
		}
		stp.Close()
	}
}

// TestWatch: a watch with fetch sends the current entries, then up-to-date,
// then every change below its path; it ends when the engine stops.
func TestWatch(t *testing.T) {
	r := start(t, nil)
	ctx := context.Background()
	r.e.Set(ctx, pth("room.a"), str("1"), Cond{})
	r.e.Set(ctx, pth("other"), str("x"), Cond{})
	items := make(chan Item, 10)
	done := make(chan error, 1)
	go func() { done <- r.e.Watch(ctx, pth("room"), true, func(it Item) error { items <- it; return nil }) }()
	next := func() Item {
		select {
		case it := <-items:
			return it
		case <-time.After(5 * time.Second):
			t.Fatal("no watch item")
			return Item{}
		}
	}
	if it := next(); it.Path.String() != "room.a" || string(it.Entry.Value) != string(str("1")) {
		t.Fatalf("initial item %+v", it)
	}
	if it := next(); !it.UpToDate {
		t.Fatalf("want up-to-date, got %+v", it)
	}
	r.e.Set(ctx, pth("other"), str("y"), Cond{})
	r.e.Delete(ctx, pth("room.a"), Cond{})
	if it := next(); it.Path.String() != "room.a" || it.Entry.Value != nil {
		t.Fatalf("change %+v, want the deletion of room.a", it)
	}
	r.stop(t)
	select {
	case err := <-done:
		if !errors.Is(err, tree.ErrUnavailable) {
			t.Fatalf("watch ended with %v, want unavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not end when the engine stopped")
	}
}

// TestWatchOverflow: a watcher that does not read is dropped with
// ErrWatchOverflow; writers are never held up.
func TestWatchOverflow(t *testing.T) {
	r := start(t, func(c *Config) { c.WatchQueue = 4 })
	ctx := context.Background()
	hold := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- r.e.Watch(ctx, pth("k"), false, func(Item) error { <-hold; return nil })
	}()
	for i := range 20 { // the watch is registered when its first change arrives… or soon after
		r.e.Set(ctx, pth(fmt.Sprintf("k:%d", i)), str("v"), Cond{})
	}
	deadline := time.After(5 * time.Second)
	for r.e.WatchOverflows() == 0 {
		r.e.Set(ctx, pth("k.more"), str(time.Now().String()), Cond{})
		select {
		case <-deadline:
			t.Fatal("the watch never overflowed")
		default:
		}
	}
	close(hold)
	if err := <-done; !errors.Is(err, ErrWatchOverflow) {
		t.Fatalf("watch ended with %v", err)
	}
}

// TestIdleWatchesAreSmall: a watch's queue grows as changes wait in it,
// rather than being allocated at its full size (10,000 items) up front;
// 1,000 idle watches take well under 10 MB (before: about 880 KB each),
// and a burst past the initial size still arrives whole and in order.
func TestIdleWatchesAreSmall(t *testing.T) {
	r := start(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 1000
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.e.Watch(ctx, pth("idle"), false, func(Item) error { return nil })
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.watchers() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d watches registered", r.watchers(), n)
		}
		time.Sleep(time.Millisecond)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 10<<20 {
		t.Errorf("%d idle watches took %d MB of heap", n, grew>>20)
	}
	cancel()
	wg.Wait()

	// A burst of 3,000 changes to a watch that is slow to read.
	got := make(chan string, 4000)
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- r.e.Watch(context.Background(), pth("burst"), false, func(it Item) error {
			<-release
			got <- it.Path.String()
			return nil
		})
	}()
	for r.watchers() < 1 {
		time.Sleep(time.Millisecond)
	}
	for i := range 3000 {
		if _, err := r.e.Set(context.Background(), pth(fmt.Sprintf("burst:%d", i)), str("v"), Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	for i := range 3000 {
		if p := <-got; p != fmt.Sprintf("burst:%d", i) {
			t.Fatalf("change %d of the burst: %s", i, p)
		}
	}
	r.stop(t)
	if err := <-done; !errors.Is(err, tree.ErrUnavailable) {
		t.Fatalf("the burst's watch ended with %v", err)
	}
}

// collect is a Sender that keeps what it is given; sent, if set, hears
// of every message.
type collect struct {
	mu   sync.Mutex
	msgs []wire.Kind
	sent chan wire.Kind
}

func (c *collect) send(k wire.Kind, _ []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, k)
	if c.sent != nil {
		select {
		case c.sent <- k:
		default:
		}
	}
	return nil
}

func (c *collect) count(k wire.Kind) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.msgs {
		if m == k {
			n++
		}
	}
	return n
}

// TestInboxDrops: messages beyond the inbox bound are dropped and counted,
// never blocking the sender, and the engine then sends its digest on the
// link so that the peer sends again what this node lacks.
func TestInboxDrops(t *testing.T) {
	r := start(t, func(c *Config) { c.InboxMessages = 10 })
	peer := collect{sent: make(chan wire.Kind, 100)}
	r.e.LinkUp("in:b", peer.send)
	waitDigest := func(what string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case k := <-peer.sent:
				if k == wire.KindDigest {
					return
				}
			case <-deadline:
				t.Fatal("no digest sent " + what)
			}
		}
	}
	waitDigest("at link-up")
	release := block(t, r.e)
	ev := tree.Event{Path: pth("x"), Value: str("v"), Chain: tree.Chain{{Node: "b", Tick: 1}}, Tock: 1}
	msg := wire.AppendUpdate(nil, ev)
	for range 50 { // returns at once although the loop is blocked
		r.e.Receive("in:b", peer.send, wire.KindUpdate, msg)
	}
	if got := r.e.InboxDropped(); got != 40 {
		t.Fatalf("dropped %d, want 40", got)
	}
	release()
	waitDigest("after the drops")
}

// TestOneLinkPerPeer: when a peer is linked both ways, only the link
// dialled by the node whose name sorts first carries the sync; the other
// takes over when it goes.
func TestOneLinkPerPeer(t *testing.T) {
	for _, tc := range []struct{ self, peer, keep, idle string }{
		{"a", "b", "out:b", "in:b"},
		{"c", "b", "in:b", "out:b"},
	} {
		e := open(t, store.NewMemFS(), func(c *Config) { c.Name = tc.self })
		stp, err := e.Stepper()
		if err != nil {
			t.Fatal(err)
		}
		stp.Start()
		var in, out collect
		stp.LinkUp("in:"+tc.peer, in.send)
		stp.LinkUp("out:"+tc.peer, out.send)
		if got := stp.Active(); len(got) != 1 || got[0] != tc.keep {
			t.Errorf("%s: active links %v, want [%s]", tc.self, got, tc.keep)
		}
		stp.LinkDown(tc.keep)
		if got := stp.Active(); len(got) != 1 || got[0] != tc.idle {
			t.Errorf("%s after %s went down: active %v, want [%s]", tc.self, tc.keep, got, tc.idle)
		}
		stp.Close()
	}
}

// TestLinkUpAgain: a repeated LinkUp (a new connection under the same
// link) does the handshake again without a new link; a message that
// overtakes LinkUp brings the link up.
func TestLinkUpAgain(t *testing.T) {
	e := open(t, store.NewMemFS(), nil)
	stp, _ := e.Stepper()
	defer stp.Close()
	stp.Start()
	var c collect
	hb := wire.AppendHello(nil, wire.Hello{Proto: wire.Proto, Node: "b"})
	stp.Receive("in:b", c.send, wire.KindHello, hb) // before LinkUp
	if got := stp.Links(); len(got) != 1 || got[0] != "in:b" || c.count(wire.KindHello) != 1 {
		t.Fatalf("message before LinkUp: links %v, hellos sent %d", got, c.count(wire.KindHello))
	}
	stp.LinkUp("in:b", c.send)
	stp.LinkUp("in:b", c.send)
	if c.count(wire.KindHello) != 3 || c.count(wire.KindDigest) != 3 || len(stp.Links()) != 1 {
		t.Fatalf("after two LinkUps: hellos %d digests %d links %v", c.count(wire.KindHello), c.count(wire.KindDigest), stp.Links())
	}
}

// TestStatusAndClock: status entries are written on the status timer with
// the injected clock's time (testing/synctest fakes the timers).
func TestStatusAndClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fixed := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
		fs := store.NewMemFS()
		e := open(t, fs, func(c *Config) {
			c.Now = func() time.Time { return fixed }
			c.Store.Sync = store.SyncInterval
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		var c collect
		e.LinkUp("out:b", c.send)
		time.Sleep(6 * time.Second) // the fake clock: one status period
		synctest.Wait()
		en, err := e.Get(ctx, StatusPath("a", "out:b"))
		if err != nil || en.Value == nil {
			t.Fatalf("no link status after a status period: %+v, %v", en, err)
		}
		var b strings.Builder
		msgp.UnmarshalAsJSON(&b, en.Value)
		want := fmt.Sprintf(`"since":%d`, fixed.Unix())
		if !strings.Contains(b.String(), want) || !strings.Contains(b.String(), `"connected":true`) {
			t.Errorf("status %s, want %s", b.String(), want)
		}
		if c.count(wire.KindHeartbeat) < 5 {
			t.Errorf("%d heartbeats in 6 s", c.count(wire.KindHeartbeat))
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestImport: an imported event is applied as a peer's and persisted;
// importing it again reports it as not new.
func TestImport(t *testing.T) {
	r := start(t, nil)
	ctx := context.Background()
	ev := tree.Event{Path: pth("imp"), Value: str("v"), Chain: tree.Chain{{Node: "z", Tick: 4}}, Tock: 9}
	if fresh, err := r.e.Import(ctx, ev); err != nil || !fresh {
		t.Fatalf("Import: %v, %v", fresh, err)
	}
	if fresh, err := r.e.Import(ctx, ev); err != nil || fresh {
		t.Fatalf("Import again: %v, %v", fresh, err)
	}
	bad := ev
	bad.Chain = nil
	if _, err := r.e.Import(ctx, bad); !errors.Is(err, tree.ErrMalformed) {
		t.Fatalf("Import without a chain: %v", err)
	}
	st, err := r.e.State(ctx)
	if err != nil || st.Nodes["z"].Tick != 4 || !st.Nodes["z"].Missing.Contains(1) {
		t.Fatalf("State: %+v, %v", st.Nodes["z"], err)
	}
}

// TestRunTwice: Run may be called once; a Stepper cannot take a running
// engine.
func TestRunTwice(t *testing.T) {
	r := start(t, nil)
	if _, err := r.e.Get(context.Background(), pth("x")); err != nil {
		t.Fatal(err)
	}
	if err := r.e.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v", err)
	}
	if _, err := r.e.Stepper(); !errors.Is(err, ErrRunning) {
		t.Fatalf("Stepper of a running engine: %v", err)
	}
}

// TestFreshStart: a node whose store is empty starts far above tick 1 (its
// data directory may have been lost, and its peers may still hold ticks of
// its earlier life), skipping everything below; a restart does not jump.
func TestFreshStart(t *testing.T) {
	fs := store.NewMemFS()
	e := open(t, fs, func(c *Config) { c.FreshStart = nil }) // the default: random
	stp, _ := e.Stepper()
	stp.Start()
	res, err := stp.Set(pth("x"), str("v"), Cond{})
	if err != nil {
		t.Fatal(err)
	}
	tick := res.Chain[0].Tick
	own := stp.Replica().Tree().Node("a")
	if tick < 1<<40 || tick >= 1<<50+2 || own.Skipped().Max() != tick-1 || res.Tock != 1 {
		t.Fatalf("fresh start: first write %s tock %d, skipped %s", res.Chain, res.Tock, own.Skipped())
	}
	stp.Close()
	e2 := open(t, fs, func(c *Config) { c.FreshStart = func() uint64 { t.Fatal("FreshStart drawn on a restart"); return 0 } })
	stp2, _ := e2.Stepper()
	stp2.Start()
	res2, _ := stp2.Set(pth("y"), str("v"), Cond{})
	if res2.Chain[0].Tick <= tick || res2.Chain[0].Tick > tick+1<<21 {
		t.Fatalf("after a restart: %s, want a little above %d", res2.Chain, tick)
	}
	stp2.Close()
}

// watchers returns the number of watches registered on the engine.
func (r *running) watchers() int {
	n, _ := call(r.e, context.Background(), func(e *Engine) int { return len(e.watchers) })
	return n
}

// fillChunks sets n entries big.<i> and returns the path of the last one
// in canonical order.
func fillChunks(t *testing.T, r *running, n int) tree.Path {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		if _, err := r.e.Set(ctx, tree.Path{tree.Str("big"), tree.Int(int64(i))}, str("old"), Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	return tree.Path{tree.Str("big"), tree.Int(int64(n - 1))}
}

// TestWalkInChunks: a walk visits the tree a chunk per engine turn, so a
// write made while the walk runs goes through at once, and an entry
// written before the walk reaches it is given as it is then. Every entry
// comes once.
func TestWalkInChunks(t *testing.T) {
	r := start(t, nil)
	ctx := context.Background()
	n := 3*walkChunk + 10
	last := fillChunks(t, r, n)
	seen := map[string]string{}
	first := true
	err := r.e.Walk(ctx, pth("big"), func(it Item) error {
		if first {
			first = false
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if _, err := r.e.Set(wctx, last, str("new"), Cond{}); err != nil {
				return fmt.Errorf("write during the walk: %w", err)
			}
		}
		if _, dup := seen[it.Path.String()]; dup {
			return fmt.Errorf("%s given twice", it.Path)
		}
		seen[it.Path.String()] = string(it.Entry.Value)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("walk gave %d entries, want %d", len(seen), n)
	}
	if got := seen[last.String()]; got != string(str("new")) {
		t.Fatalf("%s given as %q: the walk copied the tree in one step", last, got)
	}
}

// TestWatchFetchInChunks: a fetch watch gives every entry once, an entry
// written during the fetch with its newer value, then UpToDate, then the
// change itself.
func TestWatchFetchInChunks(t *testing.T) {
	r := start(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 3*walkChunk + 10
	last := fillChunks(t, r, n)
	type res struct {
		initial  int
		lastSeen string
		change   string
		err      error
	}
	out := make(chan res, 1)
	go func() {
		var s res
		upToDate := false
		first := true
		s.err = r.e.Watch(ctx, pth("big"), true, func(it Item) error {
			switch {
			case it.UpToDate:
				upToDate = true
			case !upToDate:
				if first {
					first = false
					if _, err := r.e.Set(ctx, last, str("new"), Cond{}); err != nil {
						return err
					}
				}
				s.initial++
				if it.Path.Equal(last) {
					s.lastSeen = string(it.Entry.Value)
				}
			default:
				if it.Path.Equal(last) {
					s.change = string(it.Entry.Value)
					out <- s
					return errors.New("done")
				}
			}
			return nil
		})
		out <- s
	}()
	select {
	case s := <-out:
		if s.initial != n || s.lastSeen != string(str("new")) || s.change != string(str("new")) {
			t.Fatalf("fetch gave %d entries (want %d), last as %q, change %q (err %v)", s.initial, n, s.lastSeen, s.change, s.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the fetch watch did not finish")
	}
}

// tockObserver records the tock of each path's last change shown.
type tockObserver struct{ seen map[string]uint64 }

func (o *tockObserver) Changed(p tree.Path, _ []byte, _ tree.Chain, tock uint64) {
	o.seen[p.String()] = tock
}

// TestCursorAfterObserver: a cursor step shows the Observer every change
// applied before it, also writes taken in the same turn of the engine, so
// that the broker can tell a change its walk has seen from a later one.
// Depth limits the walk; deleted entries come with a nil value.
func TestCursorAfterObserver(t *testing.T) {
	obs := &tockObserver{seen: map[string]uint64{}}
	r := start(t, func(c *Config) { c.Observer = obs; c.Store.Sync = store.SyncInterval })
	ctx := context.Background()
	for _, p := range []string{"a", "a.x", "a.x.deep", "gone"} {
		if _, err := r.e.Set(ctx, pth(p), str(p), Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.e.Delete(ctx, pth("gone"), Cond{}); err != nil {
		t.Fatal(err)
	}
	release := block(t, r.e)
	defer release()
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.e.Set(ctx, pth(fmt.Sprintf("b%d", i)), str("b"), Cond{}); err != nil {
				t.Error(err)
			}
		}()
	}
	for len(r.e.reqs) < 5 {
		time.Sleep(time.Millisecond)
	}
	type seen struct {
		path     string
		hasValue bool
		shown    bool // its change was shown to the Observer before the step
	}
	steps := make(chan []seen, 1)
	go func() {
		var got []seen
		cur := r.e.Cursor(nil, 1) // the root and one level: a, b0…b4, gone (not a.x)
		_, err := cur.Next(ctx, func(items []Item) {
			for _, it := range items {
				got = append(got, seen{it.Path.String(), it.Entry.Value != nil, obs.seen[it.Path.String()] == it.Entry.Tock})
			}
		})
		if err != nil {
			t.Error(err)
		}
		steps <- got
	}()
	for len(r.e.reqs) < 6 {
		time.Sleep(time.Millisecond)
	}
	release() // the five writes and the step are taken in one turn
	wg.Wait()
	var got []seen
	select {
	case got = <-steps:
	case <-time.After(10 * time.Second):
		t.Fatal("the cursor step did not return")
	}
	var paths []string
	root := tree.Path{}.String()
	for _, s := range got {
		paths = append(paths, s.path)
		if s.path == "gone" && s.hasValue {
			t.Errorf("gone: has a value, want nil (deleted)")
		}
		if s.path != root && (s.hasValue || s.path == "gone") && !s.shown {
			t.Errorf("%s: given to the cursor before its change was shown to the Observer", s.path)
		}
	}
	want := []string{root, "a", "b0", "b1", "b2", "b3", "b4", "gone"}
	if !slices.Equal(paths, want) {
		t.Errorf("cursor visited %v, want %v", paths, want)
	}
	_, err := r.e.Cursor(nil, -1).Next(ctx, func(items []Item) {
		var all []string
		for _, it := range items {
			all = append(all, it.Path.String())
		}
		if !slices.Contains(all, "a.x.deep") || !slices.Contains(all, "b4") {
			t.Errorf("an unlimited cursor visited %v", all)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestGetWhileWriting: Get reads the tree beside the loop (under its
// lock): each writer reads back what its Set returned, a reader of all
// keys never sees a value go back, while walks run and the loop ticks;
// after Run ends, Get answers unavailable. Run it with -race.
func TestGetWhileWriting(t *testing.T) {
	r := start(t, func(c *Config) { c.Store.Sync = store.SyncInterval })
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := pth(fmt.Sprintf("w%d", w))
			for i := range 300 {
				v := msgp.AppendInt(nil, i)
				if _, err := r.e.Set(ctx, p, v, Cond{}); err != nil {
					t.Error(err)
					return
				}
				got, err := r.e.Get(ctx, p)
				if err != nil || !bytes.Equal(got.Value, v) {
					t.Errorf("w%d: after Set %d, Get = %x, %v", w, i, got.Value, err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // a reader of every writer's key: values only go forward
		defer wg.Done()
		last := map[int]int64{}
		for range 2000 {
			for w := range 4 {
				got, err := r.e.Get(ctx, pth(fmt.Sprintf("w%d", w)))
				if err != nil {
					t.Error(err)
					return
				}
				if got.Value == nil {
					continue
				}
				v, _, err := msgp.ReadInt64Bytes(got.Value)
				if err != nil || v < last[w] {
					t.Errorf("w%d: read %d after %d (%v)", w, v, last[w], err)
					return
				}
				last[w] = v
			}
		}
	}()
	walkWhile(t, &wg, r.e, 20) // walks share the loop with the writes
	wg.Wait()
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if _, err := r.e.Get(ctx, pth("w0")); !errors.Is(err, tree.ErrUnavailable) {
		t.Errorf("Get after Run ended: %v, want ErrUnavailable", err)
	}
}

// TestWriteNoWait: queued writes are applied in order, before a write the
// same goroutine makes later; status entries are refused at once.
func TestWriteNoWait(t *testing.T) {
	r := start(t, func(c *Config) { c.Store.Sync = store.SyncInterval })
	ctx := context.Background()
	for i := range 1000 {
		if err := r.e.WriteNoWait(ctx, pth("k"), msgp.AppendInt(nil, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.e.WriteNoWait(ctx, pth("gone"), nil); err != nil { // a delete of nothing: not reported
		t.Fatal(err)
	}
	if _, err := r.e.Set(ctx, pth("after"), str("x"), Cond{}); err != nil {
		t.Fatal(err)
	}
	got, err := r.e.Get(ctx, pth("k"))
	if err != nil || !bytes.Equal(got.Value, msgp.AppendInt(nil, 999)) {
		t.Fatalf("k = %x, %v; want the last queued value (999)", got.Value, err)
	}
	status := append(tree.Path{}, replica.StatusPrefix...)
	status = append(status, tree.Str("x"))
	if err := r.e.WriteNoWait(ctx, status, str("y")); !errors.Is(err, tree.ErrPermission) {
		t.Fatalf("status entry: %v, want ErrPermission", err)
	}
}

// TestCursorChunkBytes: a cursor's step stops once its values come to
// cursorBytes (the broker queues a step at once), and still visits every
// entry once, in order.
func TestCursorChunkBytes(t *testing.T) {
	r := start(t, nil)
	ctx := context.Background()
	big := msgp.AppendBytes(nil, make([]byte, 10<<10))
	const n = 50
	for i := range n {
		if _, err := r.e.Set(ctx, pth(fmt.Sprintf("k%03d", i)), big, Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	cur := r.e.Cursor(nil, -1)
	var visited []string
	steps := 0
	for more := true; more; {
		var err error
		more, err = cur.Next(ctx, func(items []Item) {
			size := 0
			for _, it := range items[:max(len(items)-1, 0)] {
				size += len(it.Entry.Value)
			}
			if size >= cursorBytes {
				t.Errorf("step %d: %d entries, %d bytes before its last", steps, len(items), size)
			}
			for _, it := range items {
				visited = append(visited, it.Path.String())
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		steps++
	}
	if len(visited) != n+1 { // the root, then k000…k049
		t.Fatalf("visited %d entries, want %d: %v", len(visited), n+1, visited)
	}
	if !slices.IsSorted(visited[1:]) {
		t.Errorf("not in order: %v", visited)
	}
	if min := n * len(big) / cursorBytes; steps < min {
		t.Errorf("%d steps for %d bytes, want at least %d", steps, n*len(big), min)
	}
}

// walkWhile walks the whole tree n times on a goroutine of its own, done
// with wg: walks that compete with the writes of a test for the loop.
func walkWhile(t *testing.T, wg *sync.WaitGroup, e *Engine, n int) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range n {
			if err := e.Walk(context.Background(), nil, func(Item) error { return nil }); err != nil {
				t.Error(err)
				return
			}
		}
	}()
}

// changeLog records the tocks and values the Observer is shown.
type changeLog struct {
	mu     sync.Mutex
	tocks  []uint64
	values map[string][][]byte
}

func (o *changeLog) Changed(p tree.Path, value []byte, _ tree.Chain, tock uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tocks = append(o.tocks, tock)
	if o.values == nil {
		o.values = map[string][][]byte{}
	}
	o.values[p.String()] = append(o.values[p.String()], value)
}

// TestDirectWrites: under sync "interval", writes that meet an idle loop
// are applied on the caller's goroutine (writeDirect); with four writers
// and walks competing, the Observer still sees every change once, in tock
// order, and each writer's values in the order it wrote them.
func TestDirectWrites(t *testing.T) {
	obs := &changeLog{}
	r := start(t, func(c *Config) { c.Store.Sync = store.SyncInterval; c.Observer = obs })
	ctx := context.Background()
	// The loop is idle once it waits in its select: a write then goes
	// direct (the first may find it still starting, or finishing a turn).
	for i := 0; r.e.directWrites.Load() == 0; i++ {
		if i == 100 {
			t.Fatal("100 writes to an idle engine, none applied on its caller's goroutine")
		}
		time.Sleep(time.Millisecond)
		if _, err := r.e.Set(ctx, pth("first"), msgp.AppendInt(nil, i), Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	obs.mu.Lock()
	firsts := len(obs.tocks)
	obs.mu.Unlock()
	const perWriter = 500
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := pth(fmt.Sprintf("w%d", w))
			for i := range perWriter {
				v := msgp.AppendInt(nil, i)
				var err error
				if i%2 == 0 {
					err = r.e.WriteNoWait(ctx, p, v)
				} else {
					_, err = r.e.Set(ctx, p, v, Cond{})
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	walkWhile(t, &wg, r.e, 10)
	wg.Wait()
	if _, err := r.e.Set(ctx, pth("last"), str("v"), Cond{}); err != nil { // after every queued write
		t.Fatal(err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if want := firsts + 1 + 4*perWriter; len(obs.tocks) != want {
		t.Fatalf("the Observer saw %d changes, want %d", len(obs.tocks), want)
	}
	for i := 1; i < len(obs.tocks); i++ {
		if obs.tocks[i] <= obs.tocks[i-1] {
			t.Fatalf("change %d: tock %d after %d", i, obs.tocks[i], obs.tocks[i-1])
		}
	}
	for w := range 4 {
		vals := obs.values[fmt.Sprintf("w%d", w)]
		for i, v := range vals {
			if !bytes.Equal(v, msgp.AppendInt(nil, i)) {
				t.Fatalf("w%d: change %d has %x", w, i, v)
			}
		}
	}
	t.Logf("%d of %d writes applied on their callers' goroutines", r.e.directWrites.Load(), len(obs.tocks))

	// Under sync "always" every write goes to the loop, whose turns let
	// one fsync serve many writes.
	ra := start(t, nil)
	for i := range 20 {
		time.Sleep(time.Millisecond) // the loop idle, as above
		if _, err := ra.e.Set(ctx, pth("a"), msgp.AppendInt(nil, i), Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := ra.e.directWrites.Load(); n != 0 {
		t.Fatalf("sync always: %d writes applied without the loop", n)
	}
}

// TestDirectWriteAfterQueued: a write queued for the loop (WriteNoWait
// while the loop could not be had) is applied before a later write of
// the same goroutine, even when that one finds the loop idle: the loop
// has taken the first from its channel and waits for treeMu when the
// second comes.
func TestDirectWriteAfterQueued(t *testing.T) {
	r := start(t, func(c *Config) { c.Store.Sync = store.SyncInterval })
	ctx := context.Background()
	if _, err := r.e.State(ctx); err != nil { // the loop runs
		t.Fatal(err)
	}
	for i := range 50 {
		p := pth(fmt.Sprintf("k%d", i))
		r.e.treeMu.Lock() // as if a direct write of another goroutine were under way
		if err := r.e.WriteNoWait(ctx, p, str("queued")); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(r.e.reqs) > 0 { // the loop takes it and waits for treeMu
			if time.Now().After(deadline) { // still busy with a write of the round before
				r.e.treeMu.Unlock()
				t.Fatalf("round %d: the loop did not take the queued write", i)
			}
			time.Sleep(10 * time.Microsecond)
		}
		r.e.treeMu.Unlock()
		if _, err := r.e.Set(ctx, p, str("later"), Cond{}); err != nil {
			t.Fatal(err)
		}
		got, err := r.e.Get(ctx, p)
		if err != nil || !bytes.Equal(got.Value, str("later")) {
			t.Fatalf("round %d: %s = %x (%v), want the later write", i, p, got.Value, err)
		}
	}
}

// TestDirectWriteFailureStops: a store failure met by a write on its
// caller's goroutine (the log's write-behind) answers that write with
// ErrUnavailable and stops the engine, as one met by the loop does.
func TestDirectWriteFailureStops(t *testing.T) {
	fs := store.NewMemFS()
	e := open(t, fs, func(c *Config) { c.Store.Sync = store.SyncInterval; c.Store.SyncInterval = time.Hour })
	r := run(t, e, fs)
	ctx := context.Background()
	if _, err := e.State(ctx); err != nil { // the loop runs
		t.Fatal(err)
	}
	injected := errors.New("injected")
	fs.FailAfter("write", 0, injected)
	big := msgp.AppendBytes(nil, bytes.Repeat([]byte{'x'}, 60<<10))
	var err error
	for i := 0; i < 40 && err == nil; i++ { // the write-behind starts at 1 MiB
		_, err = e.Set(ctx, pth(fmt.Sprintf("k%d", i)), big, Cond{})
	}
	if !errors.Is(err, tree.ErrUnavailable) {
		t.Fatalf("writes on a failing disk: %v, want ErrUnavailable", err)
	}
	if e.directWrites.Load() == 0 {
		t.Fatal("no write took the direct path")
	}
	select {
	case err := <-r.done:
		close(r.done)
		if !errors.Is(err, injected) {
			t.Fatalf("Run returned %v, want the disk's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the engine did not stop after a direct write's store failure")
	}
	if _, err := e.Set(ctx, pth("after"), str("v"), Cond{}); !errors.Is(err, tree.ErrUnavailable) {
		t.Fatalf("a write after the failure: %v", err)
	}
}
