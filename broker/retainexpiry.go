package broker

import (
	"reflect"
	"time"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// stopRetainedExpiry stops mochi's once-a-second sweep for expired retained
// messages. The sweep copies the whole retained store under its lock every
// second (packets.Packets.GetAll), which stalls every retained publish for
// as long as the copy takes and grows with the tree: tens of milliseconds
// at 100,000 entries. edgekv's retained messages never expire
// (MaximumMessageExpiryInterval is 0), so the sweep has nothing to do for
// them; the price is that a plain client's retained message on a non-KV
// topic with a v5 message-expiry interval is kept past its expiry.
//
// mochi offers no option for the ticker, so this reaches into the
// unexported field; TestRetainedExpiryStopped fails if mochi changes shape.
func stopRetainedExpiry(srv *mqtt.Server) bool {
	v := reflect.ValueOf(srv).Elem().FieldByName("loop")
	if !v.IsValid() || v.Kind() != reflect.Pointer || v.IsNil() {
		return false
	}
	f := v.Elem().FieldByName("retainedExpiry")
	if !f.IsValid() || f.Type() != reflect.TypeOf((*time.Ticker)(nil)) {
		return false
	}
	t := *(**time.Ticker)(unsafe.Pointer(f.UnsafeAddr()))
	if t == nil {
		return false
	}
	t.Stop()
	return true
}
