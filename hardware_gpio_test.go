package edgekv_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv"
	"github.com/edgekv/edgekv/boards"
	"github.com/edgekv/edgekv/tree/node"
)

// fakePins hands out periph's gpiotest pins, one per board pin, the way
// the character-device driver would hand out lines.
type fakePins struct {
	mu   sync.Mutex
	pins map[string]*gpiotest.Pin
}

func (f *fakePins) open(p boards.Pin) (gpio.PinIO, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pins == nil {
		f.pins = map[string]*gpiotest.Pin{}
	}
	if pin, ok := f.pins[p.Name]; ok {
		return pin, nil
	}
	pin := &gpiotest.Pin{N: p.Name, Num: p.Line, EdgesChan: make(chan gpio.Level, 16)}
	f.pins[p.Name] = pin
	return pin, nil
}

func (f *fakePins) get(name string) *gpiotest.Pin {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pins[name]
}

// TestHardwareGPIO: a Raspberry Pi 4's pins through periph (gpiotest pins
// in place of /dev/gpiochip0): an input's bouncing edges are written once,
// after the debounce time, with its pull set as configured; an output
// follows its path and is low (safe) at start and at stop.
func TestHardwareGPIO(t *testing.T) {
	fp := &fakePins{}
	c := config(t, "pi")
	c.Board = "rpi4"
	debounce := boards.Duration(50 * time.Millisecond)
	c.Hardware = boards.Hardware{
		Inputs:  []boards.Input{{Pin: "GPIO17", Path: "pi.button", Pull: "up", Debounce: &debounce}},
		Outputs: []boards.Output{{Pin: "GPIO27", Path: "pi.relay"}},
	}
	if err := c.ValidateWith(edgekv.CheckTreePath); err != nil {
		t.Fatal(err)
	}
	n, err := edgekv.New(c, edgekv.Options{Pins: fp.open})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-n.Ready()

	button, relay := fp.get("GPIO17"), fp.get("GPIO27")
	if button == nil || relay == nil {
		t.Fatal("pins not opened through Options.Pins")
	}
	if button.Pull() != gpio.PullUp {
		t.Errorf("button pull %v, want up", button.Pull())
	}
	// Pulled up and not pressed: high.
	eventually(t, "the button's first level", func() bool { return entry(t, n, "pi.button")["value"] == true })

	// Count what is written at pi.button from now on.
	var mu sync.Mutex
	var values []any
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	go n.Engine().Watch(wctx, mustPath(t, "pi.button"), false, func(it node.Item) error {
		m, _, _ := msgp.ReadMapStrIntfBytes(it.Entry.Value, nil)
		mu.Lock()
		values = append(values, m["value"])
		mu.Unlock()
		return nil
	})
	time.Sleep(50 * time.Millisecond)
	// A press (to ground) that bounces: low, high, low within 3 ms
	// (gpiotest's pin takes each edge's level when it is waited for).
	for _, l := range []gpio.Level{gpio.Low, gpio.High, gpio.Low} {
		button.EdgesChan <- l
		time.Sleep(time.Millisecond)
	}
	eventually(t, "the press", func() bool { return entry(t, n, "pi.button")["value"] == false })
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	if len(values) != 1 || values[0] != false {
		t.Errorf("a bouncing press wrote %v, want one false", values)
	}
	mu.Unlock()

	level := func() gpio.Level { relay.Lock(); defer relay.Unlock(); return relay.L }
	eventually(t, "the relay low at start", func() bool { return entry(t, n, "pi.relay.state")["reason"] == "start" })
	for i, v := range []bool{true, false, true} {
		if _, err := n.Engine().Set(context.Background(), mustPath(t, "pi.relay"), msgp.AppendBool(nil, v), node.Cond{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, fmt.Sprintf("step %d: the relay pin", i), func() bool { return level() == gpio.Level(v) })
	}
	cancel()
	<-done
	done <- nil // for the deferred receive
	if level() != gpio.Low {
		t.Error("the relay stayed high after the node stopped")
	}
}
