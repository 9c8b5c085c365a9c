package boards

import (
	"slices"
	"strconv"
	"strings"
)

// Profile describes a board model: where its 1-wire bus is by default and
// how its GPIO header pins map to character-device lines.
type Profile struct {
	// Name is what a config's board: says ("rpi4").
	Name string
	// Description is a one-line human description.
	Description string
	// OneWire is the default 1-wire source.
	OneWire OneWireSource
	// GPIOChip is the character-device GPIO chip of the header pins
	// ("gpiochip0"), "sim" for the simulated board, "" when each pin names
	// its own chip.
	GPIOChip string
	// GPIOChipLabel is the kernel's label of GPIOChip ("pinctrl-bcm2711"),
	// which identifies it even when chips are numbered differently; "" when
	// not fixed.
	GPIOChipLabel string
	// Pins are the named general-purpose header pins, in header order. Not
	// every line of the board, only those free for general use.
	Pins []Pin
}

// OneWireSource is where a board's 1-wire devices are found by default.
type OneWireSource struct {
	Kind OneWireKind
	// Path is the sysfs directory for OneWireSysfs, else "".
	Path string
}

// OneWireKind is a kind of 1-wire source.
type OneWireKind string

// The 1-wire source kinds.
const (
	// OneWireNone: no 1-wire bus unless the config names one.
	OneWireNone OneWireKind = "none"
	// OneWireSysfs: the kernel's w1 sysfs files (w1-gpio overlay).
	OneWireSysfs OneWireKind = "w1-sysfs"
	// OneWireSim: simulated sensors.
	OneWireSim OneWireKind = "sim"
)

// W1SysfsDir is where the kernel's w1 driver lists 1-wire devices.
const W1SysfsDir = "/sys/bus/w1/devices"

// Pin is a named GPIO pin of a board.
type Pin struct {
	// Name is the pin's name in configs: "GPIO17" on a Raspberry Pi (the
	// BCM number), "P8_7" on a BeagleBone (header P8, pin 7).
	Name string
	// Header is the physical pin number on its header (11 for GPIO17 on a
	// Pi's 40-pin header), 0 for a simulated pin.
	Header int
	// Chip is the GPIO character device ("gpiochip0").
	Chip string
	// Line is the line offset on Chip.
	Line int
}

// Pin returns the profile's pin called name (case-insensitive).
func (p Profile) Pin(name string) (Pin, bool) {
	for _, pin := range p.Pins {
		if strings.EqualFold(pin.Name, name) {
			return pin, true
		}
	}
	return Pin{}, false
}

// piHeader is the 40-pin Raspberry Pi header's general-purpose GPIOs (those
// not taken by I2C, SPI or the UART by default): BCM number → physical pin.
// GPIO4 is the w1-gpio overlay's default 1-wire pin.
var piHeader = []struct{ bcm, header int }{
	{4, 7}, {17, 11}, {18, 12}, {27, 13}, {22, 15}, {23, 16}, {24, 18},
	{25, 22}, {5, 29}, {6, 31}, {12, 32}, {13, 33}, {19, 35}, {16, 36},
	{26, 37}, {20, 38}, {21, 40},
}

// piPins returns the Pi header pins on chip; the line offset is the BCM
// number on every model (the Pi 5's RP1 chip included).
func piPins(chip string) []Pin {
	pins := make([]Pin, len(piHeader))
	for i, h := range piHeader {
		pins[i] = Pin{Name: "GPIO" + strconv.Itoa(h.bcm), Header: h.header, Chip: chip, Line: h.bcm}
	}
	return pins
}

// simPins are the simulated board's pins: the Pi names, so that a config
// written for sim moves to a Pi unchanged.
func simPins() []Pin {
	pins := piPins("sim")
	for i := range pins {
		pins[i].Header = 0
	}
	return pins
}

// bbbPins are a few BeagleBone Black header pins free for GPIO with the HDMI
// and eMMC enabled. On the AM335x, GPIO bank N is gpiochipN in
// BeagleBoard.org's kernels; the legacy sysfs number is 32*N+line.
var bbbPins = []Pin{
	{Name: "P8_7", Header: 7, Chip: "gpiochip2", Line: 2},    // GPIO2_2, gpio66
	{Name: "P8_8", Header: 8, Chip: "gpiochip2", Line: 3},    // GPIO2_3, gpio67
	{Name: "P8_9", Header: 9, Chip: "gpiochip2", Line: 5},    // GPIO2_5, gpio69
	{Name: "P8_10", Header: 10, Chip: "gpiochip2", Line: 4},  // GPIO2_4, gpio68
	{Name: "P8_11", Header: 11, Chip: "gpiochip1", Line: 13}, // GPIO1_13, gpio45
	{Name: "P8_12", Header: 12, Chip: "gpiochip1", Line: 12}, // GPIO1_12, gpio44
	{Name: "P8_14", Header: 14, Chip: "gpiochip0", Line: 26}, // GPIO0_26, gpio26
	{Name: "P8_15", Header: 15, Chip: "gpiochip1", Line: 15}, // GPIO1_15, gpio47
	{Name: "P8_16", Header: 16, Chip: "gpiochip1", Line: 14}, // GPIO1_14, gpio46
	{Name: "P8_17", Header: 17, Chip: "gpiochip0", Line: 27}, // GPIO0_27, gpio27
	{Name: "P8_18", Header: 18, Chip: "gpiochip2", Line: 1},  // GPIO2_1, gpio65
	{Name: "P8_26", Header: 26, Chip: "gpiochip1", Line: 29}, // GPIO1_29, gpio61
	{Name: "P9_12", Header: 12, Chip: "gpiochip1", Line: 28}, // GPIO1_28, gpio60
	{Name: "P9_15", Header: 15, Chip: "gpiochip1", Line: 16}, // GPIO1_16, gpio48
	{Name: "P9_23", Header: 23, Chip: "gpiochip1", Line: 17}, // GPIO1_17, gpio49
	{Name: "P9_27", Header: 27, Chip: "gpiochip3", Line: 19}, // GPIO3_19, gpio115
}

var w1Sysfs = OneWireSource{Kind: OneWireSysfs, Path: W1SysfsDir}

// profiles are the known boards, by name.
var profiles = []Profile{
	{
		Name:        "beaglebone-black",
		Description: "BeagleBone Black (AM335x): P8/P9 header pins, 1-wire through the kernel's w1 driver (an overlay such as BB-W1-P9.12)",
		OneWire:     w1Sysfs,
		Pins:        bbbPins,
	},
	{
		Name:        "generic",
		Description: "any Linux box: no 1-wire bus and no named pins unless the config gives them",
		OneWire:     OneWireSource{Kind: OneWireNone},
		GPIOChip:    "gpiochip0",
	},
	{
		Name:          "rpi3",
		Description:   "Raspberry Pi 3 (BCM2837): 40-pin header, 1-wire through the w1-gpio overlay (GPIO4)",
		OneWire:       w1Sysfs,
		GPIOChip:      "gpiochip0",
		GPIOChipLabel: "pinctrl-bcm2835",
		Pins:          piPins("gpiochip0"),
	},
	{
		Name:          "rpi4",
		Description:   "Raspberry Pi 4 (BCM2711): 40-pin header, 1-wire through the w1-gpio overlay (GPIO4)",
		OneWire:       w1Sysfs,
		GPIOChip:      "gpiochip0",
		GPIOChipLabel: "pinctrl-bcm2711",
		Pins:          piPins("gpiochip0"),
	},
	{
		Name:          "rpi5",
		Description:   "Raspberry Pi 5 (BCM2712, header on the RP1, whose chip older kernels (before 6.6.45) number gpiochip4): 1-wire through the w1-gpio overlay (GPIO4)",
		OneWire:       w1Sysfs,
		GPIOChip:      "gpiochip0",
		GPIOChipLabel: "pinctrl-rp1",
		Pins:          piPins("gpiochip0"),
	},
	{
		Name:          "rpizero2w",
		Description:   "Raspberry Pi Zero 2 W (RP3A0/BCM2710): 40-pin header, 1-wire through the w1-gpio overlay (GPIO4)",
		OneWire:       w1Sysfs,
		GPIOChip:      "gpiochip0",
		GPIOChipLabel: "pinctrl-bcm2835",
		Pins:          piPins("gpiochip0"),
	},
	{
		Name:        "sim",
		Description: "simulated board: simulated 1-wire sensors and GPIO pins (Pi pin names), runs anywhere",
		OneWire:     OneWireSource{Kind: OneWireSim},
		GPIOChip:    "sim",
		Pins:        simPins(),
	},
}

// Lookup returns the profile called name.
func Lookup(name string) (Profile, bool) {
	for _, p := range profiles {
		if p.Name == name {
			return clone(p), true
		}
	}
	return Profile{}, false
}

// Profiles returns every known profile, sorted by name.
func Profiles() []Profile {
	ps := make([]Profile, len(profiles))
	for i, p := range profiles {
		ps[i] = clone(p)
	}
	return ps
}

// ProfileNames returns the names of the known profiles, sorted.
func ProfileNames() []string {
	names := make([]string, len(profiles))
	for i, p := range profiles {
		names[i] = p.Name
	}
	return names
}

// clone copies p so that callers cannot change the package's tables.
func clone(p Profile) Profile {
	p.Pins = slices.Clone(p.Pins)
	return p
}
