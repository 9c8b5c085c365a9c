package hw

import (
	"context"
	"slices"
	"testing"

	"periph.io/x/conn/v3/onewire"
	"periph.io/x/conn/v3/onewire/onewiretest"
)

// TestAddress: a kernel id gets the ROM's CRC that a real DS18B20 carries
// (this address is one periph's own DS18B20 recordings use).
func TestAddress(t *testing.T) {
	a, err := Address("28-0000070e41ac")
	if err != nil || a != 0x740000070e41ac28 {
		t.Fatalf("Address = %#x, %v; want 0x740000070e41ac28", uint64(a), err)
	}
	if b, _ := Address("28.0000070E41AC"); b != a {
		t.Errorf("owserver's form gave %#x", uint64(b))
	}
	if id := kernelID(a); id != "28-0000070e41ac" {
		t.Errorf("kernelID = %s", id)
	}
	if _, err := Address("28-xyz"); err == nil {
		t.Error("a bad id was accepted")
	}
}

// scratchpad is a DS18B20's scratchpad for millidegrees m (a multiple of
// 62.5) at 12 bits, with its CRC.
func scratchpad(m int) []byte {
	raw := uint16(int16(m * 16 / 1000))
	b := []byte{byte(raw), byte(raw >> 8), 0x4b, 0x46, 0x7f, 0xff, 0x0e, 0x10}
	return append(b, onewire.CalcCRC(b))
}

// TestOneWireThermometer reads a DS18B20 through periph's 1-wire stack on
// a recorded bus (onewiretest.Playback in place of a DS248x): the
// conversion with a strong pull-up, the scratchpad read, the temperature;
// and finds the devices a search returns.
func TestOneWireThermometer(t *testing.T) {
	a, _ := Address("28-0000070e41ac")
	sw, _ := Address("3a-000000000001") // a DS2413 on the same bus
	var rom [8]byte
	for i := range rom {
		rom[i] = byte(uint64(a) >> (8 * i))
	}
	match := func(cmd byte) []byte { return append(append([]byte{0x55}, rom[:]...), cmd) }
	pb := &onewiretest.Playback{
		Ops: []onewiretest.IO{
			{W: match(0xbe), R: scratchpad(23125)}, // the driver checks the resolution
			{W: match(0x44), Pull: true},           // convert, powered
			{W: match(0xbe), R: scratchpad(23125)},
			{W: match(0x44), Pull: true},
			{W: match(0xbe), R: scratchpad(-10125)},
			{W: []byte{0xf0}}, {W: []byte{0xf0}}, // a search: a pass per device
		},
		Devices: []onewire.Address{a, sw},
	}
	b := NewOneWireBus(pb)
	th, err := b.Thermometer("28-0000070e41ac")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []float64{23.125, -10.125} {
		v, err := th.Read(context.Background())
		if err != nil || v != want {
			t.Fatalf("Read = %v, %v; want %v", v, err, want)
		}
	}
	ids, err := b.Devices()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{"28-0000070e41ac", "3a-000000000001"}) {
		t.Errorf("Devices = %v", ids)
	}
	if err := pb.Close(); err != nil { // every recorded operation was played
		t.Fatal(err)
	}
	if _, err := b.Thermometer("3a-000000000001"); err == nil {
		t.Error("a DS2413 was accepted as a thermometer")
	}
}

type countCloser struct{ n int }

func (c *countCloser) Close() error { c.n++; return nil }

// TestOneWireBusClose: Close releases what the bus holds open, once.
func TestOneWireBusClose(t *testing.T) {
	b := NewOneWireBus(&onewiretest.Playback{})
	c := &countCloser{}
	b.closer = c
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if c.n != 1 {
		t.Errorf("closed %d times, want once", c.n)
	}
}
