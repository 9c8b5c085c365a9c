package kvclient

import (
	"context"

	"github.com/tinylib/msgp/msgp"
)

// replies is one running stream's replies (watch, get_tree, msg_monitor),
// read with next, which also keeps the server's flow-control window open.
type replies struct {
	c     *Client
	seq   uint64
	ch    chan reply
	stop  bool   // ask the server to stop the stream when closed early
	acked uint64 // highest wseq acknowledged
}

// openStream sends a stream request (see start). With stop, close asks
// the server to stop the stream (an endless one: watch, msg_monitor).
func (c *Client) openStream(n uint32, build func([]byte) []byte, stop bool) (*replies, error) {
	seq, ch, err := c.start(n, build, 1024)
	if err != nil {
		return nil, err
	}
	return &replies{c: c, seq: seq, ch: ch, stop: stop}, nil
}

// next returns the stream's next reply, or the connection's end or ctx's.
// Once more than a third of the window has been read it acknowledges.
func (s *replies) next(ctx context.Context) (reply, error) {
	var r reply
	var ok bool
	select {
	case r, ok = <-s.ch:
		if !ok {
			return nil, s.c.closedErr()
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if wseq, ok := r.uint("wseq"); ok && s.c.qlen > 0 && wseq > s.acked+s.c.qlen/3 {
		s.c.ack(s.seq, wseq)
		s.acked = wseq
	}
	return r, nil
}

// close forgets the stream and, for an endless one, tells the server to
// stop it (best effort: the answer is not awaited).
func (s *replies) close() {
	s.c.finish(s.seq)
	if !s.stop {
		return
	}
	if st, _, err := s.c.start(2, func(b []byte) []byte {
		b = msgp.AppendUint64(appendPair(b, "task"), s.seq)
		return msgp.AppendString(appendPair(b, "action"), "stop")
	}, 1); err == nil {
		s.c.finish(st)
	}
}
