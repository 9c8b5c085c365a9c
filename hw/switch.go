package hw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"periph.io/x/conn/v3/onewire"
)

// The 1-wire switches edgekv drives, on every bus: a DS2413 (family 3A,
// channels A and B) and a DS2408 (family 29, channels 0 to 7). Their
// outputs are open-drain transistors. As in owserver's PIO.X, true turns
// a channel's transistor on (it pulls the line low: a relay board's input
// is driven); the chips' own latch bit is the opposite, 0 for on. Sensed
// reads the voltage at the channel's pin: true for high.

// channelBit returns the bit number of channel ch on the switch family
// fam (0x3A or 0x29): A→0, B→1 on a DS2413, the digit on a DS2408.
func channelBit(id string, ch string) (int, error) {
	ow, ok := OWID(id)
	if !ok {
		return 0, fmt.Errorf("%q is not a 1-wire id (want e.g. 3A.54F81BE8E78D or 3a-54f81be8e78d)", id)
	}
	if err := CheckSwitchChannel(ow, ch); err != nil {
		return 0, err
	}
	if ow[:2] == "3A" {
		return int(strings.ToUpper(ch)[0] - 'A'), nil
	}
	return int(ch[0] - '0'), nil
}

// DS2413 PIO access: the status byte has, per channel, the pin level and
// the latch (A: bits 0 and 1, B: bits 2 and 3), and their complement in
// the high nibble.
func ds2413Status(b byte) (byte, error) {
	if b&0x0f != ^b>>4 {
		return 0, fmt.Errorf("DS2413 status %#02x fails its complement check (noise on the bus)", b)
	}
	return b & 0x0f, nil
}

// ds2413Pin and ds2413Latch read channel bit (0 A, 1 B) of a status.
func ds2413Pin(st byte, bit int) bool   { return st>>(2*bit)&1 == 1 }
func ds2413Latch(st byte, bit int) bool { return st>>(2*bit+1)&1 == 1 }

// ds2413Latches turns a status into the write byte's two latch bits.
func ds2413Latches(st byte) byte {
	var l byte
	for bit := range 2 {
		if ds2413Latch(st, bit) {
			l |= 1 << bit
		}
	}
	return l
}

// withLatch returns latches with channel bit set for level: a 0 latch
// turns the transistor on.
func withLatch(latches byte, bit int, on bool) byte {
	if on {
		return latches &^ (1 << bit)
	}
	return latches | 1<<bit
}

// W1Switch is one channel of a DS2413 or DS2408 through the kernel's
// w1_ds2413 and w1_ds2408 drivers: one-byte binary files "state" (the
// chip's status: pin levels, and a DS2413's latches) and "output" (the
// latches; a DS2408's can be read back).
type W1Switch struct {
	dir string // the device's directory
	id  string
	fam byte
	bit int
	mu  *sync.Mutex // shared by the device's channels: writes are read-modify-write
}

// w1Locks serialise the read-modify-write of the channels of one device
// directory, whichever W1Sysfs value opened them.
var w1Locks sync.Map // directory → *sync.Mutex

// Switch returns channel ch of the DS2413 or DS2408 id (either id form)
// in w's directory. It need not be present yet: reads and writes fail
// until it is.
func (w *W1Sysfs) Switch(id, ch string) (*W1Switch, error) {
	bit, err := channelBit(id, ch)
	if err != nil {
		return nil, err
	}
	ow, _ := OWID(id)
	kid := strings.ToLower(strings.Replace(ow, ".", "-", 1))
	dir := filepath.Join(w.dir(), kid)
	mu, _ := w1Locks.LoadOrStore(dir, new(sync.Mutex))
	fam := byte(0x3A)
	if ow[:2] == "29" {
		fam = 0x29
	}
	return &W1Switch{dir: dir, id: kid, fam: fam, bit: bit, mu: mu.(*sync.Mutex)}, nil
}

// readByte reads the one-byte file name of the device.
func (s *W1Switch) readByte(name string) (byte, error) {
	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, statErr := os.Stat(s.dir); statErr != nil {
				return 0, fmt.Errorf("w1 sysfs: switch %s is not on the bus", s.id)
			}
			return 0, fmt.Errorf("w1 sysfs: switch %s has no %s file (is the kernel's w1_ds%s driver loaded?)", s.id, name, s.driver())
		}
		return 0, fmt.Errorf("w1 sysfs: switch %s: %w", s.id, err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return 0, fmt.Errorf("w1 sysfs: switch %s: reading %s: %w", s.id, name, err)
	}
	return b[0], nil
}

func (s *W1Switch) driver() string {
	if s.fam == 0x29 {
		return "2408"
	}
	return "2413"
}

// Out sets the channel's latch: true turns its transistor on. The other
// channels keep theirs (read first, then written in one byte).
func (s *W1Switch) Out(level bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var latches byte
	if s.fam == 0x29 {
		l, err := s.readByte("output")
		if err != nil {
			return err
		}
		latches = l
	} else {
		b, err := s.readByte("state")
		if err != nil {
			return err
		}
		st, err := ds2413Status(b)
		if err != nil {
			return fmt.Errorf("w1 sysfs: switch %s: %w", s.id, err)
		}
		latches = ds2413Latches(st)
	}
	f, err := os.OpenFile(filepath.Join(s.dir, "output"), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("w1 sysfs: switch %s: %w", s.id, err)
	}
	_, err = f.Write([]byte{withLatch(latches, s.bit, level)})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil { // the driver answers EIO when the chip did not confirm
		return fmt.Errorf("w1 sysfs: switch %s: writing output: %w", s.id, err)
	}
	return nil
}

// Sensed reads the level at the channel's pin: true for high.
func (s *W1Switch) Sensed(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	b, err := s.readByte("state")
	if err != nil {
		return false, err
	}
	if s.fam == 0x29 {
		return b>>s.bit&1 == 1, nil
	}
	st, err := ds2413Status(b)
	if err != nil {
		return false, fmt.Errorf("w1 sysfs: switch %s: %w", s.id, err)
	}
	return ds2413Pin(st, s.bit), nil
}

// String names the channel.
func (s *W1Switch) String() string { return fmt.Sprintf("%s channel %d", s.id, s.bit) }

// OneWireSwitch is one channel of a DS2413 or DS2408 on a OneWireBus (a
// DS248x bridge), driven with the chips' own commands.
type OneWireSwitch struct {
	b   *OneWireBus
	dev onewire.Dev
	id  string
	fam byte
	bit int
}

// Switch returns channel ch of the DS2413 or DS2408 id (either form) on b.
func (b *OneWireBus) Switch(id, ch string) (*OneWireSwitch, error) {
	bit, err := channelBit(id, ch)
	if err != nil {
		return nil, err
	}
	a, err := Address(id)
	if err != nil {
		return nil, err
	}
	return &OneWireSwitch{b: b, dev: onewire.Dev{Bus: b.bus, Addr: a}, id: kernelID(a), fam: byte(a), bit: bit}, nil
}

// The chips' commands.
const (
	ds2413Read     = 0xF5 // PIO access read: a status byte follows
	pioWrite       = 0x5A // PIO access write (both): data, ~data; 0xAA confirms
	pioConfirm     = 0xAA
	ds2408ReadRegs = 0xF0 // read PIO registers from TA1 TA2
	ds2408PinState = 0x88 // PIO logic state
	ds2408Latches  = 0x89 // PIO output latch state
)

// status reads a DS2413's status (b.mu held).
func (s *OneWireSwitch) status() (byte, error) {
	var r [1]byte
	if err := s.dev.Tx([]byte{ds2413Read}, r[:]); err != nil {
		return 0, fmt.Errorf("switch %s: %w", s.id, err)
	}
	st, err := ds2413Status(r[0])
	if err != nil {
		return 0, fmt.Errorf("switch %s: %w", s.id, err)
	}
	return st, nil
}

// register reads a DS2408 register (b.mu held).
func (s *OneWireSwitch) register(addr byte) (byte, error) {
	var r [1]byte
	if err := s.dev.Tx([]byte{ds2408ReadRegs, addr, 0}, r[:]); err != nil {
		return 0, fmt.Errorf("switch %s: %w", s.id, err)
	}
	return r[0], nil
}

// Out sets the channel's latch: true turns its transistor on; the other
// channels keep theirs.
func (s *OneWireSwitch) Out(level bool) error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	var data byte
	if s.fam == 0x29 {
		l, err := s.register(ds2408Latches)
		if err != nil {
			return err
		}
		data = withLatch(l, s.bit, level)
	} else {
		st, err := s.status()
		if err != nil {
			return err
		}
		data = withLatch(ds2413Latches(st), s.bit, level) | 0xFC // the unused bits are written as 1s
	}
	var r [1]byte
	if err := s.dev.Tx([]byte{pioWrite, data, ^data}, r[:]); err != nil {
		return fmt.Errorf("switch %s: %w", s.id, err)
	}
	if r[0] != pioConfirm {
		return fmt.Errorf("switch %s: the write was not confirmed (got %#02x, want 0xaa: noise on the bus)", s.id, r[0])
	}
	return nil
}

// Sensed reads the level at the channel's pin: true for high.
func (s *OneWireSwitch) Sensed(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if s.fam == 0x29 {
		v, err := s.register(ds2408PinState)
		return v>>s.bit&1 == 1, err
	}
	st, err := s.status()
	return ds2413Pin(st, s.bit), err
}

// String names the channel.
func (s *OneWireSwitch) String() string {
	return fmt.Sprintf("%s channel %d@%s", s.id, s.bit, strings.TrimSpace(s.b.bus.String()))
}
