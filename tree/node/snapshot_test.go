package node

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/store"
)

// countHandler counts the log records whose message contains a string.
type countHandler struct {
	mu   sync.Mutex
	want string
	n    int
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.want) {
		h.mu.Lock()
		h.n++
		h.mu.Unlock()
	}
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }

func (h *countHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// TestChunkedSnapshotRestores: snapshots are captured a chunk per turn
// of the loop while writers set, overwrite and delete entries between
// the chunks; a node reopened from the snapshot and the log holds exactly
// what the running node held (values, chains and tocks of every entry).
func TestChunkedSnapshotRestores(t *testing.T) {
	fs := store.NewMemFS()
	snaps := &countHandler{want: "snapshot written"}
	cfg := Config{Name: "chunky", FS: fs, FreshStart: func() uint64 { return 0 }, Logger: slog.New(snaps),
		TickEvery: 5 * time.Millisecond, SnapshotCheck: 5 * time.Millisecond, Store: store.Options{SnapshotAfterBytes: 1}}
	e, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, e, fs)
	ctx := context.Background()
	key := func(i int) tree.Path {
		return tree.Path{tree.Str(fmt.Sprintf("g%d", i%7)), tree.Int(int64(i % 1000)), tree.Int(int64(i))}
	}
	const n = 5 * snapChunk // every snapshot takes several turns
	for i := range n {
		if _, err := e.Set(ctx, key(i), msgp.AppendInt(nil, i), Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	stop := time.Now().Add(2 * time.Second)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for time.Now().Before(stop) {
				i := rng.IntN(n + n/4) // some new entries too
				var err error
				if rng.IntN(4) == 0 {
					_, err = e.Delete(ctx, key(i), Cond{})
					if err != nil && strings.Contains(err.Error(), "not found") {
						err = nil
					}
				} else {
					_, err = e.Set(ctx, key(i), msgp.AppendInt(nil, rng.IntN(1<<20)), Cond{})
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if snaps.count() < 3 {
		t.Fatalf("only %d snapshots were written while the writers ran", snaps.count())
	}
	live := dumpEngine(t, e)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	e2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, e2, fs)
	back := dumpEngine(t, e2)
	if len(back) != len(live) {
		t.Fatalf("reopened: %d entries, running: %d", len(back), len(live))
	}
	for k, v := range live {
		if back[k] != v {
			t.Fatalf("%s: reopened %q, running %q", k, back[k], v)
		}
	}
	t.Logf("%d snapshots while writing; %d entries restored", snaps.count(), len(back))
}

// dumpEngine returns every valued entry (outside the meta tree) as text:
// value, chain and tock.
func dumpEngine(t *testing.T, e *Engine) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := e.Walk(context.Background(), nil, func(it Item) error {
		if it.Path.IsMeta() {
			return nil
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, "%x %v %d", it.Entry.Value, it.Entry.Chain, it.Entry.Tock)
		out[it.Path.String()] = b.String()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
