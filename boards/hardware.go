package boards

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Hardware binds the board's sensors and GPIO pins to tree paths
// (DESIGN.md §8). A reading is written to its path as a JSON-shaped value
// (README: "Hardware"); an output follows the value at its path, and the
// board that owns the pin drives it, whichever node wrote the value.
type Hardware struct {
	// Sensors are thermometers, each read every Interval.
	Sensors []Sensor `yaml:"sensors"`
	// Inputs are GPIO inputs, written on every debounced change.
	Inputs []Input `yaml:"inputs"`
	// Outputs are GPIO outputs that follow a tree value.
	Outputs []Output `yaml:"outputs"`
	// HomeAssistant announces the bindings to Home Assistant.
	HomeAssistant HomeAssistant `yaml:"home_assistant"`
}

// HomeAssistant is Home Assistant's MQTT discovery for the board's bound
// hardware (README: Home Assistant).
type HomeAssistant struct {
	// Enabled announces every binding: sensors as sensor, inputs as
	// binary_sensor, outputs as switch, one device per board. Default off.
	Enabled bool `yaml:"enabled"`
	// Prefix is Home Assistant's discovery prefix. Default homeassistant.
	Prefix string `yaml:"prefix"`
}

// DiscoveryPrefix returns Prefix or its default.
func (h HomeAssistant) DiscoveryPrefix() string {
	if h.Prefix == "" {
		return "homeassistant"
	}
	return h.Prefix
}

// Sensor binds one thermometer to a tree path.
type Sensor struct {
	// Device is the sensor's id on its bus: a 1-wire id in owserver's
	// form ("28.67C6697351FF") or the kernel's ("28-67c6697351ff"); on the
	// sim bus any name ("sim-1"), which makes a simulated thermometer.
	// "all" binds every thermometer found on the bus (w1-sysfs or an
	// owserver), each at the child of Path named by its id in the
	// kernel's form (home.temp.28-0316a2794bff), as they come; the bus is
	// scanned again every minute.
	Device string `yaml:"device"`
	// Bus is where the sensor is: "sim" (simulated), "w1-sysfs" (the
	// kernel's w1 driver, /sys/bus/w1/devices; "w1-sysfs:DIR" for another
	// directory), "ds248x:I2CBUS[:ADDR]" (a DS2482/DS2483 bridge through
	// periph.io, "ds248x:/dev/i2c-1:0x18") or "owserver:HOST:PORT" (OWFS's
	// owserver, any board).
	// Default the board profile's 1-wire source: sim on the sim board,
	// w1-sysfs on a Raspberry Pi or a BeagleBone.
	Bus string `yaml:"bus"`
	// Path is where its readings are written, in MoaT-KV's path syntax
	// ("home.living.temp").
	Path string `yaml:"path"`
	// Interval is how often it is read. Default 10s, at least 100ms.
	Interval Duration `yaml:"interval"`
	// Deadband: a reading is written only when it differs from the last
	// one written by at least this much (°C). Default 0: every change.
	Deadband float64 `yaml:"deadband"`
	// Scale and Offset correct a reading: written = read × scale + offset.
	// Default 1 and 0.
	Scale  *float64 `yaml:"scale"`
	Offset float64  `yaml:"offset"`
}

// Input binds a GPIO input pin, or a sensed channel of a 1-wire switch,
// to a tree path.
type Input struct {
	// Pin is the pin's name in the board profile ("GPIO17"). Give either a
	// pin or a device.
	Pin string `yaml:"pin"`
	// Device, Channel and Bus name a 1-wire switch's channel, as for an
	// output (DS2413 A/B, DS2408 0-7, on a bus as for an output); it is read
	// every Interval (default 1s, at least 100ms).
	Device   string   `yaml:"device"`
	Channel  string   `yaml:"channel"`
	Bus      string   `yaml:"bus"`
	Interval Duration `yaml:"interval"`
	// Path is where its level is written (true: high, or low if Invert).
	Path string `yaml:"path"`
	// Pull is the pin's bias: up, down or none (the default).
	Pull string `yaml:"pull"`
	// Debounce is how long a new level must hold before it counts.
	// Default 20ms; 0 takes every edge.
	Debounce *Duration `yaml:"debounce"`
	// Invert reports a low pin as true (a switch to ground with pull: up).
	Invert bool `yaml:"invert"`
}

// Output binds a GPIO output pin, or a channel of a 1-wire switch, to the
// tree value that drives it.
type Output struct {
	// Pin is the pin's name in the board profile ("GPIO27"). Give either a
	// pin or a device.
	Pin string `yaml:"pin"`
	// Device is a 1-wire switch: a DS2413 (family 3A, Channel A or B) or a
	// DS2408 (family 29, Channel 0 to 7), on Bus.
	Device  string `yaml:"device"`
	Channel string `yaml:"channel"`
	// Bus is the switch's bus, as for a sensor: w1-sysfs[:DIR] (the
	// kernel's w1_ds2413 and w1_ds2408 drivers), ds248x:I2CBUS[:ADDR] or
	// owserver:HOST:PORT. Default: the board's 1-wire bus.
	Bus string `yaml:"bus"`
	// Path holds the command: true/false, 1/0 or "on"/"off". Any node may
	// write it.
	Path string `yaml:"path"`
	// State is where the board writes what the pin does now. Default the
	// child "state" of Path.
	State string `yaml:"state"`
	// Safe is the level the output takes at start, at shutdown, and while
	// Path is deleted or holds a value it cannot apply. Default false
	// (off): a relay on a heater must not stay on because a node died.
	Safe bool `yaml:"safe"`
	// Invert drives the pin low for true (an active-low relay board).
	Invert bool `yaml:"invert"`
}

// AllDevices as a sensor's device binds every thermometer on its bus.
const AllDevices = "all"

// Defaults of hardware bindings.
const (
	DefaultSensorInterval = 10 * time.Second
	MinSensorInterval     = 100 * time.Millisecond
	DefaultDebounce       = 20 * time.Millisecond
	MaxDebounce           = 10 * time.Second
)

// Every returns the sensor's read interval (Interval or its default).
func (s Sensor) Every() time.Duration {
	if s.Interval == 0 {
		return DefaultSensorInterval
	}
	return s.Interval.Std()
}

// BusOn returns the sensor's bus on board p: Bus, or the board's default
// 1-wire source ("sim" on the sim board; "" where edgekv has none yet).
func (s Sensor) BusOn(p Profile) string { return busOn(s.Bus, p) }

// BusOn returns the bus of the output's 1-wire switch on board p: Bus, or
// the board's default 1-wire source.
func (o Output) BusOn(p Profile) string { return busOn(o.Bus, p) }

// BusOn returns the bus of the input's 1-wire switch on board p: Bus, or
// the board's default 1-wire source.
func (in Input) BusOn(p Profile) string { return busOn(in.Bus, p) }

func busOn(bus string, p Profile) string {
	if bus != "" {
		return bus
	}
	switch p.OneWire.Kind {
	case OneWireSim:
		return "sim"
	case OneWireSysfs:
		return "w1-sysfs:" + p.OneWire.Path
	}
	return ""
}

// DS248xBus splits a bus "ds248x:I2CBUS[:ADDR]" ("ds248x:/dev/i2c-1:0x18")
// into the I²C bus name and the bridge's address (default 0x18); msg says
// what is wrong, if anything.
func DS248xBus(bus string) (i2c string, addr uint16, msg string) {
	rest := strings.TrimPrefix(bus, "ds248x:")
	addr = 0x18
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		a, err := strconv.ParseUint(strings.TrimPrefix(rest[i+1:], "0x"), 16, 16)
		if err != nil || a < 0x18 || a > 0x1b {
			return "", 0, fmt.Sprintf("address %q is not a DS248x's (0x18 to 0x1b)", rest[i+1:])
		}
		rest, addr = rest[:i], uint16(a)
	}
	if rest == "" {
		return "", 0, "no I²C bus (want e.g. ds248x:/dev/i2c-1 or ds248x:1)"
	}
	return rest, addr, ""
}

// oneWireID reports whether s is a 1-wire id in owserver's or the
// kernel's form: two hex digits, '.' or '-', twelve hex digits.
func oneWireID(s string) bool {
	if len(s) != 15 || (s[2] != '.' && s[2] != '-') {
		return false
	}
	for i := range len(s) {
		if i != 2 && !strings.ContainsRune("0123456789ABCDEFabcdef", rune(s[i])) {
			return false
		}
	}
	return true
}

// Factor returns the sensor's scale (Scale or 1).
func (s Sensor) Factor() float64 {
	if s.Scale == nil {
		return 1
	}
	return *s.Scale
}

// Every returns how often a switch channel input is read (Interval or 1s).
func (in Input) Every() time.Duration {
	if in.Interval == 0 {
		return time.Second
	}
	return in.Interval.Std()
}

// Settle returns the input's debounce time (Debounce or its default).
func (in Input) Settle() time.Duration {
	if in.Debounce == nil {
		return DefaultDebounce
	}
	return in.Debounce.Std()
}

// StatePath returns where the output's state is written (State, or the
// child "state" of Path in MoaT-KV's path syntax).
func (o Output) StatePath() string {
	if o.State != "" {
		return o.State
	}
	return o.Path + ".state"
}

// hardware checks the bindings against the board profile: pins that exist
// and are bound once, paths given (and, with checkPath, well-formed) and
// bound once, intervals and numbers in range.
func (v *validator) hardware(checkPath func(string) error) {
	h := v.c.Hardware
	prof, ok := Lookup(v.c.Board)
	if !ok {
		return // reported as board
	}
	paths := map[string]string{} // tree path → YAML path of its first binding
	path := func(yamlPath, p string, required bool) {
		switch {
		case p == "" && required:
			v.add(yamlPath, "a tree path is required")
			return
		case p == "":
			return
		}
		if checkPath != nil {
			if err := checkPath(p); err != nil {
				v.add(yamlPath, "%q is not a tree path: %v", p, err)
				return
			}
		}
		if first, dup := paths[p]; dup {
			v.add(yamlPath, "%q is already bound by %s: each path has one writer on a board", p, first)
			return
		}
		paths[p] = yamlPath
	}
	pins := map[string]string{} // pin name (upper case) → YAML path of its binding
	pin := func(yamlPath, name string) {
		if name == "" {
			v.add(yamlPath, "a pin is required (one of the %s profile's: %s)", prof.Name, pinNames(prof))
			return
		}
		p, ok := prof.Pin(name)
		if !ok {
			v.add(yamlPath, "board %s has no pin %q (its pins: %s)", prof.Name, name, pinNames(prof))
			return
		}
		if first, dup := pins[p.Name]; dup {
			v.add(yamlPath, "pin %s is already bound by %s", p.Name, first)
			return
		}
		pins[p.Name] = yamlPath
	}
	devices := map[string]string{}
	for i, s := range h.Sensors {
		at := fmt.Sprintf("hardware.sensors[%d]", i)
		if s.Device == "" {
			v.add(at+".device", "a device id is required")
		} else if first, dup := devices[s.Device+"@"+s.BusOn(prof)]; dup {
			v.add(at+".device", "device %q is already bound by %s", s.Device, first)
		} else {
			devices[s.Device+"@"+s.BusOn(prof)] = at + ".device"
		}
		path(at+".path", s.Path, true)
		all := s.Device == AllDevices
		switch bus := s.BusOn(prof); {
		case bus == "sim" && all:
			v.add(at+".device", "the sim bus has no devices to find: name each simulated sensor")
		case bus == "sim":
		case v.oneWireBus(at, prof, s.Bus, bus) && !oneWireID(s.Device) && !all:
			v.add(at+".device", "%q is not a 1-wire id (want e.g. 28-0316a2794bff or 28.0316A2794BFF, or all)", s.Device)
		}
		if s.Interval != 0 && s.Interval.Std() < MinSensorInterval {
			v.add(at+".interval", "%s is shorter than %s", s.Interval, MinSensorInterval)
		}
		if s.Deadband < 0 || math.IsNaN(s.Deadband) || math.IsInf(s.Deadband, 0) {
			v.add(at+".deadband", "%v is not a non-negative number", s.Deadband)
		}
		if s.Scale != nil && (*s.Scale == 0 || math.IsNaN(*s.Scale) || math.IsInf(*s.Scale, 0)) {
			v.add(at+".scale", "%v is not a usable factor (non-zero, finite)", *s.Scale)
		}
		if math.IsNaN(s.Offset) || math.IsInf(s.Offset, 0) {
			v.add(at+".offset", "%v is not a finite number", s.Offset)
		}
	}
	switches := map[string]string{} // a switch channel is an input or an output, once
	for i, in := range h.Inputs {
		at := fmt.Sprintf("hardware.inputs[%d]", i)
		switch {
		case in.Pin != "" && in.Device != "":
			v.add(at, "give a pin or a device, not both")
		case in.Device != "":
			v.switchOutput(at, prof, Output{Device: in.Device, Channel: in.Channel, Bus: in.Bus}, switches)
			if in.Interval != 0 && in.Interval.Std() < MinSensorInterval {
				v.add(at+".interval", "%s is shorter than %s", in.Interval, MinSensorInterval)
			}
		default:
			pin(at+".pin", in.Pin)
		}
		path(at+".path", in.Path, true)
		switch in.Pull {
		case "", "none", "up", "down":
		default:
			v.add(at+".pull", "%q is not a pull (want up, down or none)", in.Pull)
		}
		if in.Debounce != nil && (in.Debounce.Std() < 0 || in.Debounce.Std() > MaxDebounce) {
			v.add(at+".debounce", "%s is out of range (0 to %s)", in.Debounce, MaxDebounce)
		}
	}
	if hp := h.HomeAssistant.Prefix; hp != "" {
		if msg := topicPrefixProblem(hp); msg != "" {
			v.add("hardware.home_assistant.prefix", "%q %s", hp, msg)
		} else if topicsOverlap(hp, v.c.KV.Prefix) || topicsOverlap(hp, v.c.Sync.Prefix) {
			v.add("hardware.home_assistant.prefix", "%q overlaps the kv or sync prefix", hp)
		}
	}
	for i, o := range h.Outputs {
		at := fmt.Sprintf("hardware.outputs[%d]", i)
		switch {
		case o.Pin != "" && o.Device != "":
			v.add(at, "give a pin or a device, not both")
		case o.Device != "":
			v.switchOutput(at, prof, o, switches)
		default:
			pin(at+".pin", o.Pin)
		}
		path(at+".path", o.Path, true)
		if o.Path != "" {
			path(at+".state", o.StatePath(), false)
		}
	}
}

// oneWireBus checks bus, a binding's 1-wire bus on the board (given is
// what the config says, "" for the board's default), and reports whether
// it is one of w1-sysfs, ds248x or owserver.
func (v *validator) oneWireBus(at string, prof Profile, given, bus string) bool {
	switch {
	case strings.HasPrefix(bus, "owserver:"):
		if _, _, msg := splitAddr(strings.TrimPrefix(bus, "owserver:"), false); msg != "" {
			v.add(at+".bus", "%q: owserver's address %s", given, msg)
			return false
		}
	case strings.HasPrefix(bus, "ds248x:"):
		if _, _, msg := DS248xBus(bus); msg != "" {
			v.add(at+".bus", "%q: %s", given, msg)
			return false
		}
	case bus == "w1-sysfs" || strings.HasPrefix(bus, "w1-sysfs:"):
		if dir := strings.TrimPrefix(strings.TrimPrefix(bus, "w1-sysfs"), ":"); dir != "" && !strings.HasPrefix(dir, "/") {
			v.add(at+".bus", "%q: the w1 sysfs directory must be an absolute path", given)
			return false
		}
	case given == "":
		v.add(at+".bus", "board %s has no default 1-wire bus: give bus: w1-sysfs, ds248x:I2CBUS or owserver:HOST:PORT", prof.Name)
		return false
	default:
		v.add(at+".bus", "%q is not a bus (want sim, w1-sysfs[:DIR], ds248x:I2CBUS[:ADDR] or owserver:HOST:PORT)", given)
		return false
	}
	return true
}

// switchOutput checks an output on a 1-wire switch's channel.
func (v *validator) switchOutput(at string, prof Profile, o Output, seen map[string]string) {
	if !oneWireID(o.Device) {
		v.add(at+".device", "%q is not a 1-wire id (want e.g. 3A.54F81BE8E78D)", o.Device)
		return
	}
	ch := strings.ToUpper(o.Channel)
	switch fam := strings.ToUpper(o.Device[:2]); {
	case fam == "3A" && (ch == "A" || ch == "B"):
	case fam == "29" && len(ch) == 1 && ch[0] >= '0' && ch[0] <= '7':
	case fam == "3A":
		v.add(at+".channel", "a DS2413 has channels A and B, not %q", o.Channel)
		return
	case fam == "29":
		v.add(at+".channel", "a DS2408 has channels 0 to 7, not %q", o.Channel)
		return
	default:
		v.add(at+".device", "family %s is not a switch edgekv drives (3A DS2413, 29 DS2408)", fam)
		return
	}
	bus := o.BusOn(prof)
	if bus == "sim" {
		v.add(at+".bus", "the sim bus has no 1-wire switches: bind a pin of the sim board, or give bus: owserver:HOST:PORT, w1-sysfs or ds248x:I2CBUS")
		return
	}
	if !v.oneWireBus(at, prof, o.Bus, bus) {
		return
	}
	key := strings.ToUpper(strings.Replace(o.Device, "-", ".", 1)) + "/" + ch + "@" + bus
	if first, dup := seen[key]; dup {
		v.add(at+".channel", "channel %s of %s is already bound by %s", ch, o.Device, first)
		return
	}
	seen[key] = at
}

// pinNames lists a profile's pin names for error messages.
func pinNames(p Profile) string {
	if len(p.Pins) == 0 {
		return "none"
	}
	names := make([]string, len(p.Pins))
	for i, pin := range p.Pins {
		names[i] = pin.Name
	}
	return strings.Join(names, ", ")
}
