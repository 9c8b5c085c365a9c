package broker

import (
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
)

func TestRetainedExpiryStopped(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{})
	if !stopRetainedExpiry(srv) {
		t.Fatal("mochi's retained-expiry ticker was not found: mochi's Server changed shape; revisit retainexpiry.go")
	}
}
