package kvclient

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/tree"
)

// Many callers on one connection: every request goes out whole and in
// one piece (the writer combines them), and every caller gets its own
// reply.
func TestConcurrentCallsOneConnection(t *testing.T) {
	s := startMemServer(t, nil)
	c, err := Dial(context.Background(), s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	const callers, each = 32, 150
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				p := tree.Path{tree.Str("c"), tree.Int(int64(g)), tree.Int(int64(i % 7))}
				v := msgp.AppendString(nil, fmt.Sprintf("%d-%d", g, i))
				if _, err := c.Set(ctx, p, v, WriteOpts{}); err != nil {
					errs <- fmt.Errorf("caller %d set %d: %w", g, i, err)
					return
				}
				e, found, err := c.Get(ctx, p, 0)
				if err != nil || !found || !bytes.Equal(e.Value, v) {
					errs <- fmt.Errorf("caller %d get %d: %v %v % x, want % x", g, i, found, err, e.Value, v)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := s.tree.applied(); got != callers*each {
		t.Errorf("%d writes applied, want %d", got, callers*each)
	}
}
