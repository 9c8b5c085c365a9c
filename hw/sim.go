package hw

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/edgekv/edgekv/boards"
)

// Sim is the simulated board's hardware. Devices are made on first use and
// kept: a thermometer per id, an input or an output per pin.
type Sim struct {
	// TogglePeriod is how often a simulated input changes level. Set it
	// before the first Input call. Default 3 s.
	TogglePeriod time.Duration

	mu      sync.Mutex
	thermos map[string]*SimThermometer
	inputs  map[string]*SimInput
	outputs map[string]*SimOutput
}

// NewSim returns the devices of a simulated board.
func NewSim() *Sim {
	return &Sim{TogglePeriod: 3 * time.Second, thermos: map[string]*SimThermometer{},
		inputs: map[string]*SimInput{}, outputs: map[string]*SimOutput{}}
}

// Thermometer returns the simulated thermometer id. Its first reading is
// between 18 and 23 °C, chosen by the id; each later one moves by at most
// 0.05 °C (a slow random walk, within 10 to 35 °C).
func (s *Sim) Thermometer(id string) *SimThermometer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.thermos[id]; ok {
		return t
	}
	h := fnv.New64a()
	h.Write([]byte(id))
	seed := h.Sum64()
	t := &SimThermometer{id: id, rnd: rand.New(rand.NewPCG(seed, seed>>1|1)), t: 18 + float64(seed%51)/10}
	s.thermos[id] = t
	return t
}

// Input returns the simulated input on pin; it toggles every TogglePeriod.
func (s *Sim) Input(pin boards.Pin) *SimInput {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in, ok := s.inputs[pin.Name]; ok {
		return in
	}
	in := &SimInput{name: pin.Name, period: s.TogglePeriod, start: time.Now(), changed: make(chan struct{})}
	s.inputs[pin.Name] = in
	return in
}

// Output returns the simulated output on pin.
func (s *Sim) Output(pin boards.Pin) *SimOutput {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.outputs[pin.Name]; ok {
		return o
	}
	o := &SimOutput{name: pin.Name}
	s.outputs[pin.Name] = o
	return o
}

// SimThermometer is a simulated DS18B20.
type SimThermometer struct {
	id  string
	mu  sync.Mutex
	rnd *rand.Rand
	t   float64
	err error
}

// ErrSimFault is the error a simulated device returns when told to fail
// without a reason of its own.
var ErrSimFault = errors.New("simulated fault")

// Read returns the next reading in °C, or the fault set by Fail.
func (t *SimThermometer) Read(ctx context.Context) (float64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return 0, fmt.Errorf("thermometer %s: %w", t.id, t.err)
	}
	t.t += (t.rnd.Float64() - 0.5) / 10
	t.t = min(35, max(10, t.t))
	return float64(int64(t.t*1000+0.5)) / 1000, nil // the DS18B20's millidegrees
}

// Fail makes later reads fail with err (nil: ErrSimFault) until Recover.
func (t *SimThermometer) Fail(err error) {
	if err == nil {
		err = ErrSimFault
	}
	t.mu.Lock()
	t.err = err
	t.mu.Unlock()
}

// Recover ends a Fail.
func (t *SimThermometer) Recover() {
	t.mu.Lock()
	t.err = nil
	t.mu.Unlock()
}

// SimInput is a simulated input pin that toggles on its own, every period
// from when it was made (low first), unless Set holds it.
type SimInput struct {
	name   string
	period time.Duration
	start  time.Time

	mu      sync.Mutex
	held    bool // Set took over from the toggling
	level   bool
	pending bool          // a Set that no WaitForEdge has returned for yet
	changed chan struct{} // closed and replaced at each Set
}

// Read returns the pin's level.
func (in *SimInput) Read() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.held {
		return in.level
	}
	return int64(time.Since(in.start)/in.period)%2 == 1
}

// WaitForEdge returns when the level may have changed (the next toggle, or
// a Set), or with ctx's error. Like a kernel's edge events, a Set made
// while nobody waited is not lost: the next WaitForEdge returns at once.
func (in *SimInput) WaitForEdge(ctx context.Context) error {
	in.mu.Lock()
	if in.pending {
		in.pending = false
		in.mu.Unlock()
		return nil
	}
	changed, held := in.changed, in.held
	in.mu.Unlock()
	var tick <-chan time.Time
	if !held {
		next := in.period - time.Since(in.start)%in.period
		tm := time.NewTimer(next)
		defer tm.Stop()
		tick = tm.C
	}
	select {
	case <-tick:
		return nil
	case <-changed:
		in.mu.Lock()
		in.pending = false
		in.mu.Unlock()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Edge reports (and takes) a Set that no wait has returned for yet.
// Toggles are not counted: they come a period apart, never in bursts.
func (in *SimInput) Edge() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	p := in.pending
	in.pending = false
	return p
}

// Set holds the pin at level from now on (tests: an edge when they want).
func (in *SimInput) Set(level bool) {
	in.mu.Lock()
	in.held, in.level, in.pending = true, level, true
	close(in.changed)
	in.changed = make(chan struct{})
	in.mu.Unlock()
}

// String names the pin.
func (in *SimInput) String() string { return in.name }

// SimOutput is a simulated output pin: it records what it was told.
type SimOutput struct {
	name string

	mu      sync.Mutex
	levels  []bool
	changed chan struct{}
	err     error // set by Fail
}

// Fail makes later Outs fail with err (nil: ErrSimFault), the level kept,
// until Recover.
func (o *SimOutput) Fail(err error) {
	if err == nil {
		err = ErrSimFault
	}
	o.mu.Lock()
	o.err = err
	o.mu.Unlock()
}

// Recover ends a Fail.
func (o *SimOutput) Recover() {
	o.mu.Lock()
	o.err = nil
	o.mu.Unlock()
}

// Out drives the pin.
func (o *SimOutput) Out(level bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return fmt.Errorf("output %s: %w", o.name, o.err)
	}
	o.levels = append(o.levels, level)
	if len(o.levels) > 1024 {
		o.levels = append(o.levels[:0], o.levels[len(o.levels)-512:]...)
	}
	if o.changed != nil {
		close(o.changed)
		o.changed = nil
	}
	return nil
}

// Level returns the last level driven and whether any was.
func (o *SimOutput) Level() (level, driven bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.levels) == 0 {
		return false, false
	}
	return o.levels[len(o.levels)-1], true
}

// Levels returns the levels driven so far (at most the last 1,024), oldest
// first.
func (o *SimOutput) Levels() []bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]bool(nil), o.levels...)
}

// Changed returns a channel closed at the next Out.
func (o *SimOutput) Changed() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.changed == nil {
		o.changed = make(chan struct{})
	}
	return o.changed
}

// String names the pin.
func (o *SimOutput) String() string { return o.name }

// String describes the simulated board's devices.
func (s *Sim) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "sim: %d thermometers, %d inputs, %d outputs", len(s.thermos), len(s.inputs), len(s.outputs))
	return b.String()
}
