package edgekv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tinylib/msgp/msgp"
	"periph.io/x/conn/v3/gpio"

	"github.com/edgekv/edgekv/boards"
	"github.com/edgekv/edgekv/hw"
	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
)

// The devices the assembly needs from package hw, as small interfaces.
type (
	thermometer interface {
		Read(ctx context.Context) (float64, error)
	}
	inputPin interface {
		Read() bool
		WaitForEdge(ctx context.Context) error
		Edge() bool // an edge came since the last wait (taken), without waiting
	}
	outputPin interface {
		Out(level bool) error
	}
)

// hardware runs a board's bindings (boards.Hardware): each sensor read
// every interval and written to its path when it moved by the deadband,
// each input written when its debounced level changes, each output driven
// from the value at its path. One goroutine per binding; all end when
// Run's context does, and outputs then take their safe level.
type hardware struct {
	eng      *node.Engine
	log      *slog.Logger
	now      func() time.Time
	sensors  []boundSensor
	scans    []boundScan
	inputs   []boundInput
	outputs  []boundOutput
	sim      *hw.Sim // the simulated board's devices, or nil
	buses    *buses  // the 1-wire buses the bindings use
	shutdown time.Duration
	// found, if set, hears of each thermometer a "device: all" binding
	// binds (Home Assistant announces it).
	found func(ctx context.Context, path tree.Path)
}

type boundSensor struct {
	cfg  boards.Sensor
	path tree.Path
	dev  thermometer
}

// boundScan is a sensor binding of every thermometer on a bus.
type boundScan struct {
	cfg    boards.Sensor
	path   tree.Path
	scan   func(ctx context.Context) ([]string, error) // ids on the bus, kernel form
	device func(id string) (thermometer, error)
	skip   map[string]bool // ids bound on their own
}

type boundInput struct {
	cfg    boards.Input
	path   tree.Path
	dev    inputPin
	sensed func(ctx context.Context) (bool, error) // a switch channel, polled (dev nil)
}

type boundOutput struct {
	cfg         boards.Output
	path, state tree.Path
	dev         outputPin
}

// CheckTreePath is the tree's path parser, for boards.Config.ValidateWith.
func CheckTreePath(s string) error {
	_, err := tree.ParsePath(s)
	return err
}

// newHardware binds cfg's hardware to its devices: sensors on the sim
// bus, the kernel's w1 sysfs files or behind an owserver (any board);
// inputs and outputs on the sim board's simulated pins, on a real board's
// GPIO (periph's character-device driver, or pins when not nil), or on
// 1-wire switches.
func newHardware(cfg *boards.Config, eng *node.Engine, log *slog.Logger, pins func(boards.Pin) (gpio.PinIO, error)) (*hardware, error) {
	h := &hardware{eng: eng, log: log.With("component", "hardware"), now: time.Now, shutdown: 2 * time.Second, buses: newBuses()}
	if err := h.bind(cfg, pins); err != nil {
		h.buses.close()
		return nil, err
	}
	return h, nil
}

// bind builds the devices of cfg's bindings (see newHardware).
func (h *hardware) bind(cfg *boards.Config, pins func(boards.Pin) (gpio.PinIO, error)) error {
	hc := cfg.Hardware
	if len(hc.Sensors)+len(hc.Inputs)+len(hc.Outputs) == 0 {
		return nil
	}
	prof, ok := boards.Lookup(cfg.Board)
	if !ok {
		return fmt.Errorf("board: unknown board %q", cfg.Board)
	}
	var gp *hw.GPIO // a real board's pins, opened on first use
	openGPIO := func() (*hw.GPIO, error) {
		if gp != nil {
			return gp, nil
		}
		if pins != nil {
			gp = hw.GPIOWith(pins)
			return gp, nil
		}
		var err error
		gp, err = hw.OpenGPIO(prof)
		return gp, err
	}
	h.sim = hw.NewSim()
	parse := func(at, s string) (tree.Path, error) {
		p, err := tree.ParsePath(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a tree path: %w", at, s, err)
		}
		return p, nil
	}
	for i, s := range hc.Sensors {
		at := fmt.Sprintf("hardware.sensors[%d]", i)
		p, err := parse(at+".path", s.Path)
		if err != nil {
			return err
		}
		if s.Device == boards.AllDevices {
			sc, err := scanOf(prof, s, h.buses)
			if err != nil {
				return fmt.Errorf("%s: %w", at, err)
			}
			sc.path = p
			for _, o := range hc.Sensors { // bound on their own: not twice
				if id, ok := hw.OWID(o.Device); ok && o.BusOn(prof) == s.BusOn(prof) {
					sc.skip[strings.ToLower(strings.Replace(id, ".", "-", 1))] = true
				}
			}
			h.scans = append(h.scans, sc)
			continue
		}
		dev, err := sensorDevice(prof, s, h.sim, h.buses)
		if err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
		h.sensors = append(h.sensors, boundSensor{cfg: s, path: p, dev: dev})
	}
	for i, in := range hc.Inputs {
		p, err := parse(fmt.Sprintf("hardware.inputs[%d].path", i), in.Path)
		if err != nil {
			return err
		}
		if in.Device != "" { // a 1-wire switch's channel, read every interval
			sw, err := switchChannel(in.BusOn(prof), in.Device, in.Channel, in.Every(), h.buses)
			if err != nil {
				return fmt.Errorf("hardware.inputs[%d]: %w", i, err)
			}
			h.inputs = append(h.inputs, boundInput{cfg: in, path: p, sensed: sw.Sensed})
			continue
		}
		pin, _ := prof.Pin(in.Pin) // checked by Validate
		var dev inputPin = h.sim.Input(pin)
		if prof.Name != "sim" {
			g, err := openGPIO()
			if err != nil {
				return err
			}
			if dev, err = g.Input(pin, in.Pull); err != nil {
				return fmt.Errorf("hardware.inputs[%d]: %w", i, err)
			}
		}
		h.inputs = append(h.inputs, boundInput{cfg: in, path: p, dev: dev})
	}
	for i, o := range hc.Outputs {
		p, err := parse(fmt.Sprintf("hardware.outputs[%d].path", i), o.Path)
		if err != nil {
			return err
		}
		st, err := parse(fmt.Sprintf("hardware.outputs[%d].state", i), o.StatePath())
		if err != nil {
			return err
		}
		var dev outputPin
		if o.Device != "" { // a 1-wire switch's channel (bus checked by Validate)
			if dev, err = switchChannel(o.BusOn(prof), o.Device, o.Channel, 5*time.Second, h.buses); err != nil {
				return fmt.Errorf("hardware.outputs[%d]: %w", i, err)
			}
		} else if pin, _ := prof.Pin(o.Pin); prof.Name == "sim" {
			dev = h.sim.Output(pin)
		} else {
			g, err := openGPIO()
			if err != nil {
				return err
			}
			if dev, err = g.Output(pin); err != nil {
				return fmt.Errorf("hardware.outputs[%d]: %w", i, err)
			}
		}
		h.outputs = append(h.outputs, boundOutput{cfg: o, path: p, state: st, dev: dev})
	}
	return nil
}

// buses are the 1-wire buses of one node's bindings, one client or bridge
// per bus however many bindings use it.
type buses struct {
	ow      map[string]*hw.OWServer   // by address
	oneWire map[string]*hw.OneWireBus // by bus string
}

func newBuses() *buses {
	return &buses{ow: map[string]*hw.OWServer{}, oneWire: map[string]*hw.OneWireBus{}}
}

// owserver returns the client of the owserver a bus "owserver:ADDR" names,
// its requests bounded by every (the binding's period) and at most 5 s.
func (bs *buses) owserver(bus string, every time.Duration) *hw.OWServer {
	addr := strings.TrimPrefix(bus, "owserver:")
	c := bs.ow[addr]
	if c == nil {
		c = &hw.OWServer{Addr: addr, Timeout: min(5*time.Second, every)}
		bs.ow[addr] = c
	}
	return c
}

// sensorDevice builds the thermometer a sensor binding reads on board
// prof: a simulated one from sim, or one behind an owserver (kept per
// address in bs), a DS248x bridge or the kernel's w1 sysfs files.
func sensorDevice(prof boards.Profile, s boards.Sensor, sim *hw.Sim, bs *buses) (thermometer, error) {
	switch bus := s.BusOn(prof); {
	case bus == "sim":
		return sim.Thermometer(s.Device), nil
	case strings.HasPrefix(bus, "owserver:"):
		th, err := bs.owserver(bus, s.Every()).Thermometer(s.Device)
		if err != nil {
			return nil, fmt.Errorf("device: %w", err)
		}
		return th, nil
	case bus == "w1-sysfs" || strings.HasPrefix(bus, "w1-sysfs:"):
		w := &hw.W1Sysfs{Dir: strings.TrimPrefix(strings.TrimPrefix(bus, "w1-sysfs"), ":")}
		th, err := w.Thermometer(s.Device)
		if err != nil {
			return nil, fmt.Errorf("device: %w", err)
		}
		return th, nil
	case strings.HasPrefix(bus, "ds248x:"):
		b, err := bs.ds248x(bus)
		if err != nil {
			return nil, err
		}
		th, err := b.Thermometer(s.Device)
		if err != nil {
			return nil, fmt.Errorf("device: %w", err)
		}
		return th, nil
	}
	return nil, fmt.Errorf("bus: %q is not a bus edgekv can read (want sim, w1-sysfs[:DIR], ds248x:I2CBUS[:ADDR] or owserver:HOST:PORT)", s.Bus)
}

// switchChannel builds channel ch of the 1-wire switch id on bus: behind
// an owserver (its requests bounded by every), through the kernel's w1
// sysfs files, or on a DS248x bridge.
func switchChannel(bus, id, ch string, every time.Duration, bs *buses) (interface {
	outputPin
	Sensed(context.Context) (bool, error)
}, error) {
	switch {
	case strings.HasPrefix(bus, "owserver:"):
		return bs.owserver(bus, every).Switch(id, ch)
	case bus == "w1-sysfs" || strings.HasPrefix(bus, "w1-sysfs:"):
		w := &hw.W1Sysfs{Dir: strings.TrimPrefix(strings.TrimPrefix(bus, "w1-sysfs"), ":")}
		return w.Switch(id, ch)
	case strings.HasPrefix(bus, "ds248x:"):
		b, err := bs.ds248x(bus)
		if err != nil {
			return nil, err
		}
		return b.Switch(id, ch)
	}
	return nil, fmt.Errorf("bus: %q has no 1-wire switches (want w1-sysfs[:DIR], ds248x:I2CBUS[:ADDR] or owserver:HOST:PORT)", bus)
}

// ds248x returns the periph 1-wire bus "ds248x:I2CBUS[:ADDR]" names,
// opened once per node and shared by every binding on it (its
// transactions are serialised); Run closes it when the node stops.
func (bs *buses) ds248x(bus string) (*hw.OneWireBus, error) {
	if b := bs.oneWire[bus]; b != nil {
		return b, nil
	}
	i2c, addr, msg := boards.DS248xBus(bus)
	if msg != "" {
		return nil, fmt.Errorf("bus: %q: %s", bus, msg)
	}
	b, err := hw.OpenDS248x(i2c, addr)
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	bs.oneWire[bus] = b
	return b, nil
}

// close closes the buses that hold a device open.
func (bs *buses) close() {
	for _, b := range bs.oneWire {
		_ = b.Close()
	}
}

// scanOf builds the scan of a binding of every thermometer on its bus.
func scanOf(prof boards.Profile, s boards.Sensor, bs *buses) (boundScan, error) {
	sc := boundScan{cfg: s, skip: map[string]bool{}}
	bus := s.BusOn(prof)
	switch {
	case strings.HasPrefix(bus, "owserver:"):
		c := bs.owserver(bus, s.Every())
		sc.scan = c.Devices
		sc.device = func(id string) (thermometer, error) { return c.Thermometer(id) }
	case bus == "w1-sysfs" || strings.HasPrefix(bus, "w1-sysfs:"):
		w := &hw.W1Sysfs{Dir: strings.TrimPrefix(strings.TrimPrefix(bus, "w1-sysfs"), ":")}
		sc.scan = func(context.Context) ([]string, error) { return w.Devices() }
		sc.device = func(id string) (thermometer, error) { return w.Thermometer(id) }
	case strings.HasPrefix(bus, "ds248x:"):
		b, err := bs.ds248x(bus)
		if err != nil {
			return sc, err
		}
		sc.scan = func(context.Context) ([]string, error) { return b.Devices() }
		sc.device = func(id string) (thermometer, error) { return b.Thermometer(id) }
	default:
		return sc, fmt.Errorf("bus: %q has no devices to find (want w1-sysfs, ds248x or owserver)", bus)
	}
	return sc, nil
}

// runScan finds the thermometers on sc's bus now, and again every ten
// read intervals (at most every minute), and reads each new one as its own
// binding at sc's path's child named by its id. A thermometer that leaves
// keeps its entry: its reads fail, and say so, until it is back.
func (h *hardware) runScan(ctx context.Context, sc boundScan) {
	var wg sync.WaitGroup
	defer wg.Wait()
	every := min(time.Minute, 10*sc.cfg.Every())
	started := map[string]bool{}
	failing := false
	for {
		ids, err := sc.scan(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			failing = true
			h.log.Warn("cannot scan a 1-wire bus", "bus", sc.cfg.Bus, "path", sc.path.String(), "error", err)
		case err == nil:
			failing = false
		}
		for _, id := range ids {
			ow, ok := hw.OWID(id)
			if !ok {
				continue
			}
			kid := strings.ToLower(strings.Replace(ow, ".", "-", 1))
			if fam := ow[:2]; (fam != "28" && fam != "10" && fam != "22") || started[kid] || sc.skip[kid] {
				continue
			}
			dev, err := sc.device(kid)
			if err != nil {
				continue
			}
			started[kid] = true
			b := boundSensor{cfg: sc.cfg, path: append(slices.Clone(sc.path), tree.Str(kid)), dev: dev}
			b.cfg.Device = kid
			h.log.Info("thermometer found", "device", kid, "path", b.path.String())
			wg.Go(func() { h.runSensor(ctx, b) })
			if h.found != nil {
				h.found(ctx, b.path)
			}
		}
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// ReadSensor reads the thermometer of a sensor binding of cfg once, as a
// running node would (scale and offset applied, readings that are not
// measurements refused), without a node: `edgekv hw read`. A simulated
// sensor gives the first value of its walk.
func ReadSensor(ctx context.Context, cfg *boards.Config, s boards.Sensor) (float64, error) {
	prof, ok := boards.Lookup(cfg.Board)
	if !ok {
		return 0, fmt.Errorf("unknown board %q", cfg.Board)
	}
	bs := newBuses()
	defer bs.close()
	dev, err := sensorDevice(prof, s, hw.NewSim(), bs)
	if err != nil {
		return 0, err
	}
	v, err := dev.Read(ctx)
	if err == nil {
		err = hw.CheckReading(v)
	}
	if err != nil {
		return 0, err
	}
	return v*s.Factor() + s.Offset, nil
}

// Run runs every binding until ctx ends. Outputs take their safe level
// first, and again when Run ends.
func (h *hardware) Run(ctx context.Context) error {
	defer h.buses.close() // after every binding's goroutine has ended
	var wg sync.WaitGroup
	for _, s := range h.sensors {
		wg.Go(func() { h.runSensor(ctx, s) })
	}
	for _, sc := range h.scans {
		wg.Go(func() { h.runScan(ctx, sc) })
	}
	for _, in := range h.inputs {
		if in.sensed != nil {
			wg.Go(func() { h.runPolledInput(ctx, in) })
			continue
		}
		wg.Go(func() { h.runInput(ctx, in) })
	}
	for _, o := range h.outputs {
		wg.Go(func() { h.runOutput(ctx, o) })
	}
	wg.Wait()
	return nil
}

// unixSeconds is t as seconds since 1970, to the millisecond.
func unixSeconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

// reading encodes a sensor's or an input's entry: {value, unit, at}, and
// with a fault {error, since} (value and at then the last good reading's,
// left out if there was none).
type reading struct {
	value any // float64 or bool; nil: none yet
	unit  string
	at    time.Time
	err   string
	since time.Time
}

func (r reading) msgpack() []byte {
	n := uint32(0)
	if r.value != nil {
		n += 2
		if r.unit != "" {
			n++
		}
	}
	if r.err != "" {
		n += 2
	}
	b := msgp.AppendMapHeader(nil, n)
	if r.value != nil {
		b = msgp.AppendString(b, "value")
		switch v := r.value.(type) {
		case float64:
			b = msgp.AppendFloat64(b, v)
		case bool:
			b = msgp.AppendBool(b, v)
		}
		if r.unit != "" {
			b = msgp.AppendString(msgp.AppendString(b, "unit"), r.unit)
		}
		b = msgp.AppendFloat64(msgp.AppendString(b, "at"), unixSeconds(r.at))
	}
	if r.err != "" {
		b = msgp.AppendString(msgp.AppendString(b, "error"), r.err)
		b = msgp.AppendFloat64(msgp.AppendString(b, "since"), unixSeconds(r.since))
	}
	return b
}

// write stores value at p; a failure is logged (the next reading tries
// again) unless the node is stopping.
func (h *hardware) write(ctx context.Context, what string, p tree.Path, value []byte) {
	if _, err := h.eng.Set(ctx, p, value, node.Cond{}); err != nil && ctx.Err() == nil {
		h.log.Warn("cannot write a reading", "binding", what, "path", p.String(), "error", err)
	}
}

// runSensor reads s every interval. A reading is written when it moved by
// the deadband from the last one written (the first always); see poll
// for faults.
func (h *hardware) runSensor(ctx context.Context, s boundSensor) {
	read := func(ctx context.Context) (any, error) { return s.read(ctx) }
	moved := func(last, v any) bool { return math.Abs(v.(float64)-last.(float64)) >= s.cfg.Deadband }
	h.poll(ctx, "sensor", "sensor "+s.cfg.Device, s.path, s.cfg.Every(), "°C", read, moved)
}

// read reads the sensor once, as the node writes it: checked, scaled.
func (s boundSensor) read(ctx context.Context) (float64, error) {
	v, err := s.dev.Read(ctx)
	if err == nil {
		err = hw.CheckReading(v)
	}
	return v*s.cfg.Factor() + s.cfg.Offset, err
}

// ReadSensor reads the sensor bound at path once (a job's kv.hw.read).
func (h *hardware) ReadSensor(ctx context.Context, path tree.Path) (float64, error) {
	for _, s := range h.sensors {
		if s.path.Equal(path) {
			return s.read(ctx)
		}
	}
	return 0, fmt.Errorf("no sensor of node %s is bound at %s", h.eng.Name(), path)
}

// DriveOutput drives the output bound at path (a job's kv.hw.drive) by
// writing its command, as any client would: the output follows it, and
// its state entry says what the pin does.
func (h *hardware) DriveOutput(ctx context.Context, path tree.Path, on bool) error {
	for _, o := range h.outputs {
		if o.path.Equal(path) {
			_, err := h.eng.Set(ctx, path, msgp.AppendBool(nil, on), node.Cond{Cond: tree.Cond{Idem: true}})
			return err
		}
	}
	return fmt.Errorf("no output of node %s is bound at %s", h.eng.Name(), path)
}

// poll reads every period and writes a reading ({value, unit, at}) when
// changed says it differs from the last one written (the first always).
// A failed read keeps the last good value and at, and adds error and
// since to the entry; the node logs it once, and the next good reading
// clears both.
func (h *hardware) poll(ctx context.Context, kind, what string, path tree.Path, every time.Duration, unit string,
	read func(context.Context) (any, error), changed func(last, v any) bool) {
	var last reading // last written
	written := false
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		v, err := read(ctx)
		now := h.now()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			switch {
			case last.err == "":
				h.log.Warn(kind+" fails; its last good value stays", kind, what, "path", path.String(), "error", err)
				last.err, last.since = err.Error(), now
				h.write(ctx, what, path, last.msgpack())
			case err.Error() != last.err: // another fault in the same episode: the entry says the current one, since stays
				h.log.Debug(kind+" fails otherwise", kind, what, "path", path.String(), "error", err)
				last.err = err.Error()
				h.write(ctx, what, path, last.msgpack())
			}
		default:
			fault := last.err != ""
			if fault {
				h.log.Info(kind+" reads again", kind, what, "path", path.String(), "failed_for", now.Sub(last.since).Round(time.Millisecond))
			}
			if !written || fault || changed(last.value, v) {
				last = reading{value: v, unit: unit, at: now}
				written = true
				h.write(ctx, what, path, last.msgpack())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// runInput writes in's level at start and after every change that held
// for the debounce time.
func (h *hardware) runInput(ctx context.Context, in boundInput) {
	what := "input " + in.cfg.Pin
	level := func() bool { return in.dev.Read() != in.cfg.Invert }
	last := level()
	h.write(ctx, what, in.path, reading{value: last, at: h.now()}.msgpack())
	for {
		if err := in.dev.WaitForEdge(ctx); err != nil {
			return
		}
		// Debounce: the level counts once no edge came for the settle
		// time (a contact that bounces sends a burst of edges).
		for d := in.cfg.Settle(); ; {
			if d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
			quiet := true
			for in.dev.Edge() {
				quiet = false
			}
			if quiet || d == 0 {
				break
			}
		}
		if l := level(); l != last {
			last = l
			h.write(ctx, what, in.path, reading{value: l, at: h.now()}.msgpack())
		}
	}
}

// runPolledInput reads a switch channel every interval and writes its
// level when it changes; see poll for faults.
func (h *hardware) runPolledInput(ctx context.Context, in boundInput) {
	read := func(ctx context.Context) (any, error) {
		level, err := in.sensed(ctx)
		return level != in.cfg.Invert, err
	}
	differs := func(last, v any) bool { return last != v }
	h.poll(ctx, "input", "input "+in.cfg.Device+" channel "+in.cfg.Channel, in.path, in.cfg.Every(), "", read, differs)
}

// runOutput drives o from the value at its path: its safe level at start,
// at the end, and while the path is deleted or holds a value that is not
// a level. What the pin does is written to the state path:
// {value, at}, plus {safe: true, reason} when it is at its safe level for
// one of those reasons. A level that cannot be applied (a switch behind an
// owserver that is down) is reported with error and since, and tried
// again, after 1 s and then twice as long each time up to 30 s, until it
// holds or another command comes.
func (h *hardware) runOutput(ctx context.Context, o boundOutput) {
	what := "output " + o.cfg.Pin
	if o.cfg.Device != "" {
		what = "output " + o.cfg.Device + " channel " + o.cfg.Channel
	}
	var failing outputState // the failed command's state, while one fails
	apply := func(c outputState) bool {
		err := o.dev.Out(c.level != o.cfg.Invert)
		c.at = h.now()
		switch {
		case err == nil && failing.err != "":
			h.log.Info("output driven again", "output", what, "failed_for", c.at.Sub(failing.since).Round(time.Millisecond))
			failing = outputState{}
		case err != nil && failing.err == "":
			h.log.Warn("cannot drive an output", "output", what, "error", err)
			c.err, c.since = err.Error(), c.at
			failing = c
		case err != nil && failing.err != "" && (failing.level != c.level || failing.reason != c.reason || failing.err != err.Error()):
			c.err, c.since = err.Error(), failing.since
			failing = c
		case err != nil:
			return false // failing as before: the state entry says so already
		}
		wctx := ctx
		if ctx.Err() != nil { // shutting down: the state still goes in
			var cancel context.CancelFunc
			wctx, cancel = context.WithTimeout(context.Background(), h.shutdown)
			defer cancel()
		}
		if _, werr := h.eng.Set(wctx, o.state, c.msgpack(), node.Cond{}); werr != nil && !errors.Is(werr, context.Canceled) {
			h.log.Debug("output state not written", "binding", what, "error", werr)
		}
		return err == nil
	}

	// The watch hands each command over; only the latest counts.
	want := make(chan outputState, 1)
	command := func(c outputState) {
		select {
		case <-want:
		default:
		}
		want <- c
	}
	watched := make(chan error, 1)
	go func() {
		watched <- h.eng.Watch(ctx, o.path, true, func(it node.Item) error {
			if it.UpToDate || !it.Path.Equal(o.path) {
				return nil
			}
			if it.Entry.Value == nil {
				command(outputState{level: o.cfg.Safe, reason: "deleted"})
				return nil
			}
			level, ok := outputLevel(it.Entry.Value)
			if !ok {
				h.log.Warn("output command is not a level; the output takes its safe level", "output", what, "path", o.path.String())
				command(outputState{level: o.cfg.Safe, reason: "not a level (want true/false, 1/0 or on/off)"})
				return nil
			}
			command(outputState{level: level})
			return nil
		})
	}()

	cur := outputState{level: o.cfg.Safe, reason: "start"}
	ok := apply(cur)
	const firstRetry, lastRetry = time.Second, 30 * time.Second
	backoff := firstRetry
	retry := time.NewTimer(backoff)
	defer retry.Stop()
	for {
		retry.Stop()
		if ok {
			backoff = firstRetry
		} else {
			retry.Reset(backoff)
		}
		select {
		case c := <-want:
			cur = c
			backoff = firstRetry
			ok = apply(cur)
		case <-retry.C:
			backoff = min(2*backoff, lastRetry)
			ok = apply(cur)
		case err := <-watched:
			watched = nil
			if ctx.Err() == nil {
				h.log.Warn("output stopped following its path", "output", what, "error", err)
			}
		case <-ctx.Done():
			if watched != nil {
				<-watched
			}
			failing = outputState{} // the last word is the shutdown's
			apply(outputState{level: o.cfg.Safe, reason: "shutdown"})
			return
		}
	}
}

// outputState is an output's state entry.
type outputState struct {
	level  bool
	at     time.Time
	reason string    // why it is at its safe level; "" when commanded
	err    string    // why it could not be driven to level; "" when it was
	since  time.Time // when it first could not
}

func (s outputState) msgpack() []byte {
	n := uint32(2)
	if s.reason != "" {
		n += 2
	}
	if s.err != "" {
		n += 2
	}
	b := msgp.AppendMapHeader(nil, n)
	b = msgp.AppendBool(msgp.AppendString(b, "value"), s.level)
	b = msgp.AppendFloat64(msgp.AppendString(b, "at"), unixSeconds(s.at))
	if s.reason != "" {
		b = msgp.AppendBool(msgp.AppendString(b, "safe"), true)
		b = msgp.AppendString(msgp.AppendString(b, "reason"), s.reason)
	}
	if s.err != "" {
		b = msgp.AppendString(msgp.AppendString(b, "error"), s.err)
		b = msgp.AppendFloat64(msgp.AppendString(b, "since"), unixSeconds(s.since))
	}
	return b
}

// outputLevel reads a command: a bool, the integers 0 and 1, or the
// strings on/off, true/false, 1/0 (any case).
func outputLevel(v []byte) (level, ok bool) {
	switch msgp.NextType(v) {
	case msgp.BoolType:
		b, _, err := msgp.ReadBoolBytes(v)
		return b, err == nil
	case msgp.IntType, msgp.UintType:
		i, _, err := msgp.ReadInt64Bytes(v)
		if err != nil || (i != 0 && i != 1) {
			return false, false
		}
		return i == 1, true
	case msgp.StrType:
		s, _, err := msgp.ReadStringBytes(v)
		if err != nil {
			return false, false
		}
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "on", "true", "1":
			return true, true
		case "off", "false", "0":
			return false, true
		}
	}
	return false, false
}
