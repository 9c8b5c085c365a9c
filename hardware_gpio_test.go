package edgekv_test

import (
	"context"
	"fmt"
	"net"
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

// TestHardwareGPIOMesh: an output on a Raspberry Pi's pin (gpiotest) follows
// values written on another node of the mesh: the board that owns the pin
// drives it, whichever node wrote the value.
func TestHardwareGPIOMesh(t *testing.T) {
	fp := &fakePins{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	piAddr := ln.Addr().String()
	ln.Close()
	pi := config(t, "pi")
	pi.Board = "rpi4"
	pi.Listen.MQTT = []string{piAddr}
	pi.PeerUsers = []boards.PeerUser{{Username: "office", Password: "pw"}}
	pi.Hardware = boards.Hardware{Outputs: []boards.Output{{Pin: "GPIO27", Path: "pi.heater"}}}
	office := config(t, "office")
	office.Peers = []boards.Link{{Name: "pi", Addr: piAddr, Username: "office", Password: "pw"}}
	run := func(c *boards.Config, opts edgekv.Options) *edgekv.Node {
		t.Helper()
		if err := c.ValidateWith(edgekv.CheckTreePath); err != nil {
			t.Fatal(err)
		}
		n, err := edgekv.New(c, opts)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		<-n.Ready()
		return n
	}
	run(pi, edgekv.Options{Pins: fp.open})
	officeNode := run(office, edgekv.Options{})
	heater := fp.get("GPIO27")
	level := func() gpio.Level { heater.Lock(); defer heater.Unlock(); return heater.L }
	for i, v := range []bool{true, false, true} {
		if _, err := officeNode.Engine().Set(context.Background(), mustPath(t, "pi.heater"), msgp.AppendBool(nil, v), node.Cond{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, fmt.Sprintf("step %d: the Pi's pin follows the office's write", i), func() bool { return level() == gpio.Level(v) })
	}
	// The state the Pi writes reaches the office.
	eventually(t, "the heater's state on the office node", func() bool {
		e, err := officeNode.Engine().Get(context.Background(), mustPath(t, "pi.heater.state"))
		if err != nil || e.Value == nil {
			return false
		}
		m, _, _ := msgp.ReadMapStrIntfBytes(e.Value, nil)
		return m["value"] == true && m["safe"] == nil
	})
}
