package store

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
)

// Loaded is what Open found on disk.
type Loaded struct {
	// Snapshot holds the records of the newest complete snapshot, without
	// its footer; empty if there is none.
	Snapshot [][]byte
	// Log holds the log records that follow that snapshot, in append
	// order.
	Log [][]byte
	// NodeRecord is the last record given to SaveNodeRecord, or nil if
	// there is none (or it was damaged: then Cut says so).
	NodeRecord []byte
	// Cut lists every torn or corrupt part that was dropped.
	Cut []TailCut
}

// TailCut reports one part of a file that Open dropped.
type TailCut struct {
	// File is the file's name.
	File string
	// Offset is where the dropped part begins. A log segment was
	// truncated to Offset; a dropped snapshot is kept on disk but ignored
	// (replaced by the next snapshot).
	Offset int64
	// Dropped is the number of bytes no longer used: the size minus
	// Offset for a log segment, the whole size for a snapshot.
	Dropped int64
	// Reason says what was wrong, e.g. "store: log-000000000003.ekv:
	// record 17 at offset 4096: checksum mismatch (…)".
	Reason string
}

// Open loads the newest complete snapshot in fsys and the log segments
// after it, and returns a Store that appends after them.
//
// A torn or corrupt log record is never fatal: its segment is truncated
// (durably) to the last good record, every later segment is removed, and
// each cut is reported in Loaded.Cut (and logged). A snapshot that fails
// to decode or lacks its commit footer is ignored in favour of the
// previous one, and reported. Leftover tmp files and files older than the
// loaded snapshot are removed. An empty or missing directory loads as
// empty. Open returns an error only for invalid options or a failing FS.
//
// The returned records alias the file contents read into memory; each has
// its capacity clipped, so appending to one never overwrites another.
//
// Under SyncNone, Open reads only the node record (see SaveNodeRecord):
// Snapshot and Log are empty.
//
// Open starts no goroutine: call Run for interval flushing.
func Open(fsys FS, opts Options) (*Store, *Loaded, error) {
	if err := opts.Validate(); err != nil {
		return nil, nil, err
	}
	opts = opts.withDefaults()
	s := newStore(fsys, opts)
	ld := &Loaded{}
	if err := s.loadNodeRecord(ld); err != nil {
		return nil, nil, err
	}
	if opts.Sync == SyncNone {
		return s, ld, nil
	}
	if err := s.load(ld); err != nil {
		return nil, nil, err
	}
	return s, ld, nil
}

func (s *Store) load(ld *Loaded) error {
	names, err := s.fs.List()
	if err != nil {
		return fmt.Errorf("store: open: %w", err)
	}
	var snaps, logs []uint64
	var stale []string // removed once the state is known
	for _, name := range names {
		kind, gen, ok := parseName(name)
		if !ok {
			continue
		}
		s.maxGen = max(s.maxGen, gen)
		switch kind {
		case kindSnap:
			snaps = append(snaps, gen)
		case kindLog:
			logs = append(logs, gen)
		case kindTmp:
			stale = append(stale, name)
		}
	}
	slices.Sort(snaps)
	slices.Sort(logs)

	// The newest complete snapshot.
	var snapGen uint64
	for i := len(snaps) - 1; i >= 0; i-- {
		recs, cut, err := s.loadSnapshot(snaps[i])
		if err != nil {
			return err
		}
		if cut != nil {
			s.reportCut(ld, *cut)
			continue
		}
		ld.Snapshot, snapGen = recs, snaps[i]
		break
	}
	for _, g := range snaps {
		if g < snapGen {
			stale = append(stale, snapName(g))
		}
	}

	// The log segments from snapGen on, until the first bad record.
	s.gen = max(snapGen, 1)
	var cut *TailCut   // the first bad record's segment
	var after []string // segments after it
	for _, g := range logs {
		name := logName(g)
		switch {
		case g < snapGen:
			stale = append(stale, name)
			continue
		case cut != nil:
			after = append(after, name)
			continue
		}
		data, err := s.fs.ReadFile(name)
		if err != nil {
			return fmt.Errorf("store: open: %w", err)
		}
		recs, good, ferr := decodeRecords(name, data, s.opts.MaxRecordBytes)
		ld.Log = append(ld.Log, recs...)
		s.logBytes += int64(good)
		s.gen, s.segExists = g, true
		if ferr != nil {
			cut = &TailCut{File: name, Offset: int64(good), Dropped: int64(len(data) - good), Reason: ferr.Error()}
		}
	}
	if cut != nil {
		if err := s.cutLog(ld, *cut, after); err != nil {
			return err
		}
	}
	s.maxGen = max(s.maxGen, s.gen)

	// Redundant files: harmless if left, so failures are only logged.
	removed := false
	for _, name := range stale {
		if err := s.fs.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("store: removing redundant file", "file", name, "error", err)
			continue
		}
		removed = true
	}
	if removed {
		if err := s.fs.SyncDir(); err != nil {
			s.log.Warn("store: syncing directory after cleanup", "error", err)
		}
	}
	return nil
}

// cutLog repairs the log after a bad record: it removes the segments
// after the damaged one, then truncates the damaged one at the bad record.
// In this order a crash half-way leaves the damage in place to be cut
// again, never a clean segment followed by records that came after the
// lost ones.
func (s *Store) cutLog(ld *Loaded, cut TailCut, after []string) error {
	var dropped []TailCut
	for _, name := range after {
		data, err := s.fs.ReadFile(name)
		if err != nil {
			return fmt.Errorf("store: open: %w", err)
		}
		if err := s.fs.Remove(name); err != nil {
			return fmt.Errorf("store: open: dropping %s: %w", name, err)
		}
		dropped = append(dropped, TailCut{File: name, Offset: 0, Dropped: int64(len(data)),
			Reason: fmt.Sprintf("store: %s: dropped: follows the cut in %s", name, cut.File)})
	}
	if len(after) > 0 {
		if err := s.fs.SyncDir(); err != nil {
			return fmt.Errorf("store: open: %w", err)
		}
	}
	if err := s.fs.Truncate(cut.File, cut.Offset); err != nil {
		return fmt.Errorf("store: open: cutting %s: %w", cut.File, err)
	}
	s.reportCut(ld, cut)
	for _, c := range dropped {
		s.reportCut(ld, c)
	}
	return nil
}

// loadSnapshot reads snapshot gen. A snapshot that cannot be used is
// returned as a cut; err is only for FS failures.
func (s *Store) loadSnapshot(gen uint64) (recs [][]byte, cut *TailCut, err error) {
	name := snapName(gen)
	data, err := s.fs.ReadFile(name)
	if err != nil {
		return nil, nil, fmt.Errorf("store: open: %w", err)
	}
	recs, good, ferr := decodeRecords(name, data, max(s.opts.MaxRecordBytes, footerLen))
	if ferr != nil {
		return nil, &TailCut{File: name, Offset: int64(good), Dropped: int64(len(data)),
			Reason: ferr.Error() + "; snapshot ignored"}, nil
	}
	var why string
	if len(recs) == 0 {
		why = "no commit footer"
	} else {
		why = checkFooter(recs[len(recs)-1], gen, uint64(len(recs)-1))
	}
	if why != "" {
		off := int64(len(data))
		if len(recs) > 0 {
			off -= frameLen(len(recs[len(recs)-1]))
		}
		return nil, &TailCut{File: name, Offset: off, Dropped: int64(len(data)),
			Reason: fmt.Sprintf("store: %s: %s; snapshot ignored", name, why)}, nil
	}
	return recs[:len(recs)-1], nil, nil
}

func (s *Store) reportCut(ld *Loaded, c TailCut) {
	ld.Cut = append(ld.Cut, c)
	s.log.Warn("store: dropped damaged data", "file", c.File, "offset", c.Offset, "dropped", c.Dropped, "reason", c.Reason)
}
