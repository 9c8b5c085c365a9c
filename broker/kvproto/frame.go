package kvproto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/edgekv/edgekv/internal/budget"
	"github.com/edgekv/edgekv/tree/wire"
)

// Limits of the framing layer.
const (
	// DefaultMaxMessage is the largest message (one msgpack map) a Reader
	// accepts unless told otherwise.
	DefaultMaxMessage = 16 << 20
	// MaxDepth is how deeply containers may nest in one message (the
	// message map itself is level 1).
	MaxDepth = 100
)

// ErrFrame is wrapped by every error about a malformed stream.
var ErrFrame = errors.New("kvproto: malformed message")

// FrameError is a malformed or oversized message in the stream. The stream
// cannot be resynchronised after it: the connection must be closed.
type FrameError struct {
	// Msg says what is wrong.
	Msg string
	// Message is the number of the message in the stream (0 = first).
	Message int
	// Offset is the byte offset of the offending item within the message.
	Offset int
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("kvproto: message %d: %s (at byte %d)", e.Message, e.Msg, e.Offset)
}

// Unwrap returns ErrFrame.
func (e *FrameError) Unwrap() error { return ErrFrame }

// Reader splits a concatenated stream of msgpack maps (no framing bytes)
// into messages. It never panics and never buffers more than MaxMessage
// bytes plus one read. A Reader belongs to one goroutine.
type Reader struct {
	r     io.Reader
	max   int
	buf   []byte // buf[:n] holds unread bytes; buf[0] starts the next message
	n     int
	count int
	err   error // sticky
	sc    scanner
	chunk int

	// With a budget (SetBudget): what the buffer holds beyond budget.Free
	// is taken from bud; a message larger than that must keep coming at
	// budget.MinRate (read deadlines on dl).
	ctx   context.Context
	bud   *budget.Budget
	held  int64
	dl    interface{ SetReadDeadline(time.Time) error }
	start time.Time // when the current message outgrew budget.Free; zero: it has not

	wait func() // called before each read from r (OnWait)
}

// OnWait makes Next call f each time before it reads from the underlying
// reader, that is before it may block: a server flushes the replies it
// has gathered there.
func (r *Reader) OnWait(f func()) { r.wait = f }

// SetBudget makes r take what its buffer holds beyond budget.Free from b,
// waiting as b.Take does (until ctx is done at most), and hold a message
// larger than that to budget.MinRate by read deadlines, if its reader has
// SetReadDeadline. Call Release when done with r.
func (r *Reader) SetBudget(ctx context.Context, b *budget.Budget) {
	r.ctx, r.bud = ctx, b
	r.dl, _ = r.r.(interface{ SetReadDeadline(time.Time) error })
}

// Release gives back what r holds of its budget; r must not be used after.
func (r *Reader) Release() {
	if r.bud != nil {
		r.bud.Give(r.held)
		r.held = 0
	}
	r.buf, r.n = nil, 0
}

// hold resizes r's share of the budget to a buffer of size bytes.
func (r *Reader) hold(size int) error {
	if r.bud == nil {
		return nil
	}
	want := max(0, int64(size)-budget.Free)
	switch {
	case want > r.held:
		if err := r.bud.Take(r.ctx, want-r.held); err != nil {
			return fmt.Errorf("kvproto: message %d: %d bytes received, no room for more: %w", r.count, r.n, err)
		}
	case want < r.held:
		r.bud.Give(r.held - want)
	}
	r.held = want
	return nil
}

// NewReader returns a Reader over r accepting messages of at most
// maxMessage bytes (≤ 0: DefaultMaxMessage).
func NewReader(r io.Reader, maxMessage int) *Reader {
	if maxMessage <= 0 {
		maxMessage = DefaultMaxMessage
	}
	return &Reader{r: r, max: maxMessage, chunk: 4096}
}

// Next returns the next message: exactly one msgpack map, in a freshly
// allocated slice the caller may keep. At a clean end of the stream
// (between messages) it returns io.EOF; a stream that ends inside a message
// returns an error wrapping io.ErrUnexpectedEOF; a malformed or oversized
// message returns a *FrameError. Errors are sticky.
func (r *Reader) Next() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	r.sc = scanner{max: r.max, stack: r.sc.stack[:0]}
	for {
		done, ferr := r.sc.scan(r.buf[:r.n])
		if ferr != nil {
			ferr.Message = r.count
			r.err = ferr
			return nil, ferr
		}
		if done {
			end := r.sc.pos
			var msg []byte
			if end > budget.Free {
				// A large message keeps the buffer it came in (no
				// second copy); reading goes on in a new one, and the
				// budget is given back: the message is complete.
				msg = r.buf[:end:end]
				nb := make([]byte, max(r.chunk, r.n-end))
				r.n = copy(nb, r.buf[end:r.n])
				r.buf = nb
			} else {
				msg = make([]byte, end)
				copy(msg, r.buf[:end])
				r.n = copy(r.buf, r.buf[end:r.n])
				if len(r.buf) > 16*r.chunk && r.n <= r.chunk {
					// Do not keep a large message's buffer for the
					// connection's lifetime.
					nb := make([]byte, r.chunk)
					r.n = copy(nb, r.buf[:r.n])
					r.buf = nb
				}
			}
			r.count++
			if err := r.hold(len(r.buf)); err != nil { // only ever gives back here
				r.err = err
				return nil, err
			}
			if !r.start.IsZero() {
				r.start = time.Time{}
				if r.dl != nil {
					_ = r.dl.SetReadDeadline(time.Time{})
				}
			}
			return msg, nil
		}
		if err := r.fill(); err != nil {
			if errors.Is(err, io.EOF) {
				if r.n == 0 {
					err = io.EOF
				} else {
					err = fmt.Errorf("kvproto: message %d: stream ended after %d bytes of it: %w", r.count, r.n, io.ErrUnexpectedEOF)
				}
			}
			r.err = err
			return nil, err
		}
	}
}

// Buffered returns how many bytes of later messages Next has read already.
func (r *Reader) Buffered() int { return r.n }

// fill reads at least one more byte into the buffer.
func (r *Reader) fill() error {
	if r.n == len(r.buf) {
		size := max(2*len(r.buf), r.chunk)
		// Never hold much more than one message's worth.
		size = min(size, r.max+r.chunk)
		if size <= len(r.buf) {
			// Cannot happen: the scanner rejects a message above max
			// before the buffer gets here.
			return &FrameError{Msg: "message too large", Message: r.count, Offset: r.n}
		}
		if err := r.hold(size); err != nil {
			return err
		}
		nb := make([]byte, size)
		copy(nb, r.buf[:r.n])
		r.buf = nb
	}
	if r.bud != nil && r.n > budget.Free {
		if r.start.IsZero() {
			r.start = time.Now()
		}
		if r.dl != nil {
			_ = r.dl.SetReadDeadline(budget.Deadline(r.start, int64(r.n)))
		}
	}
	if r.wait != nil {
		r.wait()
	}
	for range 100 {
		k, err := r.r.Read(r.buf[r.n:])
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() && !r.start.IsZero() {
			err = fmt.Errorf("kvproto: message %d: %d bytes received in %s, slower than the %d KiB/s a message over %d KiB must keep up: %w",
				r.count, r.n+k, time.Since(r.start).Round(time.Millisecond), budget.MinRate>>10, budget.Free>>10, err)
		}
		r.n += k
		if k > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// scanner measures one msgpack map at the start of a growing buffer. It is
// resumable: scan may be called again with the same bytes plus more.
type scanner struct {
	max     int
	pos     int
	started bool
	anyItem bool     // the top-level item may be of any type, not only a map
	stack   []uint64 // items still to read in each open container
}

// scan advances over b. done reports that b[:s.pos] is one whole message.
func (s *scanner) scan(b []byte) (done bool, err *FrameError) {
	for {
		if s.started && len(s.stack) == 0 {
			return true, nil
		}
		if s.pos >= len(b) {
			return false, nil
		}
		at := b[s.pos:]
		h := wire.Lead(at[0])
		if h.Len == 0 {
			var herr error
			if h, herr = wire.ReadHead(at); herr == wire.ErrShortHead {
				return false, nil
			} else if herr != nil {
				return false, &FrameError{Msg: herr.Error(), Offset: s.pos}
			}
		}
		isContainer, items := h.Type == wire.TypeMap || h.Type == wire.TypeArray, h.Items()
		if !s.started && !s.anyItem && h.Type != wire.TypeMap {
			return false, &FrameError{Msg: "want a map, got " + wire.Describe(at), Offset: s.pos}
		}
		end := uint64(s.pos) + h.End()
		if end > uint64(s.max) {
			return false, &FrameError{Msg: fmt.Sprintf("message larger than %d bytes", s.max), Offset: s.pos}
		}
		if isContainer {
			if len(s.stack) >= MaxDepth {
				return false, &FrameError{Msg: fmt.Sprintf("nested deeper than %d levels", MaxDepth), Offset: s.pos}
			}
			// Every item takes at least one byte.
			if items > uint64(s.max)-end {
				return false, &FrameError{Msg: fmt.Sprintf("%s of %d items cannot fit in a message of at most %d bytes", wire.Describe(at), items, s.max), Offset: s.pos}
			}
		}
		if uint64(len(b)) < end {
			return false, nil
		}
		s.pos = int(end)
		s.started = true
		if len(s.stack) > 0 {
			s.stack[len(s.stack)-1]--
		}
		if isContainer && items > 0 {
			s.stack = append(s.stack, items)
		}
		for len(s.stack) > 0 && s.stack[len(s.stack)-1] == 0 {
			s.stack = s.stack[:len(s.stack)-1]
		}
	}
}

// Writer writes whole messages to an io.Writer. It is not safe for
// concurrent use: the Server gives it one goroutine.
type Writer struct {
	w io.Writer
}

// NewWriter returns a Writer over w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write writes one encoded message.
func (w *Writer) Write(msg []byte) error {
	_, err := w.w.Write(msg)
	return err
}

// Flush flushes the underlying writer if it buffers (has Flush() error).
func (w *Writer) Flush() error {
	if f, ok := w.w.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}

// skipValue skips one msgpack item at the start of b (nesting and sizes
// bounded as in a message) and returns the rest.
func skipValue(b []byte) ([]byte, *FrameError) {
	if len(b) > 0 && (b[0] <= 0x7f || b[0] >= 0xe0) {
		return b[1:], nil
	}
	s := scanner{max: len(b), anyItem: true}
	done, err := s.scan(b)
	if err != nil {
		return b, err
	}
	if !done {
		return b, &FrameError{Msg: "truncated " + wire.Describe(b), Offset: s.pos}
	}
	return b[s.pos:], nil
}
