package tree

import (
	"errors"
	"fmt"
	"testing"
)

// TestKindOf: every sentinel has its kind, also wrapped, and every kind
// has a name the edges can send.
func TestKindOf(t *testing.T) {
	tests := []struct {
		err  error
		want ErrorKind
	}{
		{ErrInvalidPath, KindInvalid},
		{ErrInvalidValue, KindInvalid},
		{ErrMalformed, KindInvalid},
		{ErrNotFound, KindNotFound},
		{ErrConflict, KindConflict},
		{ErrUnavailable, KindUnavailable},
		{ErrPermission, KindPermission},
		{ErrInternal, KindInternalErr},
		{errors.New("anything else"), KindInternalErr},
		{nil, KindUnknown},
	}
	for _, tt := range tests {
		if got := KindOf(tt.err); got != tt.want {
			t.Errorf("KindOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
		if tt.err != nil {
			if got := KindOf(fmt.Errorf("context: %w", tt.err)); got != tt.want {
				t.Errorf("KindOf(wrapped %v) = %v, want %v", tt.err, got, tt.want)
			}
		}
	}
	for k := KindUnknown; k <= KindInternalErr; k++ {
		if k.String() == "" {
			t.Errorf("kind %d has no name", k)
		}
	}
	if KindUnavailable.String() != "unavailable" || KindPermission.String() != "permission" {
		t.Errorf("names: %q %q", KindUnavailable, KindPermission)
	}
}
