package store

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestNodeRecord: the node record survives reopening under every policy,
// and a later save replaces it.
func TestNodeRecord(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncAlways, SyncInterval, SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			m := NewMemFS()
			s, ld := mustOpen(t, m, Options{Sync: policy})
			if ld.NodeRecord != nil {
				t.Fatalf("empty store: NodeRecord = %q", ld.NodeRecord)
			}
			for _, rec := range []string{"first", "second"} {
				if err := s.SaveNodeRecord([]byte(rec)); err != nil {
					t.Fatal(err)
				}
			}
			if n := s.NodeRecordSaves(); n != 2 {
				t.Errorf("NodeRecordSaves = %d, want 2", n)
			}
			m.Crash(nil) // no Close: power loss right after the save
			_, ld = mustOpen(t, m, Options{Sync: policy})
			if string(ld.NodeRecord) != "second" {
				t.Errorf("after a crash: NodeRecord = %q, want second", ld.NodeRecord)
			}
		})
	}
}

// TestNodeRecordCrashMidSave: a save that fails or is cut short at any
// file-system step leaves the previous record, whole.
func TestNodeRecordCrashMidSave(t *testing.T) {
	for _, op := range []string{"create", "write", "sync", "rename", "syncdir"} {
		for _, torn := range []bool{false, true} {
			m := NewMemFS()
			s, _ := mustOpen(t, m, Options{Sync: SyncInterval})
			if err := s.SaveNodeRecord([]byte("old")); err != nil {
				t.Fatal(err)
			}
			m.FailAfter(op, 0, errInjected)
			if err := s.SaveNodeRecord([]byte("new")); !errors.Is(err, errInjected) {
				t.Fatalf("%s: SaveNodeRecord = %v, want the injected error", op, err)
			}
			var rng *rand.Rand
			if torn {
				rng = rand.New(rand.NewPCG(1, 2))
			}
			m.Crash(rng)
			_, ld := mustOpen(t, m, Options{Sync: SyncInterval})
			if string(ld.NodeRecord) != "old" || len(ld.Cut) != 0 {
				t.Errorf("%s (torn %v): NodeRecord %q, cuts %v; want old, none", op, torn, ld.NodeRecord, ld.Cut)
			}
			if files := listFiles(t, m); strings.Contains(strings.Join(files, " "), nodeRecTmp) {
				t.Errorf("%s: %s left after Open: %v", op, nodeRecTmp, files)
			}
		}
	}
}

// TestNodeRecordDamaged: a damaged node record is reported and not used.
func TestNodeRecordDamaged(t *testing.T) {
	m := NewMemFS()
	data := frames("rec")
	data[len(data)-1] ^= 0xff
	putFile(t, m, nodeRecName, data)
	_, ld := mustOpen(t, m, Options{})
	if ld.NodeRecord != nil || len(ld.Cut) != 1 || ld.Cut[0].File != nodeRecName {
		t.Fatalf("NodeRecord %q, cuts %+v; want nil and one cut of %s", ld.NodeRecord, ld.Cut, nodeRecName)
	}
	putFile(t, m, nodeRecName, frames("a", "b"))
	_, ld = mustOpen(t, m, Options{})
	if ld.NodeRecord != nil || len(ld.Cut) != 1 || !strings.Contains(ld.Cut[0].Reason, "2 records") {
		t.Fatalf("two records: NodeRecord %q, cuts %+v", ld.NodeRecord, ld.Cut)
	}
}

func TestNodeRecordLimits(t *testing.T) {
	s, _ := mustOpen(t, NewMemFS(), Options{})
	if err := s.SaveNodeRecord(nil); !errors.Is(err, ErrEmptyRecord) {
		t.Errorf("empty: %v", err)
	}
	if err := s.SaveNodeRecord(bytes.Repeat([]byte("x"), maxNodeRecord+1)); !errors.Is(err, ErrNodeRecordTooLarge) {
		t.Errorf("too large: %v", err)
	}
	s.Close()
	if err := s.SaveNodeRecord([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("closed: %v", err)
	}
}
