package edgekv_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv"
	"github.com/edgekv/edgekv/boards"
	"github.com/edgekv/edgekv/hw"
	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
)

// hwNode runs a node on the sim board with hc bound until the test ends;
// stop stops it early and waits.
func hwNode(t *testing.T, hc boards.Hardware) (n *edgekv.Node, stop func()) {
	t.Helper()
	c := config(t, "hw")
	c.Hardware = hc
	if err := c.ValidateWith(edgekv.CheckTreePath); err != nil {
		t.Fatal(err)
	}
	n, err := edgekv.New(c, edgekv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	select {
	case <-n.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("node not ready")
	}
	return n, stop
}

// entry reads path's value as a map; nil if it has none.
func entry(t *testing.T, n *edgekv.Node, path string) map[string]any {
	t.Helper()
	e, err := n.Engine().Get(context.Background(), mustPath(t, path))
	if err != nil {
		t.Fatal(err)
	}
	if e.Value == nil {
		return nil
	}
	m, _, err := msgp.ReadMapStrIntfBytes(e.Value, nil)
	if err != nil {
		t.Fatalf("%s holds % x, not a map: %v", path, e.Value, err)
	}
	return m
}

func mustPath(t *testing.T, s string) tree.Path {
	t.Helper()
	p, err := tree.ParsePath(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 5 s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func set(t *testing.T, n *edgekv.Node, path string, value []byte) {
	t.Helper()
	if _, err := n.Engine().Set(context.Background(), mustPath(t, path), value, node.Cond{}); err != nil {
		t.Fatal(err)
	}
}

// TestHardwareSensors: simulated thermometers are written with their unit
// and read time, keep moving, respect the deadband and scale/offset; a
// failing sensor keeps its last good value and says what is wrong and
// since when, until it reads again.
func TestHardwareSensors(t *testing.T) {
	two := 2.0
	ms := boards.Duration(100 * time.Millisecond)
	n, _ := hwNode(t, boards.Hardware{Sensors: []boards.Sensor{
		{Device: "sim-1", Path: "hw.t", Interval: ms},
		{Device: "sim-2", Path: "hw.still", Interval: ms, Deadband: 100},
		{Device: "sim-3", Path: "hw.scaled", Interval: boards.Duration(time.Hour), Scale: &two, Offset: 1},
	}})
	eventually(t, "hw.t written", func() bool { return entry(t, n, "hw.t") != nil })
	m := entry(t, n, "hw.t")
	v, ok := m["value"].(float64)
	if !ok || v < 10 || v > 35 || m["unit"] != "°C" || m["at"] == nil {
		t.Fatalf("hw.t = %v: want {value: °C, unit, at}", m)
	}
	if at := m["at"].(float64); time.Since(time.UnixMilli(int64(at*1000))) > 5*time.Second {
		t.Errorf("read time %v is not now", at)
	}
	eventually(t, "hw.t moves", func() bool { return entry(t, n, "hw.t")["value"] != v })

	first := entry(t, n, "hw.still")
	time.Sleep(500 * time.Millisecond) // five reads, none 100 °C away
	if again := entry(t, n, "hw.still"); again["at"] != first["at"] {
		t.Errorf("a reading within the deadband was written: %v then %v", first, again)
	}

	raw, _ := hw.NewSim().Thermometer("sim-3").Read(context.Background()) // the same walk
	eventually(t, "hw.scaled written", func() bool { return entry(t, n, "hw.scaled") != nil })
	if got := entry(t, n, "hw.scaled")["value"]; got != raw*2+1 {
		t.Errorf("scaled reading %v, want %v × 2 + 1 = %v", got, raw, raw*2+1)
	}

	th := n.SimHardware().Thermometer("sim-1")
	th.Fail(nil)
	eventually(t, "the fault in hw.t", func() bool { return entry(t, n, "hw.t")["error"] != nil })
	m = entry(t, n, "hw.t")
	if !strings.Contains(m["error"].(string), "simulated fault") || m["since"] == nil || m["value"] == nil {
		t.Errorf("a failing sensor's entry: %v: want the last value, the error and since when", m)
	}
	last := m["value"]
	time.Sleep(300 * time.Millisecond)
	if m2 := entry(t, n, "hw.t"); m2["value"] != last || m2["since"] != m["since"] {
		t.Errorf("while failing the entry changed: %v then %v", m, m2)
	}
	th.Fail(errors.New("CRC error")) // another fault in the same episode: the entry says it, since stays
	eventually(t, "the second fault in hw.t", func() bool { e, _ := entry(t, n, "hw.t")["error"].(string); return strings.HasSuffix(e, ": CRC error") })
	if m2 := entry(t, n, "hw.t"); m2["value"] != last || m2["since"] != m["since"] {
		t.Errorf("the second fault changed value or since: %v then %v", m, m2)
	}
	th.Recover()
	eventually(t, "hw.t reads again", func() bool { return entry(t, n, "hw.t")["error"] == nil })
}

// TestHardwareInput: an input's level is written at start and after each
// change.
func TestHardwareInput(t *testing.T) {
	zero := boards.Duration(0)
	n, _ := hwNode(t, boards.Hardware{Inputs: []boards.Input{{Pin: "GPIO17", Path: "hw.door", Debounce: &zero, Invert: true}}})
	eventually(t, "hw.door written", func() bool { return entry(t, n, "hw.door") != nil })
	in := n.SimHardware().Input(boards.Pin{Name: "GPIO17"})
	for _, level := range []bool{true, false, true} {
		in.Set(level)
		eventually(t, "hw.door follows the pin (inverted)", func() bool { return entry(t, n, "hw.door")["value"] == !level })
	}
}

// TestHardwareOutputs: an output takes its safe level at start, follows
// its path's value, takes the safe level again for a value that is not a
// level and for a delete, reports each in its state entry, and is left at
// its safe level when the node stops.
func TestHardwareOutputs(t *testing.T) {
	n, stop := hwNode(t, boards.Hardware{Outputs: []boards.Output{
		{Pin: "GPIO27", Path: "hw.relay"},
		{Pin: "GPIO22", Path: "hw.fan", State: "hw.fan_state", Safe: true, Invert: true},
	}})
	sim := n.SimHardware()
	relay, fan := sim.Output(boards.Pin{Name: "GPIO27"}), sim.Output(boards.Pin{Name: "GPIO22"})
	state := func(p string) map[string]any { return entry(t, n, p) }
	eventually(t, "the start states", func() bool {
		r, f := state("hw.relay.state"), state("hw.fan_state")
		return r != nil && f != nil && r["value"] == false && r["reason"] == "start" && f["value"] == true && f["safe"] == true
	})
	if l, driven := relay.Level(); l || !driven {
		t.Errorf("relay at start: level %v, driven %v; want driven low", l, driven)
	}
	if l, _ := fan.Level(); l {
		t.Error("fan (safe on, inverted) at start: pin high, want low")
	}
	steps := []struct {
		value  []byte
		level  bool
		reason string
	}{
		{msgp.AppendBool(nil, true), true, ""},
		{msgp.AppendString(nil, "off"), false, ""},
		{msgp.AppendInt(nil, 1), true, ""},
		{msgp.AppendString(nil, "ON"), true, ""},
		{msgp.AppendString(nil, "bogus"), false, "not a level"},
		{msgp.AppendInt(nil, 2), false, "not a level"},
		{msgp.AppendBool(nil, true), true, ""},
		{nil, false, "deleted"},
	}
	for i, s := range steps {
		if s.value == nil {
			if _, err := n.Engine().Delete(context.Background(), mustPath(t, "hw.relay"), node.Cond{}); err != nil {
				t.Fatal(err)
			}
		} else {
			set(t, n, "hw.relay", s.value)
		}
		eventually(t, "step "+string(rune('0'+i))+": the relay's state", func() bool {
			st := state("hw.relay.state")
			r, _ := st["reason"].(string)
			return st["value"] == s.level && strings.HasPrefix(r, s.reason) && (s.reason != "") == (st["safe"] == true)
		})
		if l, _ := relay.Level(); l != s.level {
			t.Errorf("step %d: relay pin %v, want %v", i, l, s.level)
		}
	}
	set(t, n, "hw.relay", msgp.AppendBool(nil, true))
	set(t, n, "hw.fan", msgp.AppendBool(nil, false))
	eventually(t, "relay on, fan off", func() bool {
		r, _ := relay.Level()
		f, _ := fan.Level()
		return r && f // the fan's pin is inverted: off is high
	})
	stop()
	if l, _ := relay.Level(); l {
		t.Error("the relay stayed on after the node stopped")
	}
	if l, _ := fan.Level(); l {
		t.Error("the fan (safe on, inverted) was not back at its safe level after the node stopped")
	}
}

// TestHardwareW1Sysfs: a thermometer read through a fake w1 sysfs tree
// (files as the kernel writes them). Absent at start: its entry says so,
// with no value. Present: its value. A CRC error and the power-on 85 °C
// are faults that keep the last value. Back to good: the fault clears.
func TestHardwareW1Sysfs(t *testing.T) {
	dir := t.TempDir()
	n, _ := hwNode(t, boards.Hardware{Sensors: []boards.Sensor{
		{Device: "28-0316a2794bff", Bus: "w1-sysfs:" + dir, Path: "hw.w1", Interval: boards.Duration(100 * time.Millisecond)},
	}})
	eventually(t, "the absent sensor's entry", func() bool {
		m := entry(t, n, "hw.w1")
		e, _ := m["error"].(string)
		return strings.Contains(e, "not on the bus") && m["value"] == nil && m["since"] != nil
	})
	dev := filepath.Join(dir, "28-0316a2794bff")
	if err := os.Mkdir(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	slave := func(crc string, milli int) {
		t.Helper()
		text := fmt.Sprintf("72 01 4b 46 7f ff 0e 10 57 : crc=57 %s\n72 01 4b 46 7f ff 0e 10 57 t=%d\n", crc, milli)
		if err := os.WriteFile(filepath.Join(dev, "w1_slave"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	slave("YES", 23125)
	eventually(t, "23.125", func() bool { m := entry(t, n, "hw.w1"); return m["value"] == 23.125 && m["error"] == nil })
	for _, fault := range []struct {
		crc   string
		milli int
		text  string
	}{{"NO", 23125, "CRC error"}, {"YES", 85000, "power-on"}} {
		slave(fault.crc, fault.milli)
		eventually(t, fault.text, func() bool {
			m := entry(t, n, "hw.w1")
			e, _ := m["error"].(string)
			return strings.Contains(e, fault.text) && m["value"] == 23.125
		})
		slave("YES", 23125)
		eventually(t, "clear after "+fault.text, func() bool { return entry(t, n, "hw.w1")["error"] == nil })
	}
}

// TestHardwareOutputRetry: an output that cannot be driven says so in its
// state entry (the wanted value, error, since), is tried again until it
// holds, and a newer command replaces the failed one.
func TestHardwareOutputRetry(t *testing.T) {
	n, _ := hwNode(t, boards.Hardware{Outputs: []boards.Output{{Pin: "GPIO27", Path: "hw.relay"}}})
	relay := n.SimHardware().Output(boards.Pin{Name: "GPIO27"})
	eventually(t, "the start state", func() bool { return entry(t, n, "hw.relay.state")["reason"] == "start" })
	relay.Fail(nil)
	set(t, n, "hw.relay", msgp.AppendBool(nil, true))
	eventually(t, "the failure in the state", func() bool {
		m := entry(t, n, "hw.relay.state")
		e, _ := m["error"].(string)
		return m["value"] == true && strings.Contains(e, "simulated fault") && m["since"] != nil
	})
	since := entry(t, n, "hw.relay.state")["since"]
	set(t, n, "hw.relay", msgp.AppendString(nil, "off")) // a newer command, failing too
	eventually(t, "the newer command's failure", func() bool {
		m := entry(t, n, "hw.relay.state")
		return m["value"] == false && m["error"] != nil && m["since"] == since
	})
	set(t, n, "hw.relay", msgp.AppendString(nil, "on"))
	eventually(t, "the third command failing", func() bool { return entry(t, n, "hw.relay.state")["value"] == true })
	relay.Recover() // the retry (after 1 s) applies the latest command
	eventually(t, "the retry", func() bool {
		m := entry(t, n, "hw.relay.state")
		return m["value"] == true && m["error"] == nil && m["since"] == nil
	})
	if l, _ := relay.Level(); !l {
		t.Error("the relay is not on after the retry")
	}
}

// TestHardwareW1Switch: 1-wire switches through the kernel's w1_ds2413
// and w1_ds2408 files (a fake sysfs tree shaped as those drivers make
// it): an output on a DS2413 channel follows its tree value and keeps the
// other channel's latch, an input on a DS2408 channel follows the pin, and
// a switch that leaves the bus is a fault with the last level kept.
func TestHardwareW1Switch(t *testing.T) {
	dir := t.TempDir()
	mk := func(id string, state, output byte) string {
		d := filepath.Join(dir, id)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "state"), []byte{state}, 0o644)
		os.WriteFile(filepath.Join(d, "output"), []byte{output}, 0o644)
		return d
	}
	// DS2413: A and B latches 1 (off), pins high: status 0x0f, complement 0x0_.
	d13 := mk("3a-0000001b2c3d", 0x0F, 0x03)
	d08 := mk("29-00000011aa22", 0x00, 0xFF)
	bus := "w1-sysfs:" + dir
	n, _ := hwNode(t, boards.Hardware{
		Inputs:  []boards.Input{{Device: "29-00000011aa22", Channel: "0", Bus: bus, Path: "hw.float", Interval: boards.Duration(100 * time.Millisecond)}},
		Outputs: []boards.Output{{Device: "3a-0000001b2c3d", Channel: "A", Bus: bus, Path: "hw.pump"}},
	})
	output := func() byte { b, _ := os.ReadFile(filepath.Join(d13, "output")); return b[0] }
	eventually(t, "the pump off at start", func() bool {
		m := entry(t, n, "hw.pump.state")
		return m["value"] == false && m["reason"] == "start" && output() == 0x03
	})
	eventually(t, "the float low", func() bool { return entry(t, n, "hw.float")["value"] == false })
	set(t, n, "hw.pump", msgp.AppendBool(nil, true))
	eventually(t, "the pump on: A's latch 0, B's kept at 1", func() bool {
		m := entry(t, n, "hw.pump.state")
		return m["value"] == true && m["error"] == nil && output() == 0x02
	})
	os.WriteFile(filepath.Join(d08, "state"), []byte{0x01}, 0o644)
	eventually(t, "the float high", func() bool { return entry(t, n, "hw.float")["value"] == true })
	os.RemoveAll(d08)
	eventually(t, "the float's switch gone", func() bool {
		m := entry(t, n, "hw.float")
		e, _ := m["error"].(string)
		return strings.Contains(e, "not on the bus") && m["value"] == true
	})
}

// TestHardwareScan: device "all" on a w1 sysfs bus binds every
// thermometer found (not a switch, not one bound on its own) at the child
// named by its id, finds one that arrives later, and keeps the entry of
// one that leaves with the fault.
func TestHardwareScan(t *testing.T) {
	dir := t.TempDir()
	add := func(id string, milli int) {
		t.Helper()
		dev := filepath.Join(dir, id)
		os.MkdirAll(dev, 0o755)
		text := fmt.Sprintf("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=%d\n", milli)
		if err := os.WriteFile(filepath.Join(dev, "w1_slave"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	add("28-0000000000a1", 21000)
	add("10-0000000000b2", 22000)
	add("28-0000000000c3", 23000)                             // bound on its own
	os.MkdirAll(filepath.Join(dir, "3a-0000000000d4"), 0o755) // a switch
	bus := "w1-sysfs:" + dir
	ms := boards.Duration(100 * time.Millisecond)
	n, _ := hwNode(t, boards.Hardware{Sensors: []boards.Sensor{
		{Device: "all", Bus: bus, Path: "scan.temp", Interval: ms},
		{Device: "28-0000000000c3", Bus: bus, Path: "own.temp", Interval: ms},
	}})
	eventually(t, "both found", func() bool {
		return entry(t, n, "scan.temp.28-0000000000a1")["value"] == 21.0 && entry(t, n, "scan.temp.10-0000000000b2")["value"] == 22.0
	})
	eventually(t, "the one bound on its own", func() bool { return entry(t, n, "own.temp")["value"] == 23.0 })
	if m := entry(t, n, "scan.temp.28-0000000000c3"); m != nil {
		t.Errorf("a sensor bound on its own was bound by the scan too: %v", m)
	}
	if m := entry(t, n, "scan.temp.3a-0000000000d4"); m != nil {
		t.Errorf("a switch was bound as a thermometer: %v", m)
	}
	add("22-0000000000e5", 24000)
	eventually(t, "the one that came later (scan every 10 intervals)", func() bool {
		return entry(t, n, "scan.temp.22-0000000000e5")["value"] == 24.0
	})
	os.RemoveAll(filepath.Join(dir, "28-0000000000a1"))
	eventually(t, "the one that left", func() bool {
		m := entry(t, n, "scan.temp.28-0000000000a1")
		e, _ := m["error"].(string)
		return strings.Contains(e, "not on the bus") && m["value"] == 21.0
	})
}

// TestHardwareDS248xMissing: a thermometer bound on a DS248x bridge that
// this machine does not have stops the node at start with an error that
// names the I²C bus.
func TestHardwareDS248xMissing(t *testing.T) {
	c := config(t, "ds")
	c.Hardware = boards.Hardware{Sensors: []boards.Sensor{{Device: "28-0316a2794bff", Bus: "ds248x:/dev/i2c-9", Path: "ds.t"}}}
	if err := c.ValidateWith(edgekv.CheckTreePath); err != nil {
		t.Fatal(err)
	}
	_, err := edgekv.New(c, edgekv.Options{})
	if err == nil || !strings.Contains(err.Error(), "/dev/i2c-9") || !strings.Contains(err.Error(), "hardware.sensors[0]") {
		t.Fatalf("New: %v", err)
	}
}
