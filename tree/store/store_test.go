package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// ---- helpers ----

func mustOpen(t testing.TB, fsys FS, opts Options) (*Store, *Loaded) {
	t.Helper()
	s, ld, err := Open(fsys, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s, ld
}

func strs(recs [][]byte) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r)
	}
	return out
}

// loaded is ld's snapshot records followed by its log records.
func loaded(ld *Loaded) []string {
	return append(strs(ld.Snapshot), strs(ld.Log)...)
}

// yieldAll is a Snapshot iterator over a fixed list.
func yieldAll(recs []string) func(func([]byte) error) error {
	return func(yield func([]byte) error) error {
		for _, r := range recs {
			if err := yield([]byte(r)); err != nil {
				return err
			}
		}
		return nil
	}
}

// numbered makes record i of a test: its index, then random padding, so
// records are unique and their position can be recovered.
func numbered(rng *rand.Rand, i, maxPad int) string {
	pad := make([]byte, rng.IntN(maxPad+1))
	for j := range pad {
		pad[j] = byte('a' + rng.IntN(26))
	}
	return fmt.Sprintf("%07d:%s", i, pad)
}

func indexOf(rec string) int {
	i, err := strconv.Atoi(rec[:7])
	if err != nil {
		panic(err)
	}
	return i
}

// merged replays ld like a caller with an idempotent merge would: the
// snapshot, then each log record unless the snapshot already holds it. It
// fails t if the result is not a prefix of appended (lost from the middle,
// reordered or invented records).
func merged(t *testing.T, ld *Loaded, appended []string) []string {
	t.Helper()
	out := strs(ld.Snapshot)
	for _, r := range strs(ld.Log) {
		i := indexOf(r)
		switch {
		case i < len(out) && out[i] == r:
			// Appended while the snapshot began: in both.
		case i == len(out):
			out = append(out, r)
		default:
			t.Fatalf("log record %d out of place after %d merged records", i, len(out))
		}
	}
	if len(out) > len(appended) || !slices.Equal(out, appended[:len(out)]) {
		t.Fatalf("loaded %d records that are not a prefix of the %d appended", len(out), len(appended))
	}
	return out
}

// putFile stores data as a durable file of m.
func putFile(t testing.TB, m *MemFS, name string, data []byte) {
	t.Helper()
	f, err := m.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.SyncDir(); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, fsys FS, name string) []byte {
	t.Helper()
	b, err := fsys.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func listFiles(t testing.TB, fsys FS) []string {
	t.Helper()
	names, err := fsys.List()
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func frames(recs ...string) []byte {
	var b []byte
	for _, r := range recs {
		b = appendFrame(b, []byte(r))
	}
	return b
}

// syncedLen is how many bytes of name a crash would keep for sure.
func syncedLen(m *MemFS, name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ino := m.files[name]; ino != nil {
		return ino.synced
	}
	return -1
}

var errInjected = errors.New("injected failure")

// ---- framing ----

// frameCases are the ReadFrame table; they also seed FuzzReadFrame.
var frameCases = []struct {
	name    string
	in      []byte
	payload string
	rest    string
	err     error  // nil, io.EOF, ErrCorrupt, ErrTooLarge
	msg     string // substring of the error message
}{
	{name: "one record", in: frames("hello"), payload: "hello"},
	{name: "record then rest", in: append(frames("a"), "tail"...), payload: "a", rest: "tail"},
	{name: "two records", in: frames("first", "second"), payload: "first", rest: string(frames("second"))},
	{name: "binary payload", in: frames("\x00\xff\x80"), payload: "\x00\xff\x80"},
	{name: "empty input", in: nil, err: io.EOF},
	{name: "torn header", in: frames("hello")[:5], err: ErrCorrupt, msg: "record 0 at offset 0: torn record header (5 of 8 bytes)"},
	{name: "torn payload", in: frames("hello")[:10], err: ErrCorrupt, msg: "torn record (header says 5 payload bytes, 2 present)"},
	{name: "zero length", in: make([]byte, 16), err: ErrCorrupt, msg: "zero-length record"},
	{name: "checksum", in: func() []byte { b := frames("hello"); b[9] ^= 1; return b }(), err: ErrCorrupt, msg: "checksum mismatch"},
	{name: "bad crc field", in: func() []byte { b := frames("hello"); b[4] ^= 0x80; return b }(), err: ErrCorrupt, msg: "checksum mismatch"},
	{name: "too large", in: []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1}, err: ErrTooLarge, msg: "record length 4294967295 exceeds limit 16777216"},
	{name: "just over limit", in: []byte{0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0}, err: ErrTooLarge, msg: "exceeds limit"},
}

func TestReadFrame(t *testing.T) {
	for _, tc := range frameCases {
		t.Run(tc.name, func(t *testing.T) {
			p, rest, err := ReadFrame(tc.in)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("err = %q, want it to contain %q", err, tc.msg)
				}
				if !bytes.Equal(rest, tc.in) {
					t.Errorf("rest after error = %q, want the input", rest)
				}
				return
			}
			if string(p) != tc.payload || string(rest) != tc.rest {
				t.Errorf("got (%q, %q), want (%q, %q)", p, rest, tc.payload, tc.rest)
			}
			if cap(p) != len(p) {
				t.Errorf("payload capacity %d not clipped to %d", cap(p), len(p))
			}
		})
	}
}

func TestFrameErrorFields(t *testing.T) {
	data := frames("aaaa", "bbbb", "cccc")
	data[2*12+9] ^= 0xff // payload of record 2
	recs, good, ferr := decodeRecords("log-000000000007.ekv", data, 100)
	if diff := cmp.Diff([]string{"aaaa", "bbbb"}, strs(recs)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if good != 24 {
		t.Errorf("good = %d, want 24", good)
	}
	var fe *FrameError
	if !errors.As(error(ferr), &fe) || !errors.Is(ferr, ErrCorrupt) {
		t.Fatalf("err = %v, want a *FrameError wrapping ErrCorrupt", ferr)
	}
	want := "store: log-000000000007.ekv: record 2 at offset 24: checksum mismatch"
	if !strings.HasPrefix(ferr.Error(), want) {
		t.Errorf("err = %q, want prefix %q", ferr, want)
	}
}

// ---- open, append, reopen ----

type fsKind struct {
	name string
	make func(t testing.TB) FS
}

var fsKinds = []fsKind{
	{"mem", func(testing.TB) FS { return NewMemFS() }},
	{"dir", func(t testing.TB) FS { return DirFS(filepath.Join(t.TempDir(), "data")) }},
}

func TestOpenEmpty(t *testing.T) {
	for _, k := range fsKinds {
		t.Run(k.name, func(t *testing.T) {
			fsys := k.make(t)
			s, ld := mustOpen(t, fsys, Options{})
			if diff := cmp.Diff(&Loaded{}, ld); diff != "" {
				t.Errorf("Loaded (-want +got):\n%s", diff)
			}
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if names := listFiles(t, fsys); len(names) != 0 {
				t.Errorf("files after an empty session: %q", names)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var first, second []string
	for i := range 300 {
		first = append(first, numbered(rng, i, 300))
	}
	for i := range 50 {
		second = append(second, numbered(rng, 300+i, 3000))
	}
	for _, k := range fsKinds {
		for _, policy := range []SyncPolicy{SyncAlways, SyncInterval} {
			t.Run(k.name+"/"+policy.String(), func(t *testing.T) {
				fsys := k.make(t)
				opts := Options{Sync: policy}
				s, _ := mustOpen(t, fsys, opts)
				for _, r := range first[:200] {
					if err := s.Append([]byte(r)); err != nil {
						t.Fatal(err)
					}
				}
				batch := make([][]byte, 0, 100)
				for _, r := range first[200:] {
					batch = append(batch, []byte(r))
				}
				if err := s.AppendBatch(batch); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}

				s, ld := mustOpen(t, fsys, opts)
				if diff := cmp.Diff(first, loaded(ld)); diff != "" {
					t.Fatalf("first reopen (-want +got):\n%s", diff)
				}
				for _, r := range second {
					if err := s.Append([]byte(r)); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				_, ld = mustOpen(t, fsys, opts)
				if diff := cmp.Diff(append(slices.Clone(first), second...), loaded(ld)); diff != "" {
					t.Errorf("second reopen (-want +got):\n%s", diff)
				}
				if len(ld.Cut) != 0 {
					t.Errorf("cuts on a clean log: %+v", ld.Cut)
				}
				if diff := cmp.Diff([]string{"log-000000000001.ekv"}, listFiles(t, fsys)); diff != "" {
					t.Errorf("files (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// ---- crashes ----

// TestSyncAlwaysCrash crashes after appends (and after injected failures
// in the middle of appends and snapshots) and checks that every
// acknowledged record is loaded.
func TestSyncAlwaysCrash(t *testing.T) {
	failOps := []string{"write", "sync", "create", "rename", "syncdir"}
	for seed := range uint64(25) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0xa1))
			m := NewMemFS()
			opts := Options{Sync: SyncAlways}
			s, _ := mustOpen(t, m, opts)
			var acked, appended []string // appended: acked plus maybe-written
			crashes, cuts := 0, 0
			crashAndCheck := func() {
				t.Helper()
				m.Crash(rng)
				crashes++
				var ld *Loaded
				s, ld = mustOpen(t, m, opts)
				got := merged(t, ld, appended)
				if len(got) < len(acked) {
					t.Fatalf("after crash %d: loaded %d records, %d were acknowledged", crashes, len(got), len(acked))
				}
				cuts += len(ld.Cut)
				acked, appended = got, slices.Clone(got)
			}
			for step := 0; step < 400; step++ {
				next := func() string { return numbered(rng, len(appended), 200) }
				inject := rng.IntN(8) == 0
				if inject {
					op := failOps[rng.IntN(len(failOps))]
					m.FailAfter(op, rng.IntN(3), errInjected)
				}
				var err error
				switch r := rng.IntN(100); {
				case r < 70:
					rec := next()
					appended = append(appended, rec)
					if err = s.Append([]byte(rec)); err == nil {
						acked = slices.Clone(appended)
					}
				case r < 90:
					var batch [][]byte
					for range 1 + rng.IntN(5) {
						rec := next()
						appended = append(appended, rec)
						batch = append(batch, []byte(rec))
					}
					if err = s.AppendBatch(batch); err == nil {
						acked = slices.Clone(appended)
					}
				default:
					err = s.Snapshot(yieldAll(acked))
				}
				if err != nil && !errors.Is(err, errInjected) {
					t.Fatalf("step %d: %v", step, err)
				}
				if inject || err != nil || rng.IntN(3) == 0 {
					crashAndCheck()
				}
			}
			crashAndCheck()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d crashes, %d cuts, %d records", crashes, cuts, len(acked))
		})
	}
}

// TestSyncIntervalCrash checks that flushed records survive a crash,
// unflushed ones are lost only from the end, torn tails are cut and
// reported, and the store works after reopening.
func TestSyncIntervalCrash(t *testing.T) {
	totalCuts := 0
	for seed := range uint64(25) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0xb2))
			m := NewMemFS()
			opts := Options{Sync: SyncInterval}
			open := func() (*Store, *Loaded) {
				s, ld := mustOpen(t, m, opts)
				s.writeBehind = 4096 // write unsynced bytes often: they tear
				return s, ld
			}
			s, _ := open()
			var appended []string
			durable := 0 // records a crash must keep
			for step := 0; step < 400; step++ {
				switch r := rng.IntN(100); {
				case r < 75:
					rec := numbered(rng, len(appended), 2000*rng.IntN(2))
					appended = append(appended, rec)
					if err := s.Append([]byte(rec)); err != nil {
						t.Fatal(err)
					}
				case r < 88:
					if err := s.Flush(); err != nil {
						t.Fatal(err)
					}
					durable = len(appended)
				case r < 93:
					if err := s.Snapshot(yieldAll(appended)); err != nil {
						t.Fatal(err)
					}
					durable = len(appended)
				default:
					m.Crash(rng)
					var ld *Loaded
					s, ld = open()
					got := merged(t, ld, appended)
					if len(got) < durable {
						t.Fatalf("step %d: loaded %d records, %d were flushed", step, len(got), durable)
					}
					for _, c := range ld.Cut {
						if c.Dropped <= 0 || c.Reason == "" || !strings.HasPrefix(c.File, "log-") {
							t.Errorf("odd cut %+v", c)
						}
						totalCuts++
					}
					appended, durable = got, len(got)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			_, ld := mustOpen(t, m, opts)
			if diff := cmp.Diff(appended, merged(t, ld, appended)); diff != "" {
				t.Errorf("after Close (-want +got):\n%s", diff)
			}
			if len(ld.Cut) != 0 {
				t.Errorf("cuts after a clean Close: %+v", ld.Cut)
			}
		})
	}
	if totalCuts == 0 {
		t.Error("no torn tail was ever cut: the test exercises nothing")
	}
}

// corruptCases damage a log of 100 records; they also seed FuzzLoad.
var corruptCases = []struct {
	name   string
	damage func(data []byte, offs []int) []byte // offs[i] = offset of record i
	keep   int                                  // records expected to load
	err    error
	reason string
}{
	{"payload byte", func(d []byte, o []int) []byte { d[o[50]+8+3] ^= 0x10; return d }, 50, ErrCorrupt, "record 50 at offset %d: checksum mismatch"},
	{"crc byte", func(d []byte, o []int) []byte { d[o[50]+5] ^= 0x01; return d }, 50, ErrCorrupt, "record 50 at offset %d: checksum mismatch"},
	{"length too large", func(d []byte, o []int) []byte { d[o[50]+3] = 0x7f; return d }, 50, ErrTooLarge, "record 50 at offset %d: record length"},
	{"length zero", func(d []byte, o []int) []byte { clear(d[o[50] : o[50]+4]); return d }, 50, ErrCorrupt, "record 50 at offset %d: zero-length record"},
	{"length shorter", func(d []byte, o []int) []byte { d[o[50]]--; return d }, 50, ErrCorrupt, "record 50 at offset %d: checksum mismatch"},
	{"zeroed tail", func(d []byte, o []int) []byte { clear(d[o[70]:]); return d }, 70, ErrCorrupt, "record 70 at offset %d: zero-length record"},
	{"torn header", func(d []byte, o []int) []byte { return d[:o[99]+5] }, 99, ErrCorrupt, "record 99 at offset %d: torn record header"},
	{"torn payload", func(d []byte, o []int) []byte { return d[:o[99]+10] }, 99, ErrCorrupt, "record 99 at offset %d: torn record ("},
	{"garbage after end", func(d []byte, o []int) []byte { return append(d, "garbage!garbage!"...) }, 100, ErrTooLarge, "record 100 at offset %d: record length"},
	{"first record", func(d []byte, o []int) []byte { d[9] ^= 1; return d }, 0, ErrCorrupt, "record 0 at offset %d: checksum mismatch"},
}

// corruptLog returns the 100 records and their framed log.
func corruptLog() (recs []string, data []byte, offs []int) {
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 100 {
		r := numbered(rng, i, 40)
		recs = append(recs, r)
		offs = append(offs, len(data))
		data = appendFrame(data, []byte(r))
	}
	return recs, data, offs
}

func TestCorruptLog(t *testing.T) {
	const name = "log-000000000001.ekv"
	for _, tc := range corruptCases {
		t.Run(tc.name, func(t *testing.T) {
			recs, data, offs := corruptLog()
			size := len(data)
			data = tc.damage(data, offs)
			m := NewMemFS()
			putFile(t, m, name, data)
			opts := Options{Sync: SyncAlways, MaxRecordBytes: 1 << 20}
			s, ld := mustOpen(t, m, opts)

			if diff := cmp.Diff(recs[:tc.keep], loaded(ld)); diff != "" {
				t.Errorf("loaded (-want +got):\n%s", diff)
			}
			off := size
			if tc.keep < len(offs) {
				off = offs[tc.keep]
			}
			wantCut := []TailCut{{File: name, Offset: int64(off), Dropped: int64(len(data) - off)}}
			if diff := cmp.Diff(wantCut, ld.Cut, cmp.FilterPath(func(p cmp.Path) bool {
				return p.Last().String() == ".Reason"
			}, cmp.Ignore())); diff != "" {
				t.Errorf("cut (-want +got):\n%s", diff)
			}
			if len(ld.Cut) == 1 {
				want := fmt.Sprintf("store: %s: "+tc.reason, name, off)
				if !strings.HasPrefix(ld.Cut[0].Reason, want) {
					t.Errorf("reason = %q, want prefix %q", ld.Cut[0].Reason, want)
				}
			}
			if got := len(readFile(t, m, name)); got != off {
				t.Errorf("file size after Open = %d, want it truncated to %d", got, off)
			}

			if err := s.Append([]byte("after")); err != nil {
				t.Fatal(err)
			}
			m.Crash(nil) // the truncation and the new record are durable
			_, ld = mustOpen(t, m, opts)
			if diff := cmp.Diff(append(slices.Clone(recs[:tc.keep]), "after"), loaded(ld)); diff != "" {
				t.Errorf("after append and crash (-want +got):\n%s", diff)
			}
			if len(ld.Cut) != 0 {
				t.Errorf("cuts after repair: %+v", ld.Cut)
			}
		})
	}
}

// TestCorruptSegmentDropsLater: a cut in one segment drops the segments
// after it, because their records follow the lost ones.
func TestCorruptSegmentDropsLater(t *testing.T) {
	bad := frames("b1", "b2", "b3")
	bad[10+8] ^= 1 // b2's payload
	c := frames("c1")
	cut2 := TailCut{File: "log-000000000002.ekv", Offset: 10, Dropped: 20,
		Reason: "store: log-000000000002.ekv: record 1 at offset 10: checksum mismatch"}
	drop3 := TailCut{File: "log-000000000003.ekv", Offset: 0, Dropped: int64(len(c)),
		Reason: "store: log-000000000003.ekv: dropped: follows the cut in log-000000000002.ekv"}

	cases := []struct {
		name        string
		interrupted bool // the first repair fails before truncating, then a crash
		want        []TailCut
	}{
		{"repair", false, []TailCut{cut2, drop3}},
		// Later segments go first, so a half-done repair leaves the
		// damage to be cut again, never records after a gap.
		{"interrupted repair", true, []TailCut{cut2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMemFS()
			putFile(t, m, "log-000000000001.ekv", frames("a1", "a2", "a3"))
			putFile(t, m, "log-000000000002.ekv", bad)
			putFile(t, m, "log-000000000003.ekv", c)
			putFile(t, m, "notes.txt", []byte("not ours"))
			if tc.interrupted {
				m.FailAfter("truncate", 0, errInjected)
				if _, _, err := Open(m, Options{Sync: SyncAlways}); !errors.Is(err, errInjected) {
					t.Fatalf("Open with failing truncate = %v", err)
				}
				m.Crash(nil)
			}

			s, ld := mustOpen(t, m, Options{Sync: SyncAlways})
			if diff := cmp.Diff([]string{"a1", "a2", "a3", "b1"}, loaded(ld)); diff != "" {
				t.Errorf("loaded (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, ld.Cut, cmp.Transformer("reasonPrefix", func(c TailCut) TailCut {
				if i := strings.Index(c.Reason, " ("); i > 0 {
					c.Reason = c.Reason[:i]
				}
				return c
			})); diff != "" {
				t.Errorf("cuts (-want +got):\n%s", diff)
			}
			if err := s.Append([]byte("b2'")); err != nil {
				t.Fatal(err)
			}
			m.Crash(nil)
			_, ld = mustOpen(t, m, Options{Sync: SyncAlways})
			if diff := cmp.Diff([]string{"a1", "a2", "a3", "b1", "b2'"}, loaded(ld)); diff != "" {
				t.Errorf("after append (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"log-000000000001.ekv", "log-000000000002.ekv", "notes.txt"}, listFiles(t, m)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
		})
	}
}

// ---- snapshots ----

func TestSnapshotReopen(t *testing.T) {
	for _, k := range fsKinds {
		t.Run(k.name, func(t *testing.T) {
			fsys := k.make(t)
			opts := Options{Sync: SyncInterval}
			s, _ := mustOpen(t, fsys, opts)
			state := []string{"s1", "s2", "s3"}
			for _, r := range state {
				if err := s.Append([]byte(r)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Snapshot(yieldAll(state)); err != nil {
				t.Fatal(err)
			}
			for _, r := range []string{"l1", "l2"} {
				if err := s.Append([]byte(r)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, ld := mustOpen(t, fsys, opts)
			// s1..s3 were buffered when the snapshot began, so they moved
			// to the new segment as well.
			want := &Loaded{Snapshot: [][]byte{[]byte("s1"), []byte("s2"), []byte("s3")},
				Log: [][]byte{[]byte("s1"), []byte("s2"), []byte("s3"), []byte("l1"), []byte("l2")}}
			if diff := cmp.Diff(want, ld); diff != "" {
				t.Errorf("Loaded (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"log-000000000002.ekv", "snap-000000000002.ekv"}, listFiles(t, fsys)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}

			// A second generation, with nothing appended since.
			state = append(state, "l1", "l2")
			if err := s.Snapshot(yieldAll(state)); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			_, ld = mustOpen(t, fsys, opts)
			if diff := cmp.Diff(&Loaded{Snapshot: bytesOf(state)}, ld); diff != "" {
				t.Errorf("Loaded (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"snap-000000000003.ekv"}, listFiles(t, fsys)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
		})
	}
}

func bytesOf(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// TestSnapshotFailure injects a failure at each step of writing a
// snapshot, then crashes: the previous generation and the log must hold
// every record.
func TestSnapshotFailure(t *testing.T) {
	cases := []struct {
		op string
		n  int
	}{
		{"create", 0},
		{"write", 0},
		{"write", 2}, // the third 256 KiB chunk
		{"sync", 0},
		{"rename", 0},
		{"syncdir", 0},
	}
	for _, tc := range cases {
		for seed := range uint64(4) {
			t.Run(fmt.Sprintf("%s-%d/seed=%d", tc.op, tc.n, seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, 3))
				m := NewMemFS()
				opts := Options{Sync: SyncAlways}
				s, _ := mustOpen(t, m, opts)
				var state []string
				add := func(n, pad int) {
					t.Helper()
					for range n {
						r := numbered(rng, len(state), pad)
						state = append(state, r)
						if err := s.Append([]byte(r)); err != nil {
							t.Fatal(err)
						}
					}
				}
				add(2000, 800) // ~800 KB: several snapshot chunks
				if err := s.Snapshot(yieldAll(state)); err != nil {
					t.Fatal(err)
				}
				genA := len(state)
				add(100, 50)

				m.FailAfter(tc.op, tc.n, errInjected)
				err := s.Snapshot(yieldAll(state))
				if !errors.Is(err, errInjected) {
					t.Fatalf("Snapshot = %v, want the injected failure", err)
				}
				m.FailAfter(tc.op, 0, nil)
				add(10, 50) // the store still works

				m.Crash(rng)
				s, ld := mustOpen(t, m, opts)
				if diff := cmp.Diff(state, merged(t, ld, state)); diff != "" {
					t.Errorf("records after crash (-want +got):\n%s", diff)
				}
				if n := len(ld.Snapshot); n != genA && n != genA+100 {
					t.Errorf("snapshot holds %d records, want %d (previous) or %d (failed one made durable later)", n, genA, genA+100)
				}
				for _, name := range listFiles(t, m) {
					if strings.HasSuffix(name, tmpSuffix) {
						t.Errorf("tmp file %s left after Open", name)
					}
				}
				// And the next snapshot cleans up.
				if err := s.Snapshot(yieldAll(state)); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff([]string{"snap-000000000004.ekv"}, listFiles(t, m)); diff != "" {
					t.Errorf("files (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestIncompleteSnapshotIgnored plants damaged copies of a snapshot as a
// newer generation: Open must fall back and report them.
func TestIncompleteSnapshotIgnored(t *testing.T) {
	m := NewMemFS()
	opts := Options{Sync: SyncAlways}
	s, _ := mustOpen(t, m, opts)
	state := []string{"one", "two", "three"}
	if err := s.Snapshot(yieldAll(state)); err != nil {
		t.Fatal(err)
	}
	if err := s.Append([]byte("four")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	good := readFile(t, m, "snap-000000000002.ekv")
	footerAt := len(good) - int(frameLen(footerLen))

	cases := []struct {
		name   string
		data   []byte
		reason string
	}{
		{"empty", nil, "no commit footer"},
		{"torn header", good[:3], "torn record header"},
		{"torn in a record", good[:20], "torn record ("},
		{"no footer", good[:footerAt], "no commit footer"},
		{"torn footer", good[:len(good)-1], "torn record ("},
		{"wrong generation", good, "footer names generation 2"},
		{"flipped bit", func() []byte { b := slices.Clone(good); b[8] ^= 4; return b }(), "checksum mismatch"},
		{"footer not last", append(slices.Clone(good), frames("x")...), "no commit footer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m2 := NewMemFS()
			for _, name := range listFiles(t, m) {
				putFile(t, m2, name, readFile(t, m, name))
			}
			putFile(t, m2, "snap-000000000003.ekv", tc.data)
			_, ld := mustOpen(t, m2, opts)
			if diff := cmp.Diff([]string{"one", "two", "three", "four"}, loaded(ld)); diff != "" {
				t.Errorf("loaded (-want +got):\n%s", diff)
			}
			if len(ld.Snapshot) != 3 {
				t.Errorf("snapshot has %d records, want 3", len(ld.Snapshot))
			}
			if len(ld.Cut) != 1 || ld.Cut[0].File != "snap-000000000003.ekv" ||
				ld.Cut[0].Dropped != int64(len(tc.data)) ||
				!strings.Contains(ld.Cut[0].Reason, tc.reason) || !strings.HasSuffix(ld.Cut[0].Reason, "snapshot ignored") {
				t.Errorf("cuts = %+v, want one for snap-000000000003.ekv saying %q", ld.Cut, tc.reason)
			}
		})
	}
}

// TestConcurrentAppendSnapshot runs writers, snapshots and Run together
// (meant for -race), then crashes: every acknowledged record must load,
// each writer's records in order.
func TestConcurrentAppendSnapshot(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncInterval} {
		t.Run(policy.String(), func(t *testing.T) {
			m := NewMemFS()
			opts := Options{Sync: policy, SyncInterval: time.Millisecond}
			s, _ := mustOpen(t, m, opts)
			ctx, cancel := context.WithCancel(context.Background())
			runErr := make(chan error, 1)
			go func() { runErr <- s.Run(ctx) }()

			// Writers run until the snapshots are done (at least
			// minPerWriter, at most maxPerWriter records each), so the two
			// overlap.
			const writers, minPerWriter, maxPerWriter, snapshots = 4, 300, 20000, 8
			var mu sync.Mutex // the caller's state lock
			var state []string
			var wg sync.WaitGroup
			var stop atomic.Bool
			for w := range writers {
				wg.Go(func() {
					for i := 0; i < maxPerWriter && (i < minPerWriter || !stop.Load()); i++ {
						rec := fmt.Sprintf("w%d-%07d-%s", w, i, strings.Repeat("x", i%50))
						mu.Lock()
						state = append(state, rec) // state first, then the log
						mu.Unlock()
						if err := s.Append([]byte(rec)); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			overlapped := 0 // snapshots during which appends went on
			wg.Go(func() {
				for k := range snapshots {
					for {
						mu.Lock()
						n := len(state)
						mu.Unlock()
						if n > 50*(k+1) {
							break
						}
						time.Sleep(100 * time.Microsecond)
					}
					err := s.Snapshot(func(yield func([]byte) error) error {
						mu.Lock()
						snap := slices.Clone(state)
						mu.Unlock()
						time.Sleep(time.Millisecond) // a slow disk
						for _, r := range snap {
							if err := yield([]byte(r)); err != nil {
								return err
							}
						}
						mu.Lock()
						if len(state) > len(snap) {
							overlapped++
						}
						mu.Unlock()
						return nil
					})
					if err != nil {
						t.Error(err)
						break
					}
				}
				stop.Store(true)
			})
			wg.Wait()
			if overlapped == 0 {
				t.Error("no Append ran while a snapshot was written")
			}
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			cancel()
			if err := <-runErr; err != nil {
				t.Fatalf("Run: %v", err)
			}
			m.Crash(rand.New(rand.NewPCG(1, 1)))

			_, ld := mustOpen(t, m, opts)
			if len(ld.Cut) != 0 {
				t.Errorf("cuts: %+v", ld.Cut)
			}
			got := map[string]bool{}
			for _, r := range loaded(ld) {
				got[r] = true
			}
			want := map[string]bool{}
			for _, r := range state {
				want[r] = true
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}
			last := map[byte]string{}
			for _, r := range strs(ld.Log) {
				if r <= last[r[1]] {
					t.Errorf("log order: %q after %q", r, last[r[1]])
				}
				last[r[1]] = r
			}
		})
	}
}

// ---- policies, limits, errors ----

func TestSyncNone(t *testing.T) {
	m := NewMemFS()
	putFile(t, m, "log-000000000001.ekv", frames("old"))
	s, ld := mustOpen(t, m, Options{Sync: SyncNone})
	if diff := cmp.Diff(&Loaded{}, ld); diff != "" {
		t.Errorf("Loaded (-want +got):\n%s", diff)
	}
	for _, op := range memOps {
		m.FailAfter(op, 0, errInjected) // any file access fails the test
	}
	called := false
	steps := []struct {
		name string
		do   func() error
	}{
		{"Append", func() error { return s.Append([]byte("x")) }},
		{"AppendBatch", func() error { return s.AppendBatch([][]byte{[]byte("y")}) }},
		{"Flush", s.Flush},
		{"Snapshot", func() error {
			return s.Snapshot(func(func([]byte) error) error { called = true; return nil })
		}},
		{"Close", s.Close},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Errorf("%s: %v", st.name, err)
		}
	}
	if called {
		t.Error("Snapshot called the iterator under SyncNone")
	}
	if n := s.LogBytes(); n != 0 {
		t.Errorf("LogBytes = %d, want 0", n)
	}
	m.FailAfter("list", 0, nil)
	m.FailAfter("read", 0, nil)
	if diff := cmp.Diff([]string{"log-000000000001.ekv"}, listFiles(t, m)); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if got := readFile(t, m, "log-000000000001.ekv"); !bytes.Equal(got, frames("old")) {
		t.Errorf("file changed: %q", got)
	}
}

func TestClosed(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncInterval, SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			s, _ := mustOpen(t, NewMemFS(), Options{Sync: policy})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			calls := map[string]error{
				"Append":      s.Append([]byte("x")),
				"AppendBatch": s.AppendBatch([][]byte{[]byte("x")}),
				"Flush":       s.Flush(),
				"Snapshot":    s.Snapshot(yieldAll(nil)),
				"Close":       s.Close(),
				"Run":         s.Run(context.Background()), // returns at once
			}
			for name, err := range calls {
				want := ErrClosed
				if name == "Run" {
					want = nil
				}
				if !errors.Is(err, want) || (want == nil && err != nil) {
					t.Errorf("%s after Close = %v, want %v", name, err, want)
				}
			}
		})
	}
}

func TestRecordLimits(t *testing.T) {
	m := NewMemFS()
	opts := Options{Sync: SyncAlways, MaxRecordBytes: 100}
	s, _ := mustOpen(t, m, opts)
	ok := bytes.Repeat([]byte("k"), 100)
	big := bytes.Repeat([]byte("b"), 101)
	steps := []struct {
		name string
		err  error
		do   func() error
	}{
		{"max size", nil, func() error { return s.Append(ok) }},
		{"too large", ErrTooLarge, func() error { return s.Append(big) }},
		{"empty", ErrEmptyRecord, func() error { return s.Append(nil) }},
		{"batch with one bad", ErrTooLarge, func() error { return s.AppendBatch([][]byte{[]byte("b1"), big}) }},
		{"batch with empty", ErrEmptyRecord, func() error { return s.AppendBatch([][]byte{[]byte("b1"), {}}) }},
		{"empty batch", nil, func() error { return s.AppendBatch(nil) }},
		{"snapshot too large", ErrTooLarge, func() error { return s.Snapshot(yieldAll([]string{"s", string(big)})) }},
		{"snapshot iterator error", errInjected, func() error {
			return s.Snapshot(func(func([]byte) error) error { return errInjected })
		}},
	}
	for _, st := range steps {
		if err := st.do(); !errors.Is(err, st.err) || (st.err == nil) != (err == nil) {
			t.Errorf("%s: err = %v, want %v", st.name, err, st.err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, ld := mustOpen(t, m, opts)
	if diff := cmp.Diff([]string{string(ok)}, loaded(ld)); diff != "" {
		t.Errorf("loaded (-want +got):\n%s", diff)
	}

	// A smaller limit on read treats longer records as damage.
	opts.MaxRecordBytes = 50
	_, ld = mustOpen(t, m, opts)
	if len(ld.Log) != 0 || len(ld.Cut) != 1 || !strings.Contains(ld.Cut[0].Reason, "record length 100 exceeds limit 50") {
		t.Errorf("with a lower limit: log %d records, cuts %+v", len(ld.Log), ld.Cut)
	}
}

func TestWriteFailureSticky(t *testing.T) {
	for _, op := range []string{"write", "sync", "create", "syncdir"} {
		t.Run(op, func(t *testing.T) {
			m := NewMemFS()
			opts := Options{Sync: SyncAlways}
			s, _ := mustOpen(t, m, opts)
			if op == "write" || op == "sync" { // else fail while creating the segment
				if err := s.Append([]byte("ok")); err != nil {
					t.Fatal(err)
				}
			}
			m.FailAfter(op, 0, errInjected)
			if err := s.Append([]byte("failed")); !errors.Is(err, errInjected) {
				t.Fatalf("Append = %v, want the injected failure", err)
			}
			m.FailAfter(op, 0, nil)
			for name, err := range map[string]error{
				"Append":   s.Append([]byte("refused")),
				"Flush":    s.Flush(),
				"Snapshot": s.Snapshot(yieldAll(nil)),
				"Close":    s.Close(),
			} {
				if !errors.Is(err, errInjected) {
					t.Errorf("%s after a failed write = %v, want the sticky failure", name, err)
				}
			}
			_, ld := mustOpen(t, m, opts)
			got := loaded(ld)
			if (op == "write" || op == "sync") && (len(got) == 0 || got[0] != "ok") {
				t.Errorf("loaded %q, want the acknowledged record first", got)
			}
			if slices.Contains(got, "refused") {
				t.Errorf("loaded %q, with a refused record", got)
			}
			if op == "write" && len(ld.Cut) != 1 {
				t.Errorf("cuts = %+v, want the half-written record cut", ld.Cut)
			}
		})
	}
}

func TestRun(t *testing.T) {
	t.Run("flushes periodically", func(t *testing.T) {
		m := NewMemFS()
		s, _ := mustOpen(t, m, Options{SyncInterval: time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		if err := s.Append([]byte("tick")); err != nil {
			t.Fatal(err)
		}
		want := len(frames("tick"))
		for deadline := time.Now().Add(10 * time.Second); syncedLen(m, "log-000000000001.ekv") != want; {
			if time.Now().After(deadline) {
				t.Fatal("Run did not sync the record")
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("flushes on cancel", func(t *testing.T) {
		m := NewMemFS()
		s, _ := mustOpen(t, m, Options{SyncInterval: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		if err := s.Append([]byte("last")); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		m.Crash(nil)
		_, ld := mustOpen(t, m, Options{})
		if diff := cmp.Diff([]string{"last"}, loaded(ld)); diff != "" {
			t.Errorf("loaded (-want +got):\n%s", diff)
		}
	})
	t.Run("returns on Close", func(t *testing.T) {
		for _, policy := range []SyncPolicy{SyncAlways, SyncInterval, SyncNone} {
			s, _ := mustOpen(t, NewMemFS(), Options{Sync: policy})
			done := make(chan error, 1)
			go func() { done <- s.Run(context.Background()) }()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Errorf("%v: Run = %v", policy, err)
			}
		}
	})
	t.Run("returns a flush failure", func(t *testing.T) {
		m := NewMemFS()
		s, _ := mustOpen(t, m, Options{SyncInterval: time.Millisecond})
		m.FailAfter("create", 0, errInjected)
		if err := s.Append([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := s.Run(context.Background()); !errors.Is(err, errInjected) {
			t.Errorf("Run = %v, want the injected failure", err)
		}
	})
}

func TestLogBytes(t *testing.T) {
	m := NewMemFS()
	opts := Options{SnapshotAfterBytes: 50}
	s, _ := mustOpen(t, m, opts)
	check := func(when string, want int64, due bool) {
		t.Helper()
		if got := s.LogBytes(); got != want {
			t.Errorf("%s: LogBytes = %d, want %d", when, got, want)
		}
		if got := s.SnapshotDue(); got != due {
			t.Errorf("%s: SnapshotDue = %v, want %v", when, got, due)
		}
	}
	check("empty", 0, false)
	for range 3 {
		if err := s.Append([]byte("0123456789")); err != nil {
			t.Fatal(err)
		}
	}
	check("after 3 appends", 54, true)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.Snapshot(yieldAll([]string{"state"})); err != nil {
		t.Fatal(err)
	}
	check("after snapshot", 0, false)
	if err := s.Append([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if err := s.Snapshot(func(func([]byte) error) error { return errInjected }); err == nil {
		t.Fatal("failing snapshot succeeded")
	}
	check("after a failed snapshot", 18, false)
	if err := s.Append([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	check("after one more", 36, false)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, _ = mustOpen(t, m, opts)
	check("reopened", 36, false)
}

func TestOptions(t *testing.T) {
	err := Options{Sync: 9, SyncInterval: -1, MaxRecordBytes: 2 << 30}.Validate()
	for _, want := range []string{"Sync: unknown policy 9", "SyncInterval -1ns is negative", "MaxRecordBytes 2147483648"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want it to report %q", err, want)
		}
	}
	if _, _, err := Open(NewMemFS(), Options{MaxRecordBytes: -1}); err == nil {
		t.Error("Open accepted invalid options")
	}
	if err := DefaultOptions().Validate(); err != nil {
		t.Errorf("DefaultOptions: %v", err)
	}
	for _, p := range []SyncPolicy{SyncInterval, SyncAlways, SyncNone} {
		got, err := ParseSyncPolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParseSyncPolicy(%q) = %v, %v", p, got, err)
		}
	}
	if _, err := ParseSyncPolicy("sometimes"); err == nil {
		t.Error("ParseSyncPolicy accepted an unknown name")
	}
}

func TestDirFSNames(t *testing.T) {
	d := DirFS(t.TempDir())
	for _, name := range []string{"", ".", "..", "a/b", "../x", "a\x00b"} {
		if _, err := d.Create(name); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("Create(%q) = %v, want fs.ErrInvalid", name, err)
		}
	}
	if _, err := d.ReadFile("missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile(missing) = %v, want fs.ErrNotExist", err)
	}
	// The directory is created on the first Create, not before.
	dir := filepath.Join(t.TempDir(), "a", "b")
	d = DirFS(dir)
	if names, err := d.List(); err != nil || len(names) != 0 {
		t.Errorf("List of a missing directory = %q, %v", names, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("directory exists before the first Create: %v", err)
	}
	f, err := d.Create("x")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o755&^umask(t) {
		t.Errorf("directory after Create: %v, %v", fi, err)
	}
}

// umask reads the process umask from a fresh file's mode.
func umask(t *testing.T) os.FileMode {
	p := filepath.Join(t.TempDir(), "probe")
	if err := os.Mkdir(p, 0o777); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return 0o777 &^ fi.Mode().Perm()
}

// ---- fuzzing ----

func FuzzReadFrame(f *testing.F) {
	for _, tc := range frameCases {
		f.Add(tc.in)
	}
	_, data, _ := corruptLog()
	f.Add(data)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, rest, err := ReadFrame(b)
		switch {
		case len(b) == 0:
			if err != io.EOF {
				t.Fatalf("empty input: err = %v, want io.EOF", err)
			}
		case err != nil:
			var fe *FrameError
			if !errors.As(err, &fe) || !(errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTooLarge)) {
				t.Fatalf("err = %v (%T), want a *FrameError wrapping ErrCorrupt or ErrTooLarge", err, err)
			}
			if !bytes.Equal(rest, b) {
				t.Fatal("rest after an error is not the input")
			}
		default:
			n := frameHeaderLen + len(p)
			if !bytes.Equal(appendFrame(nil, p), b[:n]) || !bytes.Equal(rest, b[n:]) {
				t.Fatal("decoded frame does not re-encode to its input")
			}
		}
		// Any payload round-trips through the framing.
		if len(b) > 0 && len(b) <= DefaultMaxRecordBytes {
			p, rest, err := ReadFrame(appendFrame(nil, b))
			if err != nil || !bytes.Equal(p, b) || len(rest) != 0 {
				t.Fatalf("round trip of %d bytes: %v", len(b), err)
			}
		}
	})
}

func FuzzLoad(f *testing.F) {
	recs, data, offs := corruptLog()
	f.Add(data, false)
	for _, tc := range corruptCases {
		f.Add(tc.damage(slices.Clone(data), offs), false)
	}
	snap := frames(recs[:5]...)
	snap = appendFrame(snap, footer(1, 5))
	f.Add(snap, true)
	f.Add(snap[:len(snap)-3], true)
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, data []byte, asSnapshot bool) {
		m := NewMemFS()
		name := "log-000000000001.ekv"
		if asSnapshot {
			name = "snap-000000000001.ekv"
		}
		putFile(t, m, name, data)
		opts := Options{Sync: SyncAlways, MaxRecordBytes: 1 << 16}
		s, ld, err := Open(m, opts)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if asSnapshot {
			if len(ld.Cut) == 0 {
				want := frames(loaded(ld)...)
				want = appendFrame(want, footer(1, uint64(len(ld.Snapshot))))
				if !bytes.Equal(want, data) {
					t.Fatal("accepted snapshot does not re-encode to the file")
				}
			}
		} else {
			var dropped int64
			for _, c := range ld.Cut {
				dropped += c.Dropped
			}
			kept := len(data) - int(dropped)
			if kept < 0 || !bytes.Equal(frames(loaded(ld)...), data[:kept]) {
				t.Fatal("loaded records do not re-encode to the kept prefix")
			}
			if got := readFile(t, m, name); !bytes.Equal(got, data[:kept]) {
				t.Fatal("file not truncated to the kept prefix")
			}
		}
		before := loaded(ld)
		if err := s.Append([]byte("appended")); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		m.Crash(nil)
		_, ld, err = Open(m, opts)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		if diff := cmp.Diff(append(before, "appended"), loaded(ld)); diff != "" {
			t.Fatalf("after append (-want +got):\n%s", diff)
		}
		if len(ld.Cut) != 0 && !asSnapshot {
			t.Fatalf("cuts after repair: %+v", ld.Cut)
		}
	})
}
