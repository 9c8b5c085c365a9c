package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
)

// The commit footer, the last record of every snapshot file:
// magic, format version (uint32 LE), generation (uint64 LE), number of
// state records before it (uint64 LE).
const (
	footerMagic   = "EKV-SNAP"
	footerVersion = 1
	footerLen     = len(footerMagic) + 4 + 8 + 8
)

func footer(gen, count uint64) []byte {
	b := make([]byte, 0, footerLen)
	b = append(b, footerMagic...)
	b = binary.LittleEndian.AppendUint32(b, footerVersion)
	b = binary.LittleEndian.AppendUint64(b, gen)
	return binary.LittleEndian.AppendUint64(b, count)
}

// checkFooter reports what is wrong with rec as the footer of snapshot
// gen holding count records, or "" if nothing.
func checkFooter(rec []byte, gen, count uint64) string {
	if len(rec) != footerLen || !bytes.HasPrefix(rec, []byte(footerMagic)) {
		return "no commit footer"
	}
	rec = rec[len(footerMagic):]
	if v := binary.LittleEndian.Uint32(rec); v != footerVersion {
		return fmt.Sprintf("unknown snapshot format version %d", v)
	}
	if g := binary.LittleEndian.Uint64(rec[4:]); g != gen {
		return fmt.Sprintf("footer names generation %d", g)
	}
	if c := binary.LittleEndian.Uint64(rec[12:]); c != count {
		return fmt.Sprintf("footer counts %d records, file holds %d", c, count)
	}
	return ""
}

// snapshotChunkBytes is the write size while writing a snapshot.
const snapshotChunkBytes = 256 << 10

// Snapshot writes the full state as a new snapshot generation and drops
// the files it makes redundant.
//
// Sequence: (a) under the store's lock, appends switch to a new log
// segment, generation N+1 (records buffered but not yet written move
// along with them); (b) records is called, and what it yields is written
// to snap-(N+1).ekv.tmp, followed by a commit footer, fsynced, renamed to
// snap-(N+1).ekv, and the directory is synced; (c) older snapshots and log
// segments are removed. Appends continue, into segment N+1, while (b)
// runs. Until (b) completes, the previous snapshot and its log segments
// stay, so a failure or crash at any point loses nothing: Open then loads
// the previous snapshot and segments N and N+1.
//
// Contract for records: it is called after the switch, and must yield a
// state that includes every record whose Append returned before records
// was called — the simplest way is to capture (e.g. clone) the state at
// the start of records, under the caller's own lock, and to update that
// state before calling Append. Records appended around the switch may be
// both in the snapshot and in segment N+1, so replaying the log over the
// snapshot must be idempotent (edgekv's merge rule is). If yield returns
// an error, records must stop and return it. Each yielded record is
// copied; the same rules as Append apply (not empty, at most
// MaxRecordBytes).
//
// Snapshot calls are serialised. Under SyncNone it does nothing and does
// not call records. A cleanup failure in (c) is logged, not returned: the
// new snapshot is complete, and the next Snapshot or Open retries it.
func (s *Store) Snapshot(records func(yield func([]byte) error) error) error {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if s.opts.Sync == SyncNone {
		return nil
	}
	gen, logBytes, err := s.rotate()
	if err != nil {
		return err
	}
	if err := s.writeSnapshot(gen, records); err != nil {
		s.mu.Lock()
		s.logBytes += logBytes // the log still counts from the last snapshot
		s.mu.Unlock()
		if rerr := s.fs.Remove(tmpName(gen)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			s.log.Warn("store: removing failed snapshot", "file", tmpName(gen), "error", rerr)
		}
		return err
	}
	s.removeBefore(gen)
	return nil
}

// rotate switches appends to a new log segment and returns its
// generation and the log bytes written before it. The old segment is
// synced and closed. snapMu is held.
func (s *Store) rotate() (gen uint64, logBytes int64, err error) {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	err, gen = s.err, s.gen
	s.mu.Unlock()
	if err != nil {
		return 0, 0, err
	}
	if s.seg != nil && s.unsynced {
		if err := s.seg.Sync(); err != nil {
			err = fmt.Errorf("store: sync %s: %w", logName(gen), err)
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return 0, 0, err
		}
		s.unsynced = false
	}
	if s.seg != nil {
		if err := s.seg.Close(); err != nil {
			// Its bytes are synced; a close error loses nothing.
			s.log.Warn("store: closing log segment", "file", logName(gen), "error", err)
		}
		s.seg = nil
	}
	s.segExists = false

	s.mu.Lock()
	defer s.mu.Unlock()
	s.synced = s.written
	s.gen = max(s.gen, s.maxGen) + 1
	s.maxGen = s.gen
	logBytes = s.logBytes - int64(len(s.buf))
	s.logBytes = int64(len(s.buf))
	return s.gen, logBytes, nil
}

// writeSnapshot writes snapshot gen through a tmp file, atomically.
func (s *Store) writeSnapshot(gen uint64, records func(yield func([]byte) error) error) (err error) {
	tmp, final := tmpName(gen), snapName(gen)
	f, err := s.fs.Create(tmp)
	if err != nil {
		return fmt.Errorf("store: snapshot: create %s: %w", tmp, err)
	}
	w := &chunkWriter{f: f, buf: make([]byte, 0, snapshotChunkBytes+frameHeaderLen+4096)}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()

	var count uint64
	var recErr error
	err = records(func(rec []byte) error {
		if w.err != nil {
			return w.err
		}
		if recErr = s.checkRecord(rec); recErr != nil {
			recErr = fmt.Errorf("snapshot record %d: %w", count, recErr)
			return recErr
		}
		w.buf = appendFrame(w.buf, rec)
		count++
		if len(w.buf) >= snapshotChunkBytes {
			w.flush()
		}
		return w.err
	})
	switch {
	case w.err != nil:
		return fmt.Errorf("store: snapshot: write %s: %w", tmp, w.err)
	case recErr != nil:
		return fmt.Errorf("store: %w", recErr)
	case err != nil:
		return fmt.Errorf("store: snapshot records: %w", err)
	}
	w.buf = appendFrame(w.buf, footer(gen, count))
	if w.flush(); w.err != nil {
		return fmt.Errorf("store: snapshot: write %s: %w", tmp, w.err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("store: snapshot: sync %s: %w", tmp, err)
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return fmt.Errorf("store: snapshot: close %s: %w", tmp, cerr)
	}
	if err := s.fs.Rename(tmp, final); err != nil {
		return fmt.Errorf("store: snapshot: rename %s: %w", tmp, err)
	}
	if err := s.fs.SyncDir(); err != nil {
		return fmt.Errorf("store: snapshot: commit %s: sync directory: %w", final, err)
	}
	return nil
}

type chunkWriter struct {
	f   File
	buf []byte
	err error
}

func (w *chunkWriter) flush() {
	if w.err == nil && len(w.buf) > 0 {
		_, w.err = w.f.Write(w.buf)
	}
	w.buf = w.buf[:0]
}

// removeBefore removes the snapshots, log segments and tmp files that the
// complete snapshot gen makes redundant, then syncs the directory.
// Failures are logged: leftover files are harmless and retried later.
func (s *Store) removeBefore(gen uint64) {
	names, err := s.fs.List()
	if err != nil {
		s.log.Warn("store: listing files for cleanup", "error", err)
		return
	}
	removed := false
	for _, name := range names {
		if _, g, ok := parseName(name); !ok || g >= gen {
			continue
		}
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
}
