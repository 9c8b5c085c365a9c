package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// writeBehindBytes is how much a SyncInterval store buffers before Append
// writes the buffer out (without fsync), bounding memory between flushes.
const writeBehindBytes = 1 << 20

// maxSpareBytes bounds the write buffer kept for reuse after a flush.
const maxSpareBytes = 4 << 20

// Store is a durable record store: a snapshot plus an append-only log. It
// is safe for concurrent use. Create it with Open.
//
// Locks, in acquisition order: snapMu (Snapshot, Close) → flushMu (log
// segment I/O) → mu (in-memory state, never held during I/O).
type Store struct {
	fs   FS
	opts Options
	log  *slog.Logger
	done chan struct{} // closed by Close; stops Run

	writeBehind int // buffered bytes that make Append write (tests lower it)

	snapMu sync.Mutex // serialises Snapshot and Close

	nodeMu    sync.Mutex   // serialises SaveNodeRecord
	nodeSaves atomic.Int64 // node records saved

	syncedCh chan struct{} // gets a token after each fsync of the log (capacity 1)

	flushMu   sync.Mutex // guards the segment fields below and all log I/O
	seg       File       // open segment for the generation mu.gen; nil until written
	segExists bool       // the file for mu.gen exists (found by Open)
	unsynced  bool       // seg holds written bytes not yet synced

	mu       sync.Mutex
	closed   bool
	err      error  // sticky log write error: the segment's tail is unknown
	gen      uint64 // generation of the log segment receiving appends
	maxGen   uint64 // highest generation named by any file seen or made
	buf      []byte // framed records appended but not yet written
	spare    []byte // reusable buffer
	seq      uint64 // records appended
	written  uint64 // records written to a segment
	synced   uint64 // records written and fsynced
	logBytes int64  // framed bytes appended since the last snapshot began
}

func newStore(fsys FS, opts Options) *Store {
	return &Store{fs: fsys, opts: opts, log: opts.Logger, done: make(chan struct{}), writeBehind: writeBehindBytes,
		syncedCh: make(chan struct{}, 1)}
}

// checkRecord validates one record's size.
func (s *Store) checkRecord(rec []byte) error {
	switch {
	case len(rec) == 0:
		return ErrEmptyRecord
	case len(rec) > s.opts.MaxRecordBytes:
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(rec), s.opts.MaxRecordBytes)
	}
	return nil
}

// Append adds one record to the log. The store copies rec. Under
// SyncAlways it returns after the record is written and fsynced; under
// SyncInterval after it is buffered; under SyncNone it keeps nothing.
// After a write or sync failure every later Append fails too (the
// segment's tail is unknown); reopen the store to recover.
func (s *Store) Append(rec []byte) error {
	if err := s.checkRecord(rec); err != nil {
		return err
	}
	seq, full, err := s.add(func(buf []byte) []byte { return appendFrame(buf, rec) }, 1, frameLen(len(rec)))
	if err != nil {
		return err
	}
	return s.afterAdd(seq, full)
}

// AppendBatch adds records to the log as one contiguous run, with a
// single fsync under SyncAlways. If any record is invalid, none is added.
func (s *Store) AppendBatch(recs [][]byte) error {
	if len(recs) == 0 {
		return nil
	}
	var n int64
	for i, r := range recs {
		if err := s.checkRecord(r); err != nil {
			return fmt.Errorf("record %d of batch: %w", i, err)
		}
		n += frameLen(len(r))
	}
	seq, full, err := s.add(func(buf []byte) []byte {
		for _, r := range recs {
			buf = appendFrame(buf, r)
		}
		return buf
	}, uint64(len(recs)), n)
	if err != nil {
		return err
	}
	return s.afterAdd(seq, full)
}

// add appends framed records to the buffer under mu and returns the
// sequence number of the last one and whether the buffer is due to be
// written out.
func (s *Store) add(frame func([]byte) []byte, count uint64, n int64) (seq uint64, full bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return 0, false, ErrClosed
	case s.err != nil:
		return 0, false, s.err
	case s.opts.Sync == SyncNone:
		return 0, false, nil
	}
	s.buf = frame(s.buf)
	s.seq += count
	s.logBytes += n
	return s.seq, len(s.buf) >= s.writeBehind, nil
}

func (s *Store) afterAdd(seq uint64, full bool) error {
	switch {
	case s.opts.Sync == SyncAlways:
		return s.flush(seq, true)
	case full && s.opts.Sync == SyncInterval:
		// Write-behind must not make the appender wait for a group
		// commit's fsync that is under way: that flush (or the next
		// tick) takes these records too. Only a buffer far past the
		// write-behind mark waits.
		if !s.flushMu.TryLock() {
			s.mu.Lock()
			huge := len(s.buf) >= 16*s.writeBehind
			s.mu.Unlock()
			if !huge {
				return nil
			}
			return s.flush(seq, false)
		}
		s.flushMu.Unlock()
		return s.flush(seq, false)
	}
	return nil
}

// Flush writes and fsyncs every record appended so far. Under SyncNone it
// does nothing.
func (s *Store) Flush() error {
	s.mu.Lock()
	closed, seq := s.closed, s.seq
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if s.opts.Sync == SyncNone {
		return nil
	}
	return s.flush(seq, true)
}

// flush makes records up to seq written (and synced if sync is set),
// together with every other record buffered by then.
func (s *Store) flush(seq uint64, sync bool) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()

	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	if s.synced >= seq || (!sync && s.written >= seq) {
		s.mu.Unlock()
		return nil
	}
	buf, upto, gen := s.buf, s.seq, s.gen
	s.buf, s.spare = s.spare[:0], nil
	s.mu.Unlock()

	err := s.writeSegment(gen, buf, sync)

	s.mu.Lock()
	defer s.mu.Unlock()
	if cap(buf) <= maxSpareBytes {
		s.spare = buf[:0]
	}
	if err != nil {
		s.err = err
		return err
	}
	s.written = upto
	if sync {
		s.synced = upto
		select {
		case s.syncedCh <- struct{}{}:
		default:
		}
	}
	return nil
}

// writeSegment writes buf to the segment of generation gen, opening or
// creating it first, and syncs it if sync is set. flushMu is held.
func (s *Store) writeSegment(gen uint64, buf []byte, sync bool) error {
	if len(buf) > 0 {
		if s.seg == nil {
			if err := s.openSegment(logName(gen)); err != nil {
				return err
			}
		}
		_, err := s.seg.Write(buf)
		s.unsynced = true
		if err != nil {
			return fmt.Errorf("store: write %s: %w", logName(gen), err)
		}
	}
	if sync && s.unsynced {
		if err := s.seg.Sync(); err != nil {
			return fmt.Errorf("store: sync %s: %w", logName(gen), err)
		}
		s.unsynced = false
	}
	return nil
}

// openSegment opens the current segment for appending, creating it (and
// making its directory entry durable, so synced records in it survive a
// crash) if Open did not find it. flushMu is held.
func (s *Store) openSegment(name string) error {
	if s.segExists {
		f, err := s.fs.OpenAppend(name)
		if err != nil {
			return fmt.Errorf("store: open %s: %w", name, err)
		}
		s.seg = f
		return nil
	}
	f, err := s.fs.Create(name)
	if err != nil {
		return fmt.Errorf("store: create %s: %w", name, err)
	}
	if err := s.fs.SyncDir(); err != nil {
		f.Close()
		return fmt.Errorf("store: create %s: sync directory: %w", name, err)
	}
	s.seg, s.segExists = f, true
	return nil
}

// Synced reports whether every record appended so far is durable (under
// SyncNone: never).
func (s *Store) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced >= s.seq && s.opts.Sync != SyncNone
}

// Appended returns how many records have been appended so far: a mark
// to compare with SyncedThrough.
func (s *Store) Appended() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}

// SyncedThrough returns how many of the records appended so far are
// durable (written and fsynced): all records up to that mark.
func (s *Store) SyncedThrough() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

// SyncedNotify gets a token after each fsync of the log (a group commit of
// Run, a Flush, an Append under SyncAlways). It has capacity 1: one token
// may stand for several fsyncs; compare SyncedThrough with a mark from
// Appended to know what is durable.
func (s *Store) SyncedNotify() <-chan struct{} { return s.syncedCh }

// LogBytes is the size, in framed bytes, of the log records appended (or
// loaded) since the last snapshot began, including buffered ones. Under
// SyncNone it is 0.
func (s *Store) LogBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logBytes
}

// SnapshotDue reports whether LogBytes has reached
// Options.SnapshotAfterBytes.
func (s *Store) SnapshotDue() bool {
	n := s.opts.SnapshotAfterBytes
	return n > 0 && s.LogBytes() >= n
}

// Close flushes buffered records, closes the log segment and makes every
// later call fail with ErrClosed. It waits for a running Snapshot.
func (s *Store) Close() error {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	seq := s.seq
	close(s.done)
	s.mu.Unlock()
	if s.opts.Sync == SyncNone {
		return nil
	}

	err := s.flush(seq, true)
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	if s.seg != nil {
		if cerr := s.seg.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("store: close %s: %w", logName(s.gen), cerr)
		}
		s.seg = nil
	}
	return err
}

// Run flushes every Options.SyncInterval under SyncInterval (group
// commit) until ctx is done or the store is closed, then flushes once more
// and returns nil. It returns the error of a failed flush. Under the other
// policies it only waits. Start at most one Run per Store.
func (s *Store) Run(ctx context.Context) error {
	if s.opts.Sync != SyncInterval {
		select {
		case <-ctx.Done():
		case <-s.done:
		}
		return nil
	}
	t := time.NewTicker(s.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return s.runFlush()
		case <-s.done:
			return nil
		case <-t.C:
			if err := s.runFlush(); err != nil {
				return err
			}
		}
	}
}

func (s *Store) runFlush() error {
	if err := s.Flush(); err != nil && !errors.Is(err, ErrClosed) {
		return err
	}
	return nil
}
