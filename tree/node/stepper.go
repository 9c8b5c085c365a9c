package node

import (
	"errors"
	"slices"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/replica"
	"github.com/edgekv/edgekv/tree/store"
	"github.com/edgekv/edgekv/tree/wire"
)

// Stepper drives an Engine on the caller's goroutine, one input at a time,
// through the same code Run's loop runs: each method handles its input and
// then flushes (node record, records, answers, messages, changes) before
// it returns. It exists for the deterministic simulator; only the group
// commit of sync "interval" (FlushStore) and snapshots (Snapshot) are
// left to the caller, where Run has timers for them. A Stepper owns its
// engine: never call Run, nor the engine's API methods, while it is used.
type Stepper struct{ e *Engine }

// ErrStopped is returned by a Stepper whose engine stopped (its store
// failed, or Close was called).
var ErrStopped = errors.New("node: engine stopped")

// Stepper takes the engine over for step-by-step driving. It fails if Run
// owns the engine.
func (e *Engine) Stepper() (*Stepper, error) {
	if !e.started.CompareAndSwap(false, true) {
		return nil, ErrRunning
	}
	return &Stepper{e: e}, nil
}

// Start does what Run does first: save the reservation Open made.
func (s *Stepper) Start() error { return s.flush() }

func (s *Stepper) flush() error {
	select {
	case <-s.e.stopping:
		return ErrStopped
	default:
	}
	if err := s.e.flush(); err != nil {
		s.e.stop(err)
		return err
	}
	return nil
}

// Err returns why the engine stopped, or nil while it runs.
func (s *Stepper) Err() error {
	select {
	case <-s.e.stopping:
		if s.e.failed != nil {
			return s.e.failed
		}
		return ErrStopped
	default:
		return nil
	}
}

// Durable reports whether everything the engine has persisted is on disk
// (fsynced): after a crash now, the node would restart with all of it.
func (s *Stepper) Durable() bool { return s.e.st.Synced() }

// Replica gives read access to the replica (for checks). Do not modify it.
func (s *Stepper) Replica() *replica.Replica { return s.e.r }

// Set writes like Engine.Set and returns once the write is persisted.
func (s *Stepper) Set(p tree.Path, value []byte, c Cond) (Result, error) {
	if value == nil {
		return Result{}, errors.New("node: Stepper.Set with no value")
	}
	return s.write(p, value, c)
}

// Delete deletes like Engine.Delete.
func (s *Stepper) Delete(p tree.Path, c Cond) (Result, error) { return s.write(p, nil, c) }

func (s *Stepper) write(p tree.Path, value []byte, c Cond) (Result, error) {
	if err := s.Err(); err != nil {
		return Result{}, err
	}
	reply := make(chan writeResult, 1)
	s.e.applyWrite(p, value, c, reply)
	ferr := s.flush()
	select {
	case wr := <-reply:
		return wr.res, wr.err
	default:
		return Result{}, ferr // not answered: the flush failed
	}
}

// Get returns the entry at p.
func (s *Stepper) Get(p tree.Path) Entry { return entryOf(s.e.r.Tree().Get(p)) }

// LinkUp, LinkDown and Receive hand over a link event or message like the
// Engine methods of the same names, and handle it at once.
func (s *Stepper) LinkUp(name string, send Sender) error {
	s.e.LinkUp(name, send)
	return s.drain()
}

// LinkDown: see LinkUp.
func (s *Stepper) LinkDown(name string) error {
	s.e.LinkDown(name)
	return s.drain()
}

// Receive: see LinkUp.
func (s *Stepper) Receive(name string, send Sender, kind wire.Kind, data []byte) error {
	s.e.Receive(name, send, kind, data)
	return s.drain()
}

func (s *Stepper) drain() error {
	if err := s.Err(); err != nil {
		return err
	}
	s.e.drainInbox()
	return s.flush()
}

// Links returns the names of the links that are up (attached or idle),
// sorted.
func (s *Stepper) Links() []string { return slices.Sorted(mapKeys(s.e.links)) }

// Active returns the names of the links attached to the replica, sorted.
func (s *Stepper) Active() []string {
	var out []string
	for _, name := range s.Links() {
		if s.e.links[name].id != 0 {
			out = append(out, name)
		}
	}
	return out
}

// Tick advances the replica's clock by one tick (heartbeats, requests for
// missing ticks, purges, periodic digests).
func (s *Stepper) Tick() error {
	if err := s.Err(); err != nil {
		return err
	}
	s.e.r.Tick()
	return s.flush()
}

// WriteStatus writes the status entries, as Run does every StatusEvery.
func (s *Stepper) WriteStatus() error {
	if err := s.Err(); err != nil {
		return err
	}
	s.e.writeStatus()
	return s.flush()
}

// FlushStore is the group commit of sync "interval": it makes every
// record appended so far durable. A failure stops the engine.
func (s *Stepper) FlushStore() error {
	if err := s.Err(); err != nil {
		return err
	}
	if err := s.e.st.Flush(); err != nil {
		err = s.e.fail(err)
		s.e.stop(err)
		return err
	}
	s.e.releaseHeld()
	return nil
}

// Snapshot writes a snapshot now. A failed snapshot loses nothing (the
// store keeps the previous one and the log); the engine goes on.
func (s *Stepper) Snapshot() error {
	if err := s.Err(); err != nil {
		return err
	}
	return s.e.st.Snapshot(s.e.r.SnapshotRecords)
}

// Close stops the engine cleanly, like the end of Run: a last flush, then
// the store is closed.
func (s *Stepper) Close() error {
	s.e.stop(nil)
	err := s.e.st.Close()
	if errors.Is(err, store.ErrClosed) {
		err = nil
	}
	return err
}
