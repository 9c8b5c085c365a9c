package hw

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"periph.io/x/conn/v3/driver/driverreg"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/host/v3/gpioioctl"

	"github.com/edgekv/edgekv/boards"
)

// GPIO opens a board's pins through periph.io's character-device driver
// (/dev/gpiochipN), by the chip and line offset its profile gives.
type GPIO struct {
	open func(boards.Pin) (gpio.PinIO, error)
}

var gpioInit = sync.OnceValue(func() error {
	_, err := driverreg.Init()
	return err
})

// OpenGPIO initialises periph's GPIO driver for board prof. A pin's chip
// is the one whose kernel label is the profile's GPIOChipLabel when it has
// one (a Pi 5's RP1 header is gpiochip4 on kernels before 6.6.45,
// gpiochip0 after), else the one the pin names. On a machine without GPIO
// chips it succeeds, and each pin then fails to open with an error that
// says so.
func OpenGPIO(prof boards.Profile) (*GPIO, error) {
	if err := gpioInit(); err != nil {
		return nil, fmt.Errorf("gpio: %w", err)
	}
	label := prof.GPIOChipLabel
	return &GPIO{open: func(p boards.Pin) (gpio.PinIO, error) { return openChipLine(p, label) }}, nil
}

// GPIOWith opens pins with open: tests pass periph's gpiotest pins.
func GPIOWith(open func(boards.Pin) (gpio.PinIO, error)) *GPIO { return &GPIO{open: open} }

func openChipLine(p boards.Pin, label string) (gpio.PinIO, error) {
	var names []string
	byLabel := false
	for _, chip := range gpioioctl.Chips {
		byLabel = byLabel || (label != "" && chip.Label() == label)
	}
	for _, chip := range gpioioctl.Chips {
		match := chip.Name() == p.Chip || strings.TrimPrefix(chip.Path(), "/dev/") == p.Chip
		if byLabel {
			match = chip.Label() == label
		}
		if match {
			if l := chip.ByNumber(p.Line); l != nil {
				return l, nil
			}
			return nil, fmt.Errorf("gpio: %s has no line %d (pin %s)", p.Chip, p.Line, p.Name)
		}
		names = append(names, chip.Name())
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("gpio: pin %s: this machine has no GPIO chips (want %s)", p.Name, p.Chip)
	}
	return nil, fmt.Errorf("gpio: pin %s: no chip %s (chips: %s)", p.Name, p.Chip, strings.Join(names, ", "))
}

// pulls are the config's pull names.
var pulls = map[string]gpio.Pull{"": gpio.Float, "none": gpio.Float, "up": gpio.PullUp, "down": gpio.PullDown}

// Input opens pin as an input with pull (up, down, none) and edge events
// on both edges.
func (g *GPIO) Input(pin boards.Pin, pull string) (*GPIOInput, error) {
	pl, ok := pulls[pull]
	if !ok {
		return nil, fmt.Errorf("gpio: pull %q (want up, down or none)", pull)
	}
	p, err := g.open(pin)
	if err != nil {
		return nil, err
	}
	if err := p.In(pl, gpio.BothEdges); err != nil {
		return nil, fmt.Errorf("gpio: %s as input: %w", pin.Name, err)
	}
	return &GPIOInput{p: p}, nil
}

// Output opens pin as an output.
func (g *GPIO) Output(pin boards.Pin) (*GPIOOutput, error) {
	p, err := g.open(pin)
	if err != nil {
		return nil, err
	}
	return &GPIOOutput{p: p, name: pin.Name}, nil
}

// GPIOInput is an input pin.
type GPIOInput struct{ p gpio.PinIO }

// Read returns the pin's level (true: high).
func (in *GPIOInput) Read() bool { return in.p.Read() == gpio.High }

// WaitForEdge returns at the pin's next edge (or one that came since the
// last call), or with ctx's error. periph's wait takes a timeout, not a
// context: it waits in slices of 100 ms.
func (in *GPIOInput) WaitForEdge(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if in.p.WaitForEdge(100 * time.Millisecond) {
			return nil
		}
	}
}

// Edge reports (and takes) an edge that came since the last wait, waiting
// at most a millisecond (with a zero timeout, periph's fake pins may
// report a queued edge as none).
func (in *GPIOInput) Edge() bool { return in.p.WaitForEdge(time.Millisecond) }

// GPIOOutput is an output pin.
type GPIOOutput struct {
	p    gpio.PinIO
	name string
}

// Out drives the pin high (true) or low.
func (o *GPIOOutput) Out(level bool) error {
	if err := o.p.Out(gpio.Level(level)); err != nil {
		return fmt.Errorf("gpio: %s: %w", o.name, err)
	}
	return nil
}
