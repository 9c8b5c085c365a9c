package hw

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"periph.io/x/conn/v3/onewire"
	"periph.io/x/conn/v3/onewire/onewiretest"
)

// fakeSwitchDir makes a w1 sysfs device directory for a switch as the
// kernel's w1_ds2413 or w1_ds2408 driver shows it: one-byte binary
// "state" and "output" files.
func fakeSwitchDir(t *testing.T, root, id string, state, output byte) string {
	t.Helper()
	d := filepath.Join(root, id)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]byte{"state": state, "output": output} {
		if err := os.WriteFile(filepath.Join(d, name), []byte{b}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func readOne(t *testing.T, path string) byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) != 1 {
		t.Fatalf("%s: %q, %v", path, b, err)
	}
	return b[0]
}

// TestW1SwitchDS2413: a DS2413's status byte gives each channel's pin level
// and latch; driving one channel writes both latches, the other kept; a
// status that fails its complement check is an error, not a level.
func TestW1SwitchDS2413(t *testing.T) {
	root := t.TempDir()
	// A: pin high, latch 1 (off); B: pin low, latch 0 (on) → low nibble
	// 0011, high nibble its complement 1100.
	d := fakeSwitchDir(t, root, "3a-0000001b2c3d", 0xC3, 0)
	w := &W1Sysfs{Dir: root}
	a, err := w.Switch("3A.0000001B2C3D", "a")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := w.Switch("3a-0000001b2c3d", "B")
	ctx := context.Background()
	if v, err := a.Sensed(ctx); err != nil || !v {
		t.Errorf("A sensed %v, %v; want high", v, err)
	}
	if v, err := b.Sensed(ctx); err != nil || v {
		t.Errorf("B sensed %v, %v; want low", v, err)
	}
	if err := a.Out(true); err != nil { // A on: latch 0; B stays on
		t.Fatal(err)
	}
	if got := readOne(t, filepath.Join(d, "output")); got != 0x00 {
		t.Errorf("A on wrote %#02x, want 0x00", got)
	}
	if err := b.Out(false); err != nil { // B off: latch 1; A as the state says (off)
		t.Fatal(err)
	}
	if got := readOne(t, filepath.Join(d, "output")); got != 0x03 {
		t.Errorf("B off wrote %#02x, want 0x03", got)
	}
	os.WriteFile(filepath.Join(d, "state"), []byte{0x33}, 0o644) // complement wrong
	if _, err := a.Sensed(ctx); err == nil || !strings.Contains(err.Error(), "complement") {
		t.Errorf("a noisy status gave %v", err)
	}
	if err := a.Out(true); err == nil {
		t.Error("a write went out on a noisy status")
	}
	if _, err := w.Switch("3a-0000001b2c3d", "C"); err == nil {
		t.Error("channel C of a DS2413 was accepted")
	}
	if _, err := w.Switch("28-0000001b2c3d", "A"); err == nil {
		t.Error("a thermometer was accepted as a switch")
	}
}

// TestW1SwitchDS2408: channel bits of the state and the latches, which a
// DS2408's output file gives back; a device that leaves or whose driver
// is not loaded is named.
func TestW1SwitchDS2408(t *testing.T) {
	root := t.TempDir()
	d := fakeSwitchDir(t, root, "29-00000011aa22", 0x05, 0xFF)
	w := &W1Sysfs{Dir: root}
	ch := map[string]*W1Switch{}
	for _, c := range []string{"0", "1", "3"} {
		s, err := w.Switch("29-00000011aa22", c)
		if err != nil {
			t.Fatal(err)
		}
		ch[c] = s
	}
	ctx := context.Background()
	for c, want := range map[string]bool{"0": true, "1": false} {
		if v, err := ch[c].Sensed(ctx); err != nil || v != want {
			t.Errorf("channel %s sensed %v, %v; want %v", c, v, err, want)
		}
	}
	if err := ch["3"].Out(true); err != nil {
		t.Fatal(err)
	}
	if got := readOne(t, filepath.Join(d, "output")); got != 0xF7 {
		t.Errorf("3 on wrote %#02x, want 0xf7", got)
	}
	if err := ch["0"].Out(true); err != nil { // read back: 3 stays on
		t.Fatal(err)
	}
	if got := readOne(t, filepath.Join(d, "output")); got != 0xF6 {
		t.Errorf("0 on wrote %#02x, want 0xf6", got)
	}
	os.Remove(filepath.Join(d, "output"))
	if err := ch["3"].Out(false); err == nil || !strings.Contains(err.Error(), "w1_ds2408") {
		t.Errorf("no output file gave %v", err)
	}
	os.RemoveAll(d)
	if _, err := ch["0"].Sensed(ctx); err == nil || !strings.Contains(err.Error(), "not on the bus") {
		t.Errorf("a device gone gave %v", err)
	}
}

// romOf is the match-ROM prefix periph's onewire.Dev sends for a.
func romOf(a onewire.Address, cmd ...byte) []byte {
	w := []byte{0x55}
	for i := range 8 {
		w = append(w, byte(uint64(a)>>(8*i)))
	}
	return append(w, cmd...)
}

// TestOneWireSwitch drives a DS2413 and a DS2408 with their own commands
// through periph's 1-wire stack on a recorded bus: PIO access read and
// write with the complement and the 0xAA confirmation (a write that is
// not confirmed is an error), and the DS2408's register reads.
func TestOneWireSwitch(t *testing.T) {
	a13, _ := Address("3a-0000001b2c3d")
	a08, _ := Address("29-00000011aa22")
	pb := &onewiretest.Playback{Ops: []onewiretest.IO{
		{W: romOf(a13, 0xF5), R: []byte{0xC3}},             // Sensed A: high
		{W: romOf(a13, 0xF5), R: []byte{0xC3}},             // Out(A, on): latches A=1 B=0
		{W: romOf(a13, 0x5A, 0xFC, 0x03), R: []byte{0xAA}}, // both on, unused bits 1
		{W: romOf(a13, 0xF5), R: []byte{0xC3}},
		{W: romOf(a13, 0x5A, 0xFC, 0x03), R: []byte{0xFF}}, // not confirmed
		{W: romOf(a08, 0xF0, 0x88, 0x00), R: []byte{0x05}}, // Sensed 2: high
		{W: romOf(a08, 0xF0, 0x89, 0x00), R: []byte{0xFF}}, // Out(7, on)
		{W: romOf(a08, 0x5A, 0x7F, 0x80), R: []byte{0xAA}},
	}}
	b := NewOneWireBus(pb)
	sa, err := b.Switch("3A.0000001B2C3D", "A")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if v, err := sa.Sensed(ctx); err != nil || !v {
		t.Errorf("A sensed %v, %v", v, err)
	}
	if err := sa.Out(true); err != nil {
		t.Fatal(err)
	}
	if err := sa.Out(true); err == nil || !strings.Contains(err.Error(), "not confirmed") {
		t.Errorf("an unconfirmed write gave %v", err)
	}
	s2, _ := b.Switch("29-00000011aa22", "2")
	if v, err := s2.Sensed(ctx); err != nil || !v {
		t.Errorf("2 sensed %v, %v", v, err)
	}
	s7, _ := b.Switch("29-00000011aa22", "7")
	if err := s7.Out(true); err != nil {
		t.Fatal(err)
	}
	if err := pb.Close(); err != nil { // every recorded operation was played
		t.Fatal(err)
	}
	if _, err := b.Switch("29-00000011aa22", "8"); err == nil {
		t.Error("channel 8 of a DS2408 was accepted")
	}
}
