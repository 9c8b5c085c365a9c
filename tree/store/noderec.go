package store

import (
	"errors"
	"fmt"
	"io/fs"
)

// The node record is one small opaque record kept apart from the snapshot
// and the log, in the file node.ekv, and replaced atomically: written to
// node.ekv.tmp, fsynced, renamed over node.ekv, directory fsynced. The
// replica keeps there what must survive every crash under every sync
// policy, SyncNone included: the ticks and tocks it has reserved (see
// tree/replica). A torn or cut log never touches it.
const (
	nodeRecName = "node" + fileSuffix
	nodeRecTmp  = nodeRecName + tmpSuffix
	// maxNodeRecord bounds the node record.
	maxNodeRecord = 64 << 10
)

// ErrNodeRecordTooLarge is returned by SaveNodeRecord for a record above
// 64 KiB.
var ErrNodeRecordTooLarge = errors.New("store: node record too large")

// SaveNodeRecord replaces the node record with rec and returns once it is
// durable, under every sync policy (SyncNone too: it is the one file a
// SyncNone store writes). A crash at any point leaves either the old or the
// new record. Calls are serialised; the store copies rec. A failure does
// not make the store refuse appends, but the caller must not rely on rec.
func (s *Store) SaveNodeRecord(rec []byte) error {
	switch {
	case len(rec) == 0:
		return ErrEmptyRecord
	case len(rec) > maxNodeRecord:
		return fmt.Errorf("%w: %d bytes, limit %d", ErrNodeRecordTooLarge, len(rec), maxNodeRecord)
	}
	s.nodeMu.Lock()
	defer s.nodeMu.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	f, err := s.fs.Create(nodeRecTmp)
	if err != nil {
		return fmt.Errorf("store: node record: create %s: %w", nodeRecTmp, err)
	}
	_, err = f.Write(appendFrame(make([]byte, 0, frameLen(len(rec))), rec))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: node record: write %s: %w", nodeRecTmp, err)
	}
	if err := s.fs.Rename(nodeRecTmp, nodeRecName); err != nil {
		return fmt.Errorf("store: node record: rename %s: %w", nodeRecTmp, err)
	}
	if err := s.fs.SyncDir(); err != nil {
		return fmt.Errorf("store: node record: sync directory: %w", err)
	}
	s.nodeSaves.Add(1)
	return nil
}

// NodeRecordSaves counts the node records saved since Open (each one
// fsync of a file and one of the directory).
func (s *Store) NodeRecordSaves() int64 { return s.nodeSaves.Load() }

// loadNodeRecord reads the node record into ld and removes a leftover tmp
// file. A damaged record is reported as a cut and not returned.
func (s *Store) loadNodeRecord(ld *Loaded) error {
	data, err := s.fs.ReadFile(nodeRecName)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("store: open: %w", err)
	default:
		recs, good, ferr := decodeRecords(nodeRecName, data, maxNodeRecord)
		switch {
		case ferr != nil:
			s.reportCut(ld, TailCut{File: nodeRecName, Offset: int64(good), Dropped: int64(len(data)), Reason: ferr.Error() + "; node record ignored"})
		case len(recs) != 1:
			s.reportCut(ld, TailCut{File: nodeRecName, Dropped: int64(len(data)),
				Reason: fmt.Sprintf("store: %s: %d records, want 1; node record ignored", nodeRecName, len(recs))})
		default:
			ld.NodeRecord = recs[0]
		}
	}
	if err := s.fs.Remove(nodeRecTmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("store: removing redundant file", "file", nodeRecTmp, "error", err)
	}
	return nil
}
