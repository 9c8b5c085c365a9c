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
