package hw

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// W1Sysfs reads 1-wire thermometers through the Linux kernel's w1 driver
// (the w1-gpio overlay on a Raspberry Pi: dtoverlay=w1-gpio), whose
// devices appear as directories such as /sys/bus/w1/devices/28-0316a2794bff.
type W1Sysfs struct {
	// Dir is the devices directory. Default /sys/bus/w1/devices.
	Dir string
}

func (w *W1Sysfs) dir() string {
	if w.Dir == "" {
		return "/sys/bus/w1/devices"
	}
	return w.Dir
}

// Devices lists the 1-wire devices the kernel sees now, in its id form
// ("28-0316a2794bff"), sorted; the bus masters (w1_bus_master1) are left
// out. Devices come and go as the kernel's bus search finds them.
func (w *W1Sysfs) Devices() ([]string, error) {
	entries, err := os.ReadDir(w.dir())
	if err != nil {
		return nil, fmt.Errorf("w1 sysfs: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if _, ok := OWID(e.Name()); ok && e.Name()[2] == '-' {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// W1Thermometer is a DS18B20-family thermometer read through w1 sysfs.
type W1Thermometer struct {
	dir string // its device directory
	id  string
}

// Thermometer returns the thermometer id (either id form) in w's
// directory. It need not be present yet: reads fail until it is.
func (w *W1Sysfs) Thermometer(id string) (*W1Thermometer, error) {
	ow, ok := OWID(id)
	if !ok {
		return nil, fmt.Errorf("%q is not a 1-wire id (want e.g. 28-0316a2794bff or 28.0316A2794BFF)", id)
	}
	kid := strings.ToLower(strings.Replace(ow, ".", "-", 1))
	return &W1Thermometer{dir: filepath.Join(w.dir(), kid), id: kid}, nil
}

// Read returns the temperature in °C from the device's w1_slave file
// (which the kernel fills by running a conversion and checking the CRC),
// or from its temperature file on kernels that have only that.
func (t *W1Thermometer) Read(ctx context.Context) (float64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	b, err := os.ReadFile(filepath.Join(t.dir, "w1_slave"))
	if errors.Is(err, os.ErrNotExist) {
		if _, statErr := os.Stat(t.dir); statErr != nil {
			return 0, fmt.Errorf("w1 sysfs: thermometer %s is not on the bus", t.id)
		}
		if b, err = os.ReadFile(filepath.Join(t.dir, "temperature")); err == nil {
			return parseMilli(t.id, bytes.TrimSpace(b))
		}
	}
	if err != nil {
		return 0, fmt.Errorf("w1 sysfs: thermometer %s: %w", t.id, err)
	}
	v, err := ParseW1Slave(b)
	if err != nil {
		return 0, fmt.Errorf("w1 sysfs: thermometer %s: %w", t.id, err)
	}
	return v, nil
}

// String names the thermometer.
func (t *W1Thermometer) String() string { return t.id }

// ParseW1Slave reads the kernel's w1_slave text of a thermometer:
//
//	72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
//	72 01 4b 46 7f ff 0e 10 57 t=23125
//
// and returns 23.125. A "NO" (the CRC did not match: noise on the bus) is
// an error, as is anything not shaped like this.
func ParseW1Slave(b []byte) (float64, error) {
	if len(b) > 4096 {
		return 0, fmt.Errorf("w1_slave of %d bytes, not a thermometer's", len(b))
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) != 2 {
		return 0, fmt.Errorf("w1_slave has %d lines, want 2: %q", len(lines), b)
	}
	crc := strings.Fields(lines[0])
	if len(crc) < 2 || !strings.HasPrefix(crc[len(crc)-2], "crc=") {
		return 0, fmt.Errorf("w1_slave's first line has no crc=: %q", lines[0])
	}
	switch crc[len(crc)-1] {
	case "YES":
	case "NO":
		return 0, fmt.Errorf("CRC error (noise on the bus or a loose wire): %q", lines[0])
	default:
		return 0, fmt.Errorf("w1_slave's first line ends in %q, want YES or NO", crc[len(crc)-1])
	}
	_, t, ok := strings.Cut(lines[1], "t=")
	if !ok {
		return 0, fmt.Errorf("w1_slave's second line has no t=: %q", lines[1])
	}
	return parseMilli("", []byte(strings.TrimSpace(t)))
}

// parseMilli reads millidegrees ("23125", "-1250").
func parseMilli(id string, s []byte) (float64, error) {
	m, err := strconv.ParseInt(string(s), 10, 32)
	if err != nil {
		if id != "" {
			return 0, fmt.Errorf("w1 sysfs: thermometer %s: %q is not millidegrees", id, s)
		}
		return 0, fmt.Errorf("%q is not millidegrees", s)
	}
	return float64(m) / 1000, nil
}
