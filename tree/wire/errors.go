package wire

import (
	"fmt"
	"strings"

	"github.com/edgekv/edgekv/tree"
)

// Error is a decoding error. It wraps tree.ErrMalformed (and the cause, if
// any, such as a path error from package tree), so callers test it with
// errors.Is(err, tree.ErrMalformed).
type Error struct {
	// Msg says what was wrong and where, outermost context first, e.g.
	// `update: key "prev": link 3: tick: want integer, got str`.
	Msg string
	// Offset is the byte offset in the decoder's input where the offending
	// item starts.
	Offset int
	// Err is the underlying cause, or nil.
	Err error

	// While the error travels up: context innermost first, the problem, and
	// how many input bytes were left where it happened.
	ctx     []string
	problem string
	rem     int
}

func (e *Error) Error() string {
	return fmt.Sprintf("wire: %s (at byte %d)", e.Msg, e.Offset)
}

// Unwrap returns tree.ErrMalformed and the cause, if any.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{tree.ErrMalformed, e.Err}
	}
	return []error{tree.ErrMalformed}
}

// fail makes an error about the item at the start of b.
func fail(b []byte, format string, args ...any) *Error {
	return &Error{problem: fmt.Sprintf(format, args...), rem: len(b)}
}

// failCause makes an error about the item at the start of b with a cause.
func failCause(b []byte, cause error, format string, args ...any) *Error {
	e := fail(b, format, args...)
	e.Err = cause
	return e
}

// in adds one level of context (outside the existing ones).
func (e *Error) in(format string, args ...any) *Error {
	if len(args) == 0 {
		e.ctx = append(e.ctx, format)
	} else {
		e.ctx = append(e.ctx, fmt.Sprintf(format, args...))
	}
	return e
}

// inKey adds `key "k"` context.
func (e *Error) inKey(k string) *Error { return e.in("key %q", k) }

// finish completes the error for an input of inputLen bytes decoded as
// what ("update", "info", …).
func (e *Error) finish(what string, inputLen int) *Error {
	var sb strings.Builder
	sb.WriteString(what)
	for i := len(e.ctx) - 1; i >= 0; i-- {
		sb.WriteString(": ")
		sb.WriteString(e.ctx[i])
	}
	sb.WriteString(": ")
	sb.WriteString(e.problem)
	e.Msg = sb.String()
	e.Offset = inputLen - e.rem
	if e.Offset < 0 {
		e.Offset = 0
	}
	return e
}
