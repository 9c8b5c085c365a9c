package hw

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrNoReading is wrapped by the errors of readings that a DS18B20-family
// thermometer gives when it did not measure.
var ErrNoReading = errors.New("not a measurement")

// CheckReading rejects what a DS18B20, DS18S20 or DS1822 reports when it
// did not measure: 85 °C (its power-on value, read before a conversion
// finished, typically after a brown-out), 127.94 °C and −127 °C (reads of
// a sensor that did not answer), and anything outside the family's range
// of −55 to 125 °C.
func CheckReading(c float64) error {
	switch {
	case c == 85:
		return fmt.Errorf("85 °C, the sensor's power-on value: %w (a conversion did not finish)", ErrNoReading)
	case c == -127 || (c > 127.9 && c < 128):
		return fmt.Errorf("%g °C: %w (the sensor did not answer)", c, ErrNoReading)
	case c < -55 || c > 125 || c != c:
		return fmt.Errorf("%g °C is outside a DS18B20's range of -55 to 125 °C: %w", c, ErrNoReading)
	}
	return nil
}

// OWID turns a 1-wire device id in either usual form, owserver's
// "28.67C6697351FF" or the kernel's "28-67c6697351ff", into owserver's
// form; ok is false for anything else.
func OWID(s string) (string, bool) {
	if len(s) != 15 || (s[2] != '.' && s[2] != '-') {
		return "", false
	}
	id := strings.ToUpper(s[:2]) + "." + strings.ToUpper(s[3:])
	if !isOWID(id) {
		return "", false
	}
	return id, true
}

// OWThermometer is a DS18B20-family thermometer behind an owserver.
type OWThermometer struct {
	c  *OWServer
	id string
}

// Thermometer returns the thermometer id (either id form) behind c.
func (c *OWServer) Thermometer(id string) (*OWThermometer, error) {
	ow, ok := OWID(id)
	if !ok {
		return nil, fmt.Errorf("%q is not a 1-wire id (want e.g. 28.67C6697351FF or 28-67c6697351ff)", id)
	}
	return &OWThermometer{c: c, id: ow}, nil
}

// Read returns the temperature in °C.
func (t *OWThermometer) Read(ctx context.Context) (float64, error) {
	s, err := t.c.Read(ctx, "/"+t.id+"/temperature")
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%w %s: %s/temperature: %q is not a number", ErrOWServer, t.c.Addr, t.id, s)
	}
	return v, nil
}

// String names the thermometer.
func (t *OWThermometer) String() string { return t.id + "@" + t.c.Addr }

// OWSwitch is one channel of a DS2413 (family 3A, channels A and B) or a
// DS2408 (family 29, channels 0 to 7) behind an owserver.
type OWSwitch struct {
	c    *OWServer
	path string // "/3A.54F81BE8E78D/PIO.A"
}

// Switch returns channel ch of switch id (either id form) behind c.
func (c *OWServer) Switch(id, ch string) (*OWSwitch, error) {
	ow, ok := OWID(id)
	if !ok {
		return nil, fmt.Errorf("%q is not a 1-wire id (want e.g. 3A.54F81BE8E78D)", id)
	}
	if err := CheckSwitchChannel(ow, ch); err != nil {
		return nil, err
	}
	return &OWSwitch{c: c, path: "/" + ow + "/PIO." + strings.ToUpper(ch)}, nil
}

// CheckSwitchChannel says whether ch is a channel of the switch id
// (owserver's form): A or B on a DS2413, 0 to 7 on a DS2408.
func CheckSwitchChannel(id, ch string) error {
	switch id[:2] {
	case "3A":
		if c := strings.ToUpper(ch); c == "A" || c == "B" {
			return nil
		}
		return fmt.Errorf("a DS2413 (%s) has channels A and B, not %q", id, ch)
	case "29":
		if len(ch) == 1 && ch[0] >= '0' && ch[0] <= '7' {
			return nil
		}
		return fmt.Errorf("a DS2408 (%s) has channels 0 to 7, not %q", id, ch)
	}
	return fmt.Errorf("%s is not a switch edgekv drives (family 3A DS2413 or 29 DS2408)", id)
}

// Out sets the channel's output latch: true turns its transistor on.
func (s *OWSwitch) Out(level bool) error {
	v := "0"
	if level {
		v = "1"
	}
	return s.c.Write(context.Background(), s.path, v)
}

// Sensed reads the level at the channel's pin (sensed.X): true for high.
func (s *OWSwitch) Sensed(ctx context.Context) (bool, error) {
	path := strings.Replace(s.path, "/PIO.", "/sensed.", 1)
	v, err := s.c.Read(ctx, path)
	if err != nil {
		return false, err
	}
	switch v {
	case "1":
		return true, nil
	case "0":
		return false, nil
	}
	return false, fmt.Errorf("%w %s: %s: %q is not 0 or 1", ErrOWServer, s.c.Addr, path, v)
}

// String names the channel.
func (s *OWSwitch) String() string { return s.path + "@" + s.c.Addr }
