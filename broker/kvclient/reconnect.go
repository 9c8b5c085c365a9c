package kvclient

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/edgekv/edgekv/tree"
)

// ErrUnknownOutcome: the connection ended after a request was sent and
// before its reply came, so the request may or may not have been applied.
// Reconnecting returns it (wrapping the ErrClosed error too) for a write
// it does not repeat.
var ErrUnknownOutcome = errors.New("kvclient: connection lost before the reply; the write may or may not have been applied")

// Default backoff of a Reconnecting client.
const (
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
)

// ReconnectOptions are the settings of a Reconnecting client.
type ReconnectOptions struct {
	// DialOptions are used for every connection (TLS, set-up timeout).
	DialOptions
	// MinBackoff is the wait after a failed attempt to connect (0:
	// DefaultMinBackoff); each further failure doubles it, up to
	// MaxBackoff (0: DefaultMaxBackoff). Each wait varies by up to ±20 %
	// so that many clients of one restarted node do not retry in step.
	MinBackoff, MaxBackoff time.Duration
	// RetryWrites lets Set and Delete repeat a write whose reply was lost
	// with its connection. Leave it off unless writing twice is harmless;
	// see Reconnecting.
	RetryWrites bool
	// Root, if set, is the root (the root action) every new connection
	// moves to before it is used: a connection's root does not survive the
	// connection, so a Reconnecting client keeps it here. Paths are then
	// relative to Root, as with Client.Root.
	Root tree.Path
	// OnConnect, if set, is called with the greeting of every new
	// connection (for logging). It runs on the caller that connected and
	// must not block or call the Reconnecting client.
	OnConnect func(Hello)
}

// Reconnecting is a client that connects when first used and again
// whenever its connection has ended (the node restarted, the network
// dropped), waiting between failed attempts with capped exponential
// backoff. Every call waits for a connection until its context ends, so
// a deadline on the context bounds how long a call may wait for a node
// that is down. It is safe for concurrent use: callers share one
// connection and one backoff.
//
// What is repeated after a connection ends:
//
//   - A request that was never sent (the connection was already gone) is
//     sent on the next connection, whatever it is.
//   - Reads (Get, State, and Tree until it has delivered an item) are
//     repeated on the next connection.
//   - A write (Set, Delete) whose reply was lost may have been applied or
//     not; it fails with an error that wraps ErrUnknownOutcome and
//     ErrClosed and is not repeated, unless ReconnectOptions.RetryWrites
//     is set. Repeating is harmless for a plain Set of a value (with
//     WriteOpts.Idem a repeat changes nothing if the first was applied)
//     and for a Delete; it is not for a conditional write (MustNotExist,
//     Head), whose repeat fails with a conflict when the first attempt
//     was applied, nor where a write by someone else in between must not
//     be overwritten. Check such a write with Get after ErrUnknownOutcome.
//   - Server errors (conflict, not found, …) are returned as they are.
//
// Watch re-issues its watch after a reconnect; see there.
type Reconnecting struct {
	addr string
	o    ReconnectOptions
	done chan struct{} // closed by Close

	mu       sync.Mutex
	c        *Client       // the last connection (nil: none yet)
	dialing  chan struct{} // closed when the running attempt ends (nil: none)
	failures int           // failed attempts since the last connection
	next     time.Time     // no attempt before this
	lastErr  error         // why the last attempt failed
	closed   bool
}

// NewReconnecting returns a client of the server at addr (host:port). It
// connects on first use; nothing is started before.
func NewReconnecting(addr string, o ReconnectOptions) *Reconnecting {
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	return &Reconnecting{addr: addr, o: o, done: make(chan struct{})}
}

// errReconnectingClosed is returned once Close has been called.
var errReconnectingClosed = fmt.Errorf("%w: Close was called", ErrClosed)

// Close closes the connection and ends every call that is waiting for
// one. Calls under way on the connection fail with ErrClosed.
func (r *Reconnecting) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.done)
	c := r.c
	r.c = nil
	r.mu.Unlock()
	if c == nil {
		return nil
	}
	if !c.alive() {
		c.Close() // already ended: release it, its error is not news
		return nil
	}
	return c.Close()
}

// Client returns the current connection, connecting (with backoff) if
// there is none or it has ended, until ctx ends. Requests made on it
// directly are not repeated: use it for what Reconnecting does not wrap
// (Import, …). Do not close it; Close closes it.
func (r *Reconnecting) Client(ctx context.Context) (*Client, error) {
	for {
		r.mu.Lock()
		switch {
		case r.closed:
			r.mu.Unlock()
			return nil, errReconnectingClosed
		case r.c != nil && r.c.alive():
			c := r.c
			r.mu.Unlock()
			return c, nil
		case r.dialing != nil:
			ch := r.dialing
			r.mu.Unlock()
			if err := r.wait(ctx, ch, nil); err != nil {
				return nil, err
			}
			continue
		}
		if d := time.Until(r.next); d > 0 {
			r.mu.Unlock()
			t := time.NewTimer(d)
			err := r.wait(ctx, nil, t.C)
			t.Stop()
			if err != nil {
				return nil, err
			}
			continue
		}
		ch := make(chan struct{})
		r.dialing = ch
		r.mu.Unlock()

		c, err := r.dial(ctx)
		var refused *ServerError
		if err == nil && len(r.o.Root) > 0 {
			if _, err = c.Root(ctx, r.o.Root); err != nil {
				c.Close()
				errors.As(err, &refused)
				err = fmt.Errorf("kvclient: %s: moving to root %s: %w", r.addr, r.o.Root, err)
			}
		}

		r.mu.Lock()
		r.dialing = nil
		close(ch)
		if refused != nil {
			// The node answered and said no: trying again will not help.
			r.mu.Unlock()
			return nil, err
		}
		if err != nil {
			if ctx.Err() != nil {
				// Cut short by the caller: not the server's failure.
				r.mu.Unlock()
				return nil, fmt.Errorf("kvclient: %s: not connected: %w", r.addr, err)
			}
			r.failures++
			r.lastErr = err
			r.next = time.Now().Add(r.backoff(r.failures))
			r.mu.Unlock()
			continue
		}
		if r.closed {
			r.mu.Unlock()
			c.Close()
			return nil, errReconnectingClosed
		}
		old := r.c
		r.c, r.failures, r.lastErr, r.next = c, 0, nil, time.Time{}
		r.mu.Unlock()
		if old != nil {
			old.Close() // ended; this releases it
		}
		if r.o.OnConnect != nil {
			r.o.OnConnect(c.Hello())
		}
		return c, nil
	}
}

// dial makes one attempt to connect; Close cuts it short.
func (r *Reconnecting) dial(ctx context.Context) (*Client, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-r.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return DialWith(ctx, r.addr, r.o.DialOptions)
}

// wait waits for ch or tick (either may be nil), ctx or Close. Its error
// names the last failed attempt to connect, if any.
func (r *Reconnecting) wait(ctx context.Context, ch <-chan struct{}, tick <-chan time.Time) error {
	select {
	case <-ch:
		return nil
	case <-tick:
		return nil
	case <-r.done:
		return errReconnectingClosed
	case <-ctx.Done():
		r.mu.Lock()
		last := r.lastErr
		r.mu.Unlock()
		if last != nil {
			return fmt.Errorf("kvclient: %s: not connected (last attempt: %v): %w", r.addr, last, ctx.Err())
		}
		return fmt.Errorf("kvclient: %s: not connected: %w", r.addr, ctx.Err())
	}
}

// backoff is the wait after the n-th failure in a row (n ≥ 1).
func (r *Reconnecting) backoff(n int) time.Duration {
	d := r.o.MinBackoff
	for i := 1; i < n && d < r.o.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.o.MaxBackoff)
	return d*4/5 + rand.N(d*2/5+1) // ±20 %
}

// pause waits before the n-th attempt of a request (n ≥ 1): the first
// attempt and the first retry go at once, later ones back off, so that a
// request that keeps ending its connection cannot spin.
func (r *Reconnecting) pause(ctx context.Context, n int) error {
	if n <= 2 {
		return nil
	}
	t := time.NewTimer(r.backoff(n - 2))
	defer t.Stop()
	return r.wait(ctx, nil, t.C)
}

// final marks an error that must not cause a retry (a callback's own
// error, a stream cut off after it delivered items).
type final struct{ err error }

func (e final) Error() string { return e.err.Error() }
func (e final) Unwrap() error { return e.err }

// Do calls fn with a connection, and again with a new one when the
// connection ended under it: always if the request was never sent, and
// if it was sent only when idempotent is set (the request may have been
// applied; see Reconnecting). Otherwise the error wraps
// ErrUnknownOutcome. fn may be called several times; it should make one
// request. Do gives up when ctx ends or Close is called.
func (r *Reconnecting) Do(ctx context.Context, idempotent bool, fn func(*Client) error) error {
	for attempt := 1; ; attempt++ {
		if err := r.pause(ctx, attempt); err != nil {
			return err
		}
		c, err := r.Client(ctx)
		if err != nil {
			return err
		}
		err = fn(c)
		var f final
		switch {
		case err == nil:
			return nil
		case errors.As(err, &f):
			return f.err
		case ctx.Err() != nil:
			return err
		case !errors.Is(err, ErrClosed):
			return err // a server error, a bad reply: as it is
		case wasNotSent(err) || idempotent:
			continue
		default:
			return fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
		}
	}
}

// Get is Client.Get, repeated on a new connection if the old one ends.
func (r *Reconnecting) Get(ctx context.Context, p tree.Path, nchain int) (e Entry, found bool, err error) {
	err = r.Do(ctx, true, func(c *Client) error {
		var err error
		e, found, err = c.Get(ctx, p, nchain)
		return err
	})
	return e, found, err
}

// Set is Client.Set. A write whose reply was lost with the connection
// fails with ErrUnknownOutcome unless RetryWrites is set.
func (r *Reconnecting) Set(ctx context.Context, p tree.Path, value []byte, o WriteOpts) (res Result, err error) {
	err = r.Do(ctx, r.o.RetryWrites, func(c *Client) error {
		var err error
		res, err = c.Set(ctx, p, value, o)
		return err
	})
	return res, err
}

// Delete is Client.Delete, repeated like Set.
func (r *Reconnecting) Delete(ctx context.Context, p tree.Path, o WriteOpts) (res Result, err error) {
	err = r.Do(ctx, r.o.RetryWrites, func(c *Client) error {
		var err error
		res, err = c.Delete(ctx, p, o)
		return err
	})
	return res, err
}

// State is Client.State, repeated on a new connection if the old one ends.
func (r *Reconnecting) State(ctx context.Context) (st State, err error) {
	err = r.Do(ctx, true, func(c *Client) error {
		var err error
		st, err = c.State(ctx)
		return err
	})
	return st, err
}

// Tree is Client.Tree. It is repeated on a new connection only if the old
// one ended before the first item; once fn has seen items, a lost
// connection ends the walk with its error (fn would see items twice).
func (r *Reconnecting) Tree(ctx context.Context, p tree.Path, fn func(Item) error) error {
	delivered := false
	return r.Do(ctx, true, func(c *Client) error {
		err := c.Tree(ctx, p, func(it Item) error {
			delivered = true
			if err := fn(it); err != nil {
				return final{err}
			}
			return nil
		})
		if err != nil && delivered {
			return final{err}
		}
		return err
	})
}

// watchSeen is what a watch last delivered (or, without fetch, first
// learned) of one path.
type watchSeen struct {
	head  tree.Link // the chain head; zero for a deletion Watch made up
	value bool
}

// Watch is Client.Watch across reconnects: it calls fn for the current
// entries below p (if fetch), one UpToDate item (if fetch), then every
// change, until ctx ends, fn fails, Close is called or the server ends the
// watch (with an error, such as a watcher that fell too far behind).
//
// When the connection ends, Watch connects again (with backoff) and
// re-issues the watch with fetch, to learn what changed meanwhile. Of the
// entries fetched again, fn sees only those whose chain head (node, tick)
// or presence of a value differs from what it saw last for that path:
// the changes made while the watch was away, once each, and nothing
// twice. An entry that fn saw with a value and that the new fetch lacks
// was deleted meanwhile: fn gets a deletion (Value nil) with no chain and
// tock 0, in canonical path order, just before live changes resume. Of
// several changes to one entry while away, fn sees only the last. The
// UpToDate item comes once, after the first complete initial state.
//
// A watch without fetch fetches anyway to learn the baseline, and passes
// neither that state nor UpToDate to fn; if its first connection ends
// before the baseline is complete, changes made in that gap are taken
// for the baseline too.
//
// To do this Watch keeps one (node, tick) per path it has seen below p
// for as long as it runs. A node that lost its last writes in a crash
// (data.sync interval or none) may come back with an older version of
// an entry than fn saw; fn then sees that version, as the node now holds
// it.
func (r *Reconnecting) Watch(ctx context.Context, p tree.Path, fetch bool, fn func(Item) error) error {
	seen := make(map[string]watchSeen)
	baseline := !fetch // the initial state is learned, not delivered
	upToDate := !fetch // UpToDate was delivered (or is not wanted)
	delivered := false // fn was called since the last connection ended
	for attempt := 1; ; attempt++ {
		if delivered {
			attempt = 1 // the last connection worked: reconnect at once
		}
		delivered = false
		if err := r.pause(ctx, attempt); err != nil {
			return err
		}
		c, err := r.Client(ctx)
		if err != nil {
			return err
		}
		initial := true                  // before this round's UpToDate
		inFetch := make(map[string]bool) // paths of this round's initial state
		err = c.Watch(ctx, p, true, func(it Item) error {
			delivered = true
			if it.UpToDate {
				initial = false
				if err := watchDeletions(seen, inFetch, fn); err != nil {
					return err
				}
				inFetch = nil
				baseline = false
				if !upToDate {
					upToDate = true
					if err := fn(it); err != nil {
						return final{err}
					}
				}
				return nil
			}
			key := string(tree.AppendPath(nil, it.Path))
			if initial {
				inFetch[key] = true
			}
			now := watchSeen{value: it.Value != nil}
			if len(it.Chain) > 0 {
				now.head = it.Chain[0]
			}
			if prev, ok := seen[key]; ok && prev == now && len(it.Chain) > 0 {
				return nil // delivered before the reconnect
			}
			seen[key] = now
			if initial && baseline {
				return nil
			}
			if err := fn(it); err != nil {
				return final{err}
			}
			return nil
		})
		var f final
		switch {
		case err == nil:
			return nil // the server ended the watch
		case errors.As(err, &f):
			return f.err
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrClosed):
			continue
		default:
			return err
		}
	}
}

// watchDeletions passes a deletion to fn for every path seen with a value
// that a re-issued watch's initial state lacks, in canonical path order.
func watchDeletions(seen map[string]watchSeen, inFetch map[string]bool, fn func(Item) error) error {
	var gone []tree.Path
	for key, s := range seen {
		if s.value && !inFetch[key] {
			p, _, err := tree.ReadPath([]byte(key))
			if err != nil {
				return final{fmt.Errorf("kvclient: watch: %w", err)} // cannot happen: we encoded it
			}
			seen[key] = watchSeen{}
			gone = append(gone, p)
		}
	}
	slices.SortFunc(gone, tree.Path.Compare)
	for _, p := range gone {
		if err := fn(Item{Path: p}); err != nil {
			return final{err}
		}
	}
	return nil
}

// WatchSeq is Watch as an iterator, like Client.WatchSeq: breaking out of
// the loop ends the watch; a failure is yielded last.
func (r *Reconnecting) WatchSeq(ctx context.Context, p tree.Path, fetch bool) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		stop := errors.New("stopped")
		err := r.Watch(ctx, p, fetch, func(it Item) error {
			if !yield(it, nil) {
				return stop
			}
			return nil
		})
		if err != nil && !errors.Is(err, stop) {
			yield(Item{}, err)
		}
	}
}
