package runner

import (
	"context"
	"math"
	"slices"
	"sync"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
)

// Error records, as MoaT-KV's error subsystem keeps them (reference spec
// §6.5): one record per (subsystem, path) at ERROR.<node>.<tock> =
// {path, subsystem, severity, resolved, created, count, first_seen,
// last_seen}, and below it a detail per node that saw the error,
// ERROR.<node>.<tock>.<node> = {seen, tock, comment, message, data}. When
// two nodes created a record for the same error concurrently, the one
// seen first (then the one of the smaller node name) is kept: each node
// moves its own detail over and the loser's creator deletes the loser.

type errKey struct{ subsystem, path string }

type errRec struct {
	at        tree.Path // where the record is
	key       errKey
	firstSeen float64 // +Inf when unknown (MoaT-KV 0.70 writes None)
	resolved  bool
}

type errorLog struct {
	r     *Runner
	mu    sync.Mutex
	index map[errKey]tree.Path // the kept record of each error
	recs  map[string]errRec    // record path text → record
}

// now is the runner's clock in MoaT-KV's float seconds.
func (l *errorLog) now() float64 { return unix(l.r.cfg.Now()) }

// tocker is the part of the engine that hands out tocks.
type tocker interface {
	Tock(ctx context.Context) (uint64, error)
}

// record notes an error of subsystem ("run", "compile") at path.
func (l *errorLog) record(ctx context.Context, subsystem string, path tree.Path, msg string) {
	if ctx.Err() != nil {
		return
	}
	r := l.r
	key := errKey{subsystem, path.String()}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.recs == nil {
		l.recs = map[string]errRec{}
	}
	rec := map[string]any{}
	at := l.index[key]
	if at != nil {
		if e, err := r.tree.Get(ctx, at); err == nil && e.Value != nil {
			if v, err := tree.DecodeValue(e.Value); err == nil {
				if m, ok := v.(map[string]any); ok {
					rec = m
				}
			}
		}
	}
	var tock uint64
	if t, ok := r.tree.(tocker); ok {
		tock, _ = t.Tock(ctx)
	}
	if at == nil || len(rec) == 0 {
		at = append(slices.Clone(r.cfg.Prefix.Error), tree.Str(r.cfg.Node), tree.Int(int64(tock)))
		rec = map[string]any{"path": path, "subsystem": subsystem, "severity": int64(0), "created": now,
			"count": int64(0), "first_seen": now}
	}
	count, _ := number(rec, "count", 0)
	rec["count"] = int64(count) + 1
	rec["last_seen"] = now
	rec["resolved"] = false
	if len(msg) > 4096 {
		msg = msg[:4096] + "…"
	}
	rec["message"] = msg
	b, err := tree.AppendValue(nil, rec)
	if err == nil {
		_, err = r.tree.Set(ctx, at, b, node.Cond{})
	}
	if err != nil {
		r.log.Warn("error record not written", "subsystem", subsystem, "path", path.String(), "error", err)
		return
	}
	detail, _ := tree.AppendValue(nil, map[string]any{"seen": now, "tock": int64(tock), "comment": msg, "message": msg, "data": map[string]any{}})
	if _, err := r.tree.Set(ctx, append(slices.Clone(at), tree.Str(r.cfg.Node)), detail, node.Cond{}); err != nil {
		r.log.Debug("error detail not written", "error", err)
	}
	l.index[key] = at
	if l.recs == nil {
		l.recs = map[string]errRec{}
	}
	fs, _ := number(rec, "first_seen", math.Inf(1))
	l.recs[at.String()] = errRec{at: at, key: key, firstSeen: fs}
}

// resolve marks the error of subsystem at path resolved (the job works
// again, the code compiles), if there is an open one.
func (l *errorLog) resolve(ctx context.Context, subsystem string, path tree.Path) {
	r := l.r
	key := errKey{subsystem, path.String()}
	l.mu.Lock()
	defer l.mu.Unlock()
	at := l.index[key]
	if at == nil {
		return
	}
	if rec, ok := l.recs[at.String()]; ok && rec.resolved {
		return
	}
	e, err := r.tree.Get(ctx, at)
	if err != nil || e.Value == nil {
		return
	}
	v, err := tree.DecodeValue(e.Value)
	m, ok := v.(map[string]any)
	if err != nil || !ok {
		return
	}
	if res, isBool := m["resolved"].(bool); !isBool || res {
		return // resolved already (a time, or true)
	}
	m["resolved"] = l.now()
	if b, err := tree.AppendValue(nil, m); err == nil {
		if _, err := r.tree.Set(ctx, at, b, node.Cond{}); err == nil {
			if rec, ok := l.recs[at.String()]; ok {
				rec.resolved = true
				l.recs[at.String()] = rec
			}
		}
	}
}

// seen takes a change below the error prefix (the runner's watch): records
// are indexed, and of two records of one error the loser is merged away.
func (l *errorLog) seen(ctx context.Context, p tree.Path, val []byte) {
	if len(p) != len(l.r.cfg.Prefix.Error)+2 {
		return // a detail, or not a record
	}
	if winner, loser := l.index1(p, val); winner != nil {
		l.merge(ctx, winner, loser)
	}
}

// index1 indexes one record; it returns the two records to merge, if any.
func (l *errorLog) index1(p tree.Path, val []byte) (winnerAt, loserAt tree.Path) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.recs == nil {
		l.recs = map[string]errRec{}
	}
	k := p.String()
	if val == nil {
		if old, ok := l.recs[k]; ok {
			delete(l.recs, k)
			if l.index[old.key].Equal(p) {
				delete(l.index, old.key)
			}
		}
		return nil, nil
	}
	v, err := tree.DecodeValue(val)
	m, ok := v.(map[string]any)
	if err != nil || !ok {
		return nil, nil
	}
	sub, _ := m["subsystem"].(string)
	var path string
	switch x := m["path"].(type) {
	case tree.Path:
		path = x.String()
	case string:
		path = x
	default:
		return nil, nil
	}
	rec := errRec{at: p, key: errKey{sub, path}, firstSeen: math.Inf(1)}
	if fs, err := number(m, "first_seen", math.Inf(1)); err == nil {
		rec.firstSeen = fs
	}
	_, open := m["resolved"].(bool)
	rec.resolved = !open || m["resolved"] == true
	l.recs[k] = rec
	cur := l.index[rec.key]
	known, ok := l.recs[cur.String()]
	if cur == nil || cur.Equal(p) || !ok {
		l.index[rec.key] = p
		return nil, nil
	}
	winner, loser := known, rec
	if before(rec, winner) {
		winner, loser = rec, winner
	}
	l.index[rec.key] = winner.at
	return winner.at, loser.at
}

// before reports whether record a is kept over b.
func before(a, b errRec) bool {
	if a.firstSeen != b.firstSeen {
		return a.firstSeen < b.firstSeen
	}
	an, _ := strElem(a.at[len(a.at)-2])
	bn, _ := strElem(b.at[len(b.at)-2])
	if an != bn {
		return an < bn
	}
	return a.at[len(a.at)-1].Compare(b.at[len(b.at)-1]) < 0
}

// merge moves this node's detail from loser to winner, and deletes the
// loser if this node created it.
func (l *errorLog) merge(ctx context.Context, winner, loser tree.Path) {
	r := l.r
	me := tree.Str(r.cfg.Node)
	from := append(slices.Clone(loser), me)
	if e, err := r.tree.Get(ctx, from); err == nil && e.Value != nil {
		if _, err := r.tree.Set(ctx, append(slices.Clone(winner), me), e.Value, node.Cond{}); err == nil {
			_, _ = r.tree.Delete(ctx, from, node.Cond{})
		}
	}
	if creator, _ := strElem(loser[len(loser)-2]); creator == r.cfg.Node {
		_, _ = r.tree.Delete(ctx, loser, node.Cond{})
	}
}
