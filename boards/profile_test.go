package boards

import (
	"slices"
	"testing"
)

func TestProfiles(t *testing.T) {
	want := []string{"beaglebone-black", "generic", "rpi3", "rpi4", "rpi5", "rpizero2w", "sim"}
	if got := ProfileNames(); !slices.Equal(got, want) {
		t.Fatalf("ProfileNames() = %q, want %q", got, want)
	}
	ps := Profiles()
	for i, p := range ps {
		if p.Name != want[i] {
			t.Errorf("Profiles()[%d] = %q, want %q", i, p.Name, want[i])
		}
		if p.Description == "" {
			t.Errorf("%s has no description", p.Name)
		}
		seen := map[string]bool{}
		for _, pin := range p.Pins {
			if seen[pin.Name] {
				t.Errorf("%s: pin %s listed twice", p.Name, pin.Name)
			}
			seen[pin.Name] = true
			if pin.Chip == "" || pin.Line < 0 {
				t.Errorf("%s: pin %+v has no chip or line", p.Name, pin)
			}
		}
		switch p.OneWire.Kind {
		case OneWireSysfs:
			if p.OneWire.Path != "/sys/bus/w1/devices" {
				t.Errorf("%s: w1 path %q", p.Name, p.OneWire.Path)
			}
		case OneWireNone, OneWireSim:
		default:
			t.Errorf("%s: 1-wire kind %q", p.Name, p.OneWire.Kind)
		}
	}
	if _, ok := Lookup("rpi2"); ok {
		t.Errorf("Lookup(rpi2) found a profile")
	}
}

func TestPins(t *testing.T) {
	tests := []struct {
		board, pin string
		want       Pin
	}{
		{"rpi3", "GPIO17", Pin{Name: "GPIO17", Header: 11, Chip: "gpiochip0", Line: 17}},
		{"rpi4", "GPIO4", Pin{Name: "GPIO4", Header: 7, Chip: "gpiochip0", Line: 4}},
		{"rpi4", "gpio27", Pin{Name: "GPIO27", Header: 13, Chip: "gpiochip0", Line: 27}},
		{"rpi5", "GPIO21", Pin{Name: "GPIO21", Header: 40, Chip: "gpiochip0", Line: 21}},
		{"rpizero2w", "GPIO26", Pin{Name: "GPIO26", Header: 37, Chip: "gpiochip0", Line: 26}},
		{"beaglebone-black", "P8_7", Pin{Name: "P8_7", Header: 7, Chip: "gpiochip2", Line: 2}},
		{"beaglebone-black", "P9_12", Pin{Name: "P9_12", Header: 12, Chip: "gpiochip1", Line: 28}},
		{"beaglebone-black", "P8_14", Pin{Name: "P8_14", Header: 14, Chip: "gpiochip0", Line: 26}},
		{"sim", "GPIO17", Pin{Name: "GPIO17", Chip: "sim", Line: 17}},
	}
	for _, tt := range tests {
		p, ok := Lookup(tt.board)
		if !ok {
			t.Fatalf("Lookup(%q) failed", tt.board)
		}
		got, ok := p.Pin(tt.pin)
		if !ok || got != tt.want {
			t.Errorf("%s.Pin(%q) = %+v, %v; want %+v", tt.board, tt.pin, got, ok, tt.want)
		}
	}
	p, _ := Lookup("rpi4")
	if _, ok := p.Pin("GPIO2"); ok {
		t.Errorf("rpi4 lists GPIO2 (I2C SDA) as a free pin")
	}
	if g, _ := Lookup("generic"); len(g.Pins) != 0 || g.OneWire.Kind != OneWireNone {
		t.Errorf("generic = %+v", g)
	}
}

func TestProfilesAreCopies(t *testing.T) {
	p, _ := Lookup("rpi4")
	p.Pins[0].Line = 99
	p.Name = "x"
	if q, _ := Lookup("rpi4"); q.Pins[0].Line == 99 {
		t.Errorf("Lookup returns the package's pins, not a copy")
	}
	ps := Profiles()
	ps[0].Pins[0].Line = 99
	if Profiles()[0].Pins[0].Line == 99 {
		t.Errorf("Profiles returns the package's pins, not a copy")
	}
}
