package hw

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"

	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/conn/v3/onewire"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/ds18b20"
	"periph.io/x/devices/v3/ds248x"
)

// OneWireBus is a 1-wire bus driven through periph.io: a DS2482/DS2483
// bridge on I²C (OpenDS248x), or any periph onewire.Bus (tests: periph's
// onewiretest.Playback). Transactions on one bus are serialised: a
// conversion holds the bus until it has been read.
type OneWireBus struct {
	bus    onewire.Bus
	closer io.Closer // what OpenDS248x opened, or nil
	mu     sync.Mutex
}

// Close closes what the bus holds open (the I²C bus of a DS248x).
func (b *OneWireBus) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closer == nil {
		return nil
	}
	err := b.closer.Close()
	b.closer = nil
	return err
}

// NewOneWireBus wraps a periph 1-wire bus.
func NewOneWireBus(b onewire.Bus) *OneWireBus { return &OneWireBus{bus: b} }

// OpenDS248x opens a DS2482-100 or DS2483 at addr (0x18 to 0x1B; 0 for
// 0x18) on the I²C bus named i2c ("/dev/i2c-1", or "1").
func OpenDS248x(i2c string, addr uint16) (*OneWireBus, error) {
	if err := gpioInit(); err != nil {
		return nil, fmt.Errorf("ds248x: %w", err)
	}
	if addr == 0 {
		addr = 0x18
	}
	b, err := i2creg.Open(i2c)
	if err != nil {
		return nil, fmt.Errorf("ds248x: I²C bus %q: %w", i2c, err)
	}
	d, err := ds248x.New(b, addr, &ds248x.DefaultOpts)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("ds248x on %s at %#x: %w", i2c, addr, err)
	}
	ob := NewOneWireBus(d)
	ob.closer = b
	return ob, nil
}

// Address turns a 1-wire id (either form) into periph's address: the ROM's
// family, serial and CRC, little-endian (the kernel's and owserver's ids
// leave the CRC out; it is computed).
func Address(id string) (onewire.Address, error) {
	ow, ok := OWID(id)
	if !ok {
		return 0, fmt.Errorf("%q is not a 1-wire id (want e.g. 28-0316a2794bff)", id)
	}
	fam, _ := strconv.ParseUint(ow[:2], 16, 8)
	serial, _ := strconv.ParseUint(ow[3:], 16, 48)
	var rom [8]byte
	binary.LittleEndian.PutUint64(rom[:], serial<<8|fam)
	rom[7] = onewire.CalcCRC(rom[:7])
	return onewire.Address(binary.LittleEndian.Uint64(rom[:])), nil
}

// kernelID is a's id in the kernel's form: "28-0316a2794bff".
func kernelID(a onewire.Address) string {
	return fmt.Sprintf("%02x-%012x", uint64(a)&0xff, uint64(a)>>8&(1<<48-1))
}

// Devices searches the bus and returns the ids found, kernel form, sorted.
func (b *OneWireBus) Devices() ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	addrs, err := b.bus.Search(false)
	if err != nil {
		return nil, fmt.Errorf("1-wire search on %s: %w", b.bus, err)
	}
	ids := make([]string, len(addrs))
	for i, a := range addrs {
		ids[i] = kernelID(a)
	}
	sort.Strings(ids)
	return ids, nil
}

// OneWireThermometer is a DS18B20-family thermometer on a OneWireBus, at
// 12 bits (the factory setting: periph's driver writes the sensor's
// EEPROM when the resolution differs, so it is never changed).
type OneWireThermometer struct {
	b    *OneWireBus
	addr onewire.Address
	id   string
	dev  *ds18b20.Dev // made at the first read that reaches the sensor
}

// Thermometer returns thermometer id (either form) on b.
func (b *OneWireBus) Thermometer(id string) (*OneWireThermometer, error) {
	a, err := Address(id)
	if err != nil {
		return nil, err
	}
	switch fam := uint64(a) & 0xff; fam {
	case 0x28, 0x10, 0x22:
	default:
		return nil, fmt.Errorf("%s is family %02x, not a DS18B20, DS18S20 or DS1822", id, fam)
	}
	return &OneWireThermometer{b: b, addr: a, id: kernelID(a)}, nil
}

// Read runs a conversion and returns the temperature in °C.
func (t *OneWireThermometer) Read(ctx context.Context) (float64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	t.b.mu.Lock()
	defer t.b.mu.Unlock()
	if t.dev == nil {
		d, err := ds18b20.New(t.b.bus, t.addr, 12)
		if err != nil {
			return 0, fmt.Errorf("thermometer %s: %w", t.id, err)
		}
		t.dev = d
	}
	var e physic.Env
	if err := t.dev.Sense(&e); err != nil {
		return 0, fmt.Errorf("thermometer %s: %w", t.id, err)
	}
	return e.Temperature.Celsius(), nil
}

// String names the thermometer.
func (t *OneWireThermometer) String() string { return t.id + "@" + strings.TrimSpace(t.b.bus.String()) }
