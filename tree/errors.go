package tree

import "errors"

// Sentinel errors. Callers test them with errors.Is; the edges map them to
// MQTT reason codes and client-protocol error kinds (see ErrorKind).
var (
	ErrInvalidPath  = errors.New("tree: invalid path")
	ErrInvalidValue = errors.New("tree: invalid value")
	ErrNotFound     = errors.New("tree: not found")
	ErrConflict     = errors.New("tree: conflict")
	ErrMalformed    = errors.New("tree: malformed input")
	ErrInternal     = errors.New("tree: internal error")
)

// Kind of an error, as the edges report it.
type ErrorKind uint8

// Error kinds.
const (
	KindUnknown ErrorKind = iota
	KindInvalid
	KindNotFound
	KindPermission
	KindConflict
	KindUnavailable
	KindInternalErr
)

func (k ErrorKind) String() string {
	return [...]string{"unknown", "invalid", "not found", "permission", "conflict", "unavailable", "internal"}[k]
}

// KindOf classifies err.
func KindOf(err error) ErrorKind {
	switch {
	case err == nil:
		return KindUnknown
	case errors.Is(err, ErrInvalidPath), errors.Is(err, ErrInvalidValue), errors.Is(err, ErrMalformed):
		return KindInvalid
	case errors.Is(err, ErrNotFound):
		return KindNotFound
	case errors.Is(err, ErrConflict):
		return KindConflict
	}
	return KindInternalErr
}
