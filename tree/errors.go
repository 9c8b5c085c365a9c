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
	// ErrUnavailable: the request cannot be served now (the node is
	// stopping, its store failed, an action is not offered); trying later
	// or elsewhere may work.
	ErrUnavailable = errors.New("tree: unavailable")
	// ErrPermission: the caller may not do this.
	ErrPermission = errors.New("tree: permission denied")
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
	case errors.Is(err, ErrUnavailable):
		return KindUnavailable
	case errors.Is(err, ErrPermission):
		return KindPermission
	}
	return KindInternalErr
}
