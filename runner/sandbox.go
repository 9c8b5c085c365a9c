package runner

import (
	"context"
	"errors"
	"fmt"
	"runtime/metrics"
	"strings"
	"time"

	"github.com/d5/tengo/v2"
)

// Guards for what the sandbox's own limits (objects per activation,
// 1 MiB strings, the activation's time) do not catch: values that hold
// themselves, values far larger than their object count says, and a heap
// that grows by more than Limits.MaxHeap while one activation runs.

// errCycle is a value that holds itself.
var errCycle = errors.New("the value holds itself (a cycle)")

// measure walks o and returns its size in bytes (roughly: what it holds
// plus 16 per element), or an error for a cycle or once the size passes
// budget. It visits each element once per path, so a value built by
// doubling (a = [a, a], 30 times) is stopped by the budget, not walked.
func measure(o tengo.Object, budget int) (int, error) {
	size := 0
	var onPath []tengo.Object
	var walk func(o tengo.Object) error
	walk = func(o tengo.Object) error {
		size += 16
		if size > budget {
			return fmt.Errorf("the value is larger than %d bytes", budget)
		}
		var elems []tengo.Object
		switch x := o.(type) {
		case *tengo.String:
			size += len(x.Value)
		case *tengo.Bytes:
			size += len(x.Value)
		case *tengo.Array:
			elems = x.Value
		case *tengo.ImmutableArray:
			elems = x.Value
		case *tengo.Map:
			for k, v := range x.Value {
				size += len(k)
				elems = append(elems, v)
			}
		case *tengo.ImmutableMap:
			for k, v := range x.Value {
				size += len(k)
				elems = append(elems, v)
			}
		case *tengo.Error:
			elems = []tengo.Object{x.Value}
		default:
			return nil
		}
		if size > budget {
			return fmt.Errorf("the value is larger than %d bytes", budget)
		}
		if len(elems) == 0 {
			return nil
		}
		for _, p := range onPath {
			if p == o {
				return errCycle
			}
		}
		onPath = append(onPath, o)
		defer func() { onPath = onPath[:len(onPath)-1] }()
		for _, e := range elems {
			if err := walk(e); err != nil {
				return err
			}
		}
		return nil
	}
	err := walk(o)
	return size, err
}

// maxValueBytes bounds what one value passed to the kv module, printed,
// encoded as JSON or kept in state may hold.
const maxValueBytes = 4 << 20

// guarded wraps a standard function so that its arguments are measured
// first: a cycle or a value beyond maxValueBytes is an error, not a walk
// of the Go stack until the node dies.
func guarded(name string, f tengo.CallableFunc) tengo.CallableFunc {
	return func(args ...tengo.Object) (tengo.Object, error) {
		for i, a := range args {
			if _, err := measure(a, maxValueBytes); err != nil {
				return nil, fmt.Errorf("%s: argument %d: %w", name, i+1, err)
			}
		}
		return f(args...)
	}
}

// safeReplace is text.replace(s, old, new, n) with its result's size
// checked before anything is allocated (tengo's reserves the whole result
// first).
func safeReplace(args ...tengo.Object) (tengo.Object, error) {
	if len(args) != 4 {
		return nil, tengo.ErrWrongNumArguments
	}
	var s [3]string
	for i := range 3 {
		v, ok := args[i].(*tengo.String)
		if !ok {
			return nil, tengo.ErrInvalidArgumentType{Name: []string{"first", "second", "third"}[i], Expected: "string", Found: args[i].TypeName()}
		}
		s[i] = v.Value
	}
	n, ok := tengo.ToInt(args[3])
	if !ok {
		return nil, tengo.ErrInvalidArgumentType{Name: "fourth", Expected: "int(compatible)", Found: args[3].TypeName()}
	}
	count := strings.Count(s[0], s[1])
	if n >= 0 && n < count {
		count = n
	}
	if int64(len(s[0]))+int64(count)*(int64(len(s[2]))-int64(len(s[1]))) > int64(tengo.MaxStringLen) {
		return nil, tengo.ErrStringLimit
	}
	return &tengo.String{Value: strings.Replace(s[0], s[1], s[2], n)}, nil
}

// heapBytes is the Go heap's live objects, in bytes.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// errHeap is why an activation was stopped by its heap watch.
type errHeap struct{ limit uint64 }

func (e errHeap) Error() string {
	return fmt.Sprintf("activation grew the node's heap by more than %d MiB", e.limit>>20)
}

// heapWatchAfter is how long an activation runs before its heap is
// watched.
const heapWatchAfter = 20 * time.Millisecond

// watchHeap stops an activation (cancel with errHeap) whose run makes the
// heap grow by more than limit, looking every 10 ms from now on (it is
// started heapWatchAfter into the run). It returns when ctx ends.
func watchHeap(ctx context.Context, cancel context.CancelCauseFunc, limit uint64) {
	if ctx.Err() != nil {
		return
	}
	base := heapBytes()
	tk := time.NewTicker(10 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			if h := heapBytes(); h > base && h-base > limit {
				cancel(errHeap{limit})
				return
			}
		}
	}
}
