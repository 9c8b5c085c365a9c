package edgekv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
	"github.com/edgekv/edgekv/tree/wire"
)

// changeLog keeps MoaT-KV's change log (reference spec §8, the client
// protocol's `log` action): a file in the dump directory that starts with
// a state record (and with fetch, every entry, the meta tree included)
// and then gets every change as an entry record ({value?, chain, tock,
// path, depth}; a deletion has no value), which `edgekv dump load` and
// MoaT-KV's loader read. A new log replaces the old one once it is live;
// a `log` with no path stops logging. Its goroutine belongs to the node.
type changeLog struct {
	n    *Node
	reqs chan logReq
}

type logReq struct {
	name  string
	fetch bool
	reply chan error
}

func newChangeLog(n *Node) *changeLog { return &changeLog{n: n, reqs: make(chan logReq)} }

// ChangeLog implements kvproto.ChangeLogger.
func (k kvTree) ChangeLog(ctx context.Context, name string, fetch bool) error {
	if name != "" {
		if err := dumpName("log", name); err != nil {
			return err
		}
	}
	r := logReq{name: name, fetch: fetch, reply: make(chan error, 1)}
	select {
	case k.n.clog.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dumpName checks a file name for the dump directory.
func dumpName(what, name string) error {
	if name != filepath.Base(name) || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("%w: %s: %q must be a plain file name (no directory, not starting with a dot)", tree.ErrInvalidValue, what, name)
	}
	if strings.HasSuffix(name, ".ekv") || strings.HasSuffix(name, ".ekv.tmp") {
		return fmt.Errorf("%w: %s: %q: names ending in .ekv are the store's", tree.ErrInvalidValue, what, name)
	}
	return nil
}

// logFile is one open change log.
type logFile struct {
	f      *os.File
	w      *bufio.Writer
	dkv    wire.DKVWriter
	sub    *node.Subscription
	notify chan struct{}
	buf    []byte
	err    error // the first write error: the log stops there
}

// Run serves log requests and writes the current log until ctx ends.
func (cl *changeLog) Run(ctx context.Context) error {
	var cur *logFile
	defer func() {
		if cur != nil {
			cur.close()
		}
	}()
	flush := time.NewTicker(time.Second)
	defer flush.Stop()
	for {
		var notify chan struct{}
		if cur != nil {
			notify = cur.notify
		}
		select {
		case <-ctx.Done():
			return nil
		case r := <-cl.reqs:
			if r.name == "" { // stop logging
				if cur != nil {
					cur.close()
					cur = nil
				}
				r.reply <- nil
				continue
			}
			nf, err := cl.open(ctx, r.name, r.fetch)
			if err != nil {
				r.reply <- err
				continue
			}
			if cur != nil { // the new log is live: the old one closes
				cur.close()
			}
			cur = nf
			r.reply <- nil
		case <-notify:
			cur.drain()
			if cur.err != nil {
				cl.n.log.Warn("change log stopped", "file", cur.f.Name(), "error", cur.err)
				cur.close()
				cur = nil
			}
		case <-flush.C:
			if cur != nil {
				cur.w.Flush()
			}
		}
	}
}

// open starts the log name: its state record, then (registered in the
// same step as the first read, so nothing is missed) with fetch every
// entry, then the changes.
func (cl *changeLog) open(ctx context.Context, name string, fetch bool) (*logFile, error) {
	dir := cl.n.cfg.Data.DumpDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("log: dump directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("%w: log: %s exists", tree.ErrConflict, path)
	}
	if err != nil {
		return nil, diskError(path, err)
	}
	lf := &logFile{f: f, w: bufio.NewWriterSize(f, 64<<10), notify: make(chan struct{}, 1)}
	st, err := cl.n.eng.StateRecord(ctx)
	if err == nil {
		_, err = lf.w.Write(st)
	}
	if err == nil {
		lf.sub, err = cl.n.eng.Subscribe(ctx, tree.Path{}, fetch, func() {
			select {
			case lf.notify <- struct{}{}:
			default:
			}
		})
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	lf.drain() // with fetch, the tree: it is in the file before `log` answers
	if lf.err == nil {
		lf.err = lf.w.Flush()
	}
	if lf.err != nil {
		lf.close()
		os.Remove(path)
		return nil, diskError(path, lf.err)
	}
	return lf, nil
}

// drain writes what the subscription has.
func (lf *logFile) drain() {
	err := lf.sub.Drain(func(it node.Item) bool {
		if it.UpToDate {
			return true
		}
		lf.buf = lf.dkv.AppendEntry(lf.buf[:0], tree.Event{Path: it.Path, Value: it.Entry.Value, Chain: it.Entry.Chain, Tock: it.Entry.Tock})
		if _, err := lf.w.Write(lf.buf); err != nil {
			lf.err = err
			return false
		}
		return true
	})
	if err != nil && lf.err == nil {
		lf.err = err
	}
}

func (lf *logFile) close() {
	if lf.sub != nil {
		lf.sub.Close()
	}
	lf.w.Flush()
	lf.f.Sync()
	lf.f.Close()
}
