package kvproto

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/internal/budget"
	"github.com/edgekv/edgekv/tree"
)

// Cond is the condition of a client write.
type Cond struct {
	// MustNotExist: the entry must hold no value (request chain: None).
	MustNotExist bool
	// Head, if set: the entry's chain head must be this link (request
	// chain: {...}).
	Head *tree.Link
	// Prev, if non-nil: the entry's current value must be exactly these
	// msgpack bytes (request prev).
	Prev []byte
	// Idem: a set that would store the value already stored changes nothing.
	Idem bool
}

// Tree is what the server needs from the node. It is defined here, by its
// consumer; cmd/edgekv implements it by handing each call to the node's
// owning goroutine and waiting for the answer (or ctx). Methods are called
// concurrently from many connections. Returned slices must not be modified
// later by the implementation (copy what the tree owns).
//
// Errors are classified with tree.KindOf (wrap tree.ErrNotFound,
// tree.ErrConflict, tree.ErrInvalidPath, …): the kind is sent to the client
// beside the error text.
type Tree interface {
	// Hello returns this node's name, its tick and a fresh tock for the
	// greeting (QLen is filled in by the server).
	Hello(ctx context.Context) (Hello, error)
	// Tock returns a fresh tock, for replies that carry no entry
	// (MoaT-KV increments its tock on every read).
	Tock(ctx context.Context) (uint64, error)
	// Get returns the entry at p; a missing entry is the zero Entry and no
	// error.
	Get(ctx context.Context, p tree.Path) (Entry, error)
	// Set stores value (one msgpack value) at p as this node.
	Set(ctx context.Context, p tree.Path, value []byte, c Cond) (Result, error)
	// Delete removes the value at p as this node.
	Delete(ctx context.Context, p tree.Path, c Cond) (Result, error)
}

// QuickWriter is a Tree that may say its Set and Delete answer without
// waiting for the disk (its store syncs on an interval, or never). The
// server then answers get_value, set_value, delete_value and get_tock on
// the connection's reader even when the client sends many at once, in the
// order they came, and sends the replies to what arrived together in one
// write. A Tree whose writes wait for an fsync gains from running them
// side by side (one fsync serves them all): its requests go to worker
// goroutines unless the client waits for each reply.
type QuickWriter interface {
	QuickWrites() bool
}

// Server serves MoaT-KV client-protocol connections over a Tree. Set the
// fields before the first ServeConn; a Server may serve many connections
// concurrently.
type Server struct {
	Tree Tree
	// QLen is the flow-control window announced in the greeting
	// (0: DefaultQLen).
	QLen int
	// MaxMessage bounds one request in bytes (0: DefaultMaxMessage).
	MaxMessage int
	// MaxInFlight bounds the requests one connection may have running at
	// once, streams aside; reading pauses while it is reached (0: 64).
	MaxInFlight int
	// MaxStreams bounds the streams (watch, get_tree, msg_monitor) one
	// connection may have open at once; one more is refused with an error
	// of kind unavailable (0: DefaultMaxStreams). Streams do not count
	// towards MaxInFlight: a stream may wait on the client for ever (its
	// acks, its stop), and the reader must go on reading, to see acks,
	// stops and the client's close.
	MaxStreams int
	// Budget, if set, is shared by the node's connections: what their
	// unfinished messages hold beyond budget.Free bytes each is taken from
	// it; a connection that finds no room waits (unread), then is closed
	// with a fatal error that says so. Such a message must also keep
	// arriving at budget.MinRate.
	Budget *budget.Budget
	// MaxQueued bounds the bytes of replies waiting to be written to one
	// connection (0: DefaultMaxQueued); a request or stream that would go
	// over it waits until the client has read enough, so a client that
	// does not read its replies stops being read itself. A reply larger
	// than MaxQueued waits until nothing else is queued.
	MaxQueued int
	// MaxConns bounds the connections served at once (0: no bound); one
	// more gets a fatal error naming the limit and is closed.
	MaxConns int
	// Logger receives connection-level problems (nil: discard).
	Logger *slog.Logger

	conns atomic.Int64
}

// ErrTooManyConns is returned by ServeConn for a connection over MaxConns.
var ErrTooManyConns = errors.New("kvproto: too many connections")

// ServeConn serves one connection until the client closes it, a fatal
// error, or ctx ends, and closes conn. It sends the greeting, then reads
// requests and runs each in its own goroutine; replies go out in the order
// they are ready, through one writer goroutine. It returns nil when the
// client ended the stream cleanly.
func (s *Server) ServeConn(ctx context.Context, conn io.ReadWriteCloser) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	qlen := s.QLen
	if qlen <= 0 {
		qlen = DefaultQLen
	}
	inflight := s.MaxInFlight
	if inflight <= 0 {
		inflight = 64
	}

	if n := s.conns.Add(1); s.MaxConns > 0 && n > int64(s.MaxConns) {
		s.conns.Add(-1)
		msg := fmt.Sprintf("this node serves at most %d client connections (limits.client_connections); try again later", s.MaxConns)
		_, _ = conn.Write(AppendFatal(nil, tree.KindUnavailable, msg))
		conn.Close()
		return fmt.Errorf("%w: %d open", ErrTooManyConns, s.MaxConns)
	}
	defer s.conns.Add(-1)

	// Closing conn unblocks the reader when ctx ends.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	maxQueued := int64(s.MaxQueued)
	if maxQueued <= 0 {
		maxQueued = DefaultMaxQueued
	}
	queued := budget.New("kvproto: replies queued", maxQueued, 24*time.Hour)
	out := make(chan []byte, inflight)
	// Replies go out in one of two ways. A reply sent while nothing waits
	// for the writer goroutine is written at once by its sender (one
	// goroutine hand-off less: a sequential client's request costs the
	// node less); otherwise it joins the writer's queue. wmu orders the
	// two: pending counts what the queue holds, and a sender writes
	// directly only when it is zero, so no message overtakes one sent
	// before it (a stream's messages stay in order).
	var (
		wmu      sync.Mutex
		pending  int           // in the queue, not yet taken by the writer
		bw       *bufio.Writer // the writer's buffer while it holds unwritten bytes
		writeErr error
	)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		// Replies that are ready together go out in one write, through a
		// buffer that the connection holds only while it has something
		// to send: an idle connection holds none.
		defer func() {
			if bw != nil {
				bw.Reset(nil)
				writeBuffers.Put(bw)
			}
		}()
		for msg := range out {
			wmu.Lock()
			pending--
			if writeErr != nil {
				wmu.Unlock()
				queued.Give(min(int64(len(msg)), maxQueued))
				continue // drain
			}
			if bw == nil {
				bw = writeBuffers.Get().(*bufio.Writer)
				bw.Reset(conn)
			}
			_, err := bw.Write(msg)
			queued.Give(min(int64(len(msg)), maxQueued))
			putMsg(msg) // sent messages belong to the writer
			if err == nil && len(out) == 0 {
				// Let the request goroutines that are about to reply
				// (a node batch answers many at once) add theirs, so
				// that one write carries them all.
				wmu.Unlock()
				runtime.Gosched()
				wmu.Lock()
				if pending == 0 {
					err = bw.Flush()
					if err == nil {
						bw.Reset(nil)
						writeBuffers.Put(bw)
						bw = nil
					}
				}
			}
			if err != nil {
				writeErr = err
				cancel()
			}
			wmu.Unlock()
		}
	}()
	// queue hands msg to the writer goroutine: its sender never waits on
	// the socket, only on the queue's budget.
	var queue func(msg []byte)
	send := func(msg []byte) {
		if wmu.TryLock() {
			if pending == 0 && bw == nil && writeErr == nil {
				_, err := conn.Write(msg)
				putMsg(msg)
				if err != nil {
					writeErr = err
					cancel()
				}
				wmu.Unlock()
				return
			}
			wmu.Unlock()
		}
		queue(msg)
	}
	queue = func(msg []byte) {
		if queued.Take(ctx, min(int64(len(msg)), maxQueued)) != nil {
			return // ctx is done
		}
		wmu.Lock()
		pending++
		wmu.Unlock()
		select {
		case out <- msg:
		case <-ctx.Done():
			wmu.Lock()
			pending--
			wmu.Unlock()
			queued.Give(min(int64(len(msg)), maxQueued))
		}
	}

	var wg sync.WaitGroup
	err := s.serve(ctx, conn, qlen, inflight, send, queue, &wg, log)
	wg.Wait()
	close(out)
	<-writerDone
	conn.Close()
	if err == nil && writeErr != nil {
		err = writeErr
	}
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Message buffers. Every message handed to a connection's writer belongs
// to it from then on (it is written later, on the writer's goroutine, so
// no sender may touch it again); once written, buffers of the pooled sizes
// are kept for the next messages. Streams of many small messages (a fetch
// of a large subtree) then allocate little, which keeps the garbage, and
// the heap the collector lets grow, small.
var msgPools = [...]struct {
	size int
	pool sync.Pool
}{{size: 256}, {size: 1024}, {size: 4096}}

// msgBuf returns an empty buffer with room for size bytes.
func msgBuf(size int) []byte {
	for i := range msgPools {
		if size <= msgPools[i].size {
			if b, ok := msgPools[i].pool.Get().([]byte); ok {
				return b[:0]
			}
			return make([]byte, 0, msgPools[i].size)
		}
	}
	return make([]byte, 0, size)
}

// putMsg keeps a written message's buffer if it has a pooled size.
func putMsg(b []byte) {
	for i := range msgPools {
		if cap(b) == msgPools[i].size {
			//lint:ignore SA6002 a 24-byte slice header per put, against a new buffer per message
			msgPools[i].pool.Put(b[:0])
			return
		}
	}
}

// writeBuffers are the connections' write buffers, shared: a connection
// takes one when it has something to send and gives it back once sent.
var writeBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}

// DefaultMaxStreams is Server.MaxStreams's default.
const DefaultMaxStreams = 256

// DefaultMaxQueued is Server.MaxQueued's default.
const DefaultMaxQueued = 4 << 20

// isStream reports whether action answers with a stream of messages.
// inlineAction reports whether action is answered at once by the tree
// (no waiting on other clients or timers): the reader may run it itself.
func inlineAction(action string) bool {
	switch action {
	case "get_value", "set_value", "delete_value", "get_tock":
		return true
	}
	return false
}

func isStream(action string) bool {
	return action == "watch" || action == "get_tree" || action == "msg_monitor"
}

// serve reads and answers requests until the client hangs up or ctx ends.
// send writes a message or queues it for the writer; queue always queues
// (the reader's batches: the reader must not wait on a client that sends
// before it reads).
func (s *Server) serve(ctx context.Context, conn io.Reader, qlen, inflight int, send, queue func([]byte), wg *sync.WaitGroup, log *slog.Logger) error {
	h, err := s.Tree.Hello(ctx)
	if err != nil {
		send(AppendFatal(nil, tree.KindOf(err), err.Error()))
		return fmt.Errorf("kvproto: greeting: %w", err)
	}
	h.QLen = uint64(qlen)
	send(AppendHello(nil, h))

	r := NewReader(conn, s.MaxMessage)
	if s.Budget != nil {
		r.SetBudget(ctx, s.Budget)
		defer r.Release()
	}
	sem := make(chan struct{}, inflight)
	maxStreams := s.MaxStreams
	if maxStreams <= 0 {
		maxStreams = DefaultMaxStreams
	}
	tasks := newTasks()
	win := newWindow()
	// Once nothing more is read no ack or stop can come: watches and
	// monitors end, get_tree sends the rest unthrottled, and requests still
	// running are answered.
	defer func() {
		win.unlimit()
		tasks.stopEndless()
	}()
	var root tree.Path // the connection's root (the root action); only this loop touches it
	quick := false
	if q, ok := s.Tree.(QuickWriter); ok {
		quick = q.QuickWrites()
	}
	// Replies the reader made itself to requests that came together, sent
	// in one write before the reader waits for more (or once 16 KiB have
	// gathered), by the writer goroutine: a client may send a long run of
	// requests before it reads any reply.
	var batch []byte
	flush := func() {
		if len(batch) > 0 {
			queue(batch)
			batch = nil
		}
	}
	defer flush()
	r.OnWait(flush)
	pool := newWorkers(8)
	defer pool.close()
	// Watches of a Subscriber tree are served by one goroutine, the pump;
	// when the connection ends it closes them all (its stop is deferred
	// last, so it runs first).
	sub, subscribes := s.Tree.(Subscriber)
	var pm *pump
	if subscribes {
		pm = newPump(win, send)
		wg.Add(1)
		go func() {
			defer wg.Done()
			pm.run()
		}()
		defer pm.stop()
	}
	for {
		msg, err := r.Next()
		if err != nil {
			if HangUp(err) {
				return nil // the client is gone: its business, not an error
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var fe *FrameError
			var ex *budget.ExhaustedError
			var ne net.Error
			switch {
			case errors.As(err, &fe):
				send(AppendFatal(nil, tree.KindInvalid, fe.Error()))
			case errors.As(err, &ex), errors.As(err, &ne) && ne.Timeout():
				send(AppendFatal(nil, tree.KindUnavailable, err.Error()))
			}
			log.Info("kvproto: closing connection", "error", err)
			return err
		}
		req, err := ParseRequest(msg)
		if err != nil {
			var re *RequestError
			if !errors.As(err, &re) || !re.HasSeq {
				send(AppendFatal(nil, tree.KindInvalid, err.Error()))
				log.Info("kvproto: closing connection", "error", err)
				return err
			}
		}
		if err == nil && req.Seq == 0 {
			// The client's answer to the greeting ({seq: 0, qlen}).
			if req.HasQLen {
				win.setQLen(req.QLen)
			}
			continue
		}
		if err == nil && req.Action == "" && req.State != "" {
			if req.State == "ack" {
				win.ack(req.Seq, req.Ack)
			}
			continue
		}
		if tasks.isRunning(req.Seq) { // (a request that did not parse has its seq too)
			// A seq names its request until that ends (replies, acks and
			// stop go by it): a second one would take over its name.
			err = &RequestError{Seq: req.Seq, HasSeq: true, Kind: tree.KindInvalid,
				Msg: fmt.Sprintf("seq %d is still in use by a running request", req.Seq)}
			send(s.handle(ctx, req, err))
			continue
		}
		if err == nil {
			req, root, err = reroot(req, root)
		}
		if err == nil {
			req = internalize(req)
		}
		stream := err == nil && isStream(req.Action)
		if err == nil && inlineAction(req.Action) && (quick || r.Buffered() == 0 && tasks.idle()) {
			// Answered here, on the reader, without handing the request
			// to a worker goroutine and back: a client that waits for
			// each reply before it sends the next request (nothing else
			// is running, nothing more has come), or any client of a
			// QuickWriter. A client that sends more meanwhile waits for
			// this one only as long as the tree takes to answer.
			reply := s.handle(withRoot(ctx, root), req, nil)
			if len(batch) == 0 && r.Buffered() == 0 {
				send(reply)
				continue
			}
			if batch == nil {
				batch = msgBuf(4096)
			}
			batch = append(batch, reply...)
			putMsg(reply)
			if len(batch) >= 16<<10 || r.Buffered() == 0 {
				flush()
			}
			continue
		}
		var pos *flowPos
		if stream {
			if tasks.openStreams() >= maxStreams {
				send(s.handle(ctx, req, &RequestError{Seq: req.Seq, HasSeq: true, Kind: tree.KindUnavailable,
					Msg: fmt.Sprintf("%s: this connection has %d streams open, the most allowed: stop one first", req.Action, maxStreams)}))
				continue
			}
			// Opened here, before the next request is read, so that an
			// ack that follows at once finds it.
			pos = win.begin(req.Seq)
		} else {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err == nil && req.Action == "watch" && subscribes {
			// Subscribed here, on the reader (a short call to the tree),
			// not on a goroutine of its own, and without a context of its
			// own: a client opening hundreds of watches at once costs no
			// goroutine each. The pump owns the watch from here.
			s.subscribe(ctx, req, sub, pm, pos, tasks)
			continue
		}
		endless := err == nil && (req.Action == "watch" || req.Action == "msg_monitor")
		tctx, done := tasks.start(ctx, req.Seq, endless, stream)
		tctx = withRoot(tctx, root)
		wg.Add(1)
		{
			req, err := req, err // the closure's own: the loop's stay on the stack
			pool.run(func() {
				defer wg.Done()
				if stream {
					defer win.end(req.Seq, pos)
				} else {
					defer func() { <-sem }()
				}
				defer done()
				// A single reply goes out after the request is forgotten, so
				// that a client may reuse its seq as soon as it has the reply.
				reply := func(msg []byte) {
					done()
					send(msg)
				}
				switch {
				case err != nil:
					reply(s.handle(tctx, req, err))
				case req.Action == "watch":
					s.watch(tctx, req, flowSend(tctx, win, pos, send))
				case req.Action == "get_tree":
					s.getTree(tctx, req, flowSend(tctx, win, pos, send))
				case req.Action == "msg_monitor":
					s.msgMonitor(tctx, req, flowSend(tctx, win, pos, send))
				case req.Action == "stop":
					reply(s.stop(tctx, req, tasks))
				default:
					reply(s.handle(tctx, req, nil))
				}
			})
		}
	}
}

// workers runs a connection's requests on goroutines that are kept for
// the next request once done (up to maxIdle of them), rather than a new
// goroutine per request: a fresh goroutine grows its stack on every
// request, which costs more than the request itself on a busy connection.
type workers struct {
	work    chan func() // unbuffered: a send succeeds only to an idle worker
	idle    atomic.Int32
	maxIdle int32
}

func newWorkers(maxIdle int) *workers {
	return &workers{work: make(chan func()), maxIdle: int32(maxIdle)}
}

// run runs f on an idle worker, or on a new one.
func (p *workers) run(f func()) {
	select {
	case p.work <- f:
	default:
		go p.loop(f)
	}
}

func (p *workers) loop(f func()) {
	for {
		f()
		if p.idle.Add(1) > p.maxIdle {
			p.idle.Add(-1)
			return
		}
		var ok bool
		f, ok = <-p.work
		p.idle.Add(-1)
		if !ok {
			return
		}
	}
}

// close lets the idle workers end; run must not be called after it.
func (p *workers) close() { close(p.work) }

// handle runs one request and returns its reply. perr is the parse error.
func (s *Server) handle(ctx context.Context, req Request, perr error) []byte {
	if perr == nil {
		var reply []byte
		reply, perr = s.dispatch(ctx, req)
		if perr == nil {
			return reply
		}
	}
	kind := tree.KindOf(perr)
	var re *RequestError
	if errors.As(perr, &re) {
		kind = re.Kind
	}
	tock, err := s.Tree.Tock(ctx)
	if err != nil {
		tock = 0
	}
	return AppendError(nil, req.Seq, kind, perr.Error(), tock)
}

// invalid makes a RequestError of kind invalid for req.
func invalid(req Request, format string, args ...any) error {
	return &RequestError{Seq: req.Seq, HasSeq: true, Kind: tree.KindInvalid, Msg: fmt.Sprintf(format, args...)}
}

// actionsLater are MoaT-KV actions this package does not serve yet.
var actionsLater = map[string]bool{
	"auth": true, "auth_get": true, "auth_list": true, "auth_set": true,
	"auth_info": true, "set_auth_typ": true, "diffie_hellman": true,
}

func (s *Server) dispatch(ctx context.Context, req Request) ([]byte, error) {
	switch req.Action {
	case "get_value":
		return s.getValue(ctx, req)
	case "set_value", "delete_value":
		return s.write(ctx, req)
	case "get_tock":
		tock, err := s.Tree.Tock(ctx)
		if err != nil {
			return nil, err
		}
		return appendResult(nil, "tock", func(b []byte) []byte { return msgp.AppendUint64(b, tock) }, req.Seq, 0, false), nil
	case "enum", "enumerate":
		return s.enum(ctx, req)
	case "get_state":
		return s.getState(ctx, req)
	case "update":
		if len(rootOf(ctx)) > 0 {
			return nil, &RequestError{Seq: req.Seq, HasSeq: true, Kind: tree.KindUnavailable, Msg: "update is not available after root"}
		}
		return s.update(ctx, req)
	case "fake_info":
		return s.fakeInfo(ctx, req)
	case "fake_info_send":
		return s.fakeInfoSend(ctx, req)
	case "kill_node":
		return s.killNode(ctx, req)
	case "check_deleted":
		return s.checkDeleted(ctx, req)
	case "delete_tree":
		return s.deleteTree(ctx, req)
	case "save":
		return s.save(ctx, req)
	case "log":
		return s.changeLog(ctx, req)
	case "enum_node":
		return s.enumNode(ctx, req)
	case "test_acl":
		return s.testACL(ctx, req)
	case "root":
		return s.chroot(ctx, req)
	case "msg_send":
		return s.msgSend(ctx, req)
	case "":
		return nil, invalid(req, "request has no action")
	}
	if actionsLater[req.Action] {
		return nil, &RequestError{Seq: req.Seq, HasSeq: true, Kind: tree.KindUnavailable,
			Msg: fmt.Sprintf("action %q is not implemented by this server", req.Action)}
	}
	return nil, invalid(req, "unknown action %q", req.Action)
}

func (s *Server) getValue(ctx context.Context, req Request) ([]byte, error) {
	if !req.HasPath {
		return s.getByTick(ctx, req)
	}
	e, err := s.Tree.Get(ctx, req.Path)
	if err != nil {
		return nil, err
	}
	var tock uint64
	if !e.Exists() {
		if tock, err = s.Tree.Tock(ctx); err != nil {
			return nil, err
		}
	}
	return AppendGetReply(nil, req.Seq, e, req.NChain, tock), nil
}

func (s *Server) write(ctx context.Context, req Request) ([]byte, error) {
	if !req.HasPath {
		return nil, invalid(req, "%s: no path", req.Action)
	}
	var c Cond
	if req.HasChain {
		if len(req.Chain) == 0 {
			c.MustNotExist = true
		} else {
			h := req.Chain[0]
			c.Head = &h
		}
	}
	c.Prev = req.Prev
	c.Idem = req.Idem
	nchain := 1 // MoaT-KV's server default for writes
	if req.HasNChain {
		nchain = req.NChain
	}
	var res Result
	var err error
	var changed bool
	if req.Action == "set_value" {
		if req.Value == nil {
			return nil, invalid(req, "set_value: no value")
		}
		res, err = s.Tree.Set(ctx, req.Path, req.Value, c)
		// MoaT-KV: changed = (old value != new value).
		changed = res.Prev == nil || !bytes.Equal(res.Prev, req.Value)
	} else {
		if req.Value != nil {
			return nil, invalid(req, "delete_value: unexpected value")
		}
		res, err = s.Tree.Delete(ctx, req.Path, c)
		if errors.Is(err, tree.ErrNotFound) {
			// Nothing to delete (the conditions held): MoaT-KV answers
			// changed: false; edgekv writes no tombstone for it.
			tock, err := s.Tree.Tock(ctx)
			if err != nil {
				return nil, err
			}
			return AppendWriteReply(nil, req.Seq, false, Result{Tock: tock}, 0, false), nil
		}
		changed = res.Prev != nil
	}
	if err != nil {
		return nil, err
	}
	// MoaT-KV returns the old value only when the client sent neither chain
	// nor prev.
	withPrev := !req.HasChain && req.Prev == nil
	return AppendWriteReply(nil, req.Seq, changed, res, nchain, withPrev), nil
}

// HangUp reports whether err is a client going away: the end of its
// stream, or a reset (every client that closes with replies it did not
// read, as MoaT-KV's CLI does with its config watch, resets the
// connection).
func HangUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}
