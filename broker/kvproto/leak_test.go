package kvproto

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a goroutine of the tests outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
