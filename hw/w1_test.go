package hw

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The fake sysfs tree in testdata/w1/devices is shaped as the kernel
// writes it: w1_slave files with the CRC line (YES and NO), the DS18B20's
// power-on 85000, a newer kernel's temperature file alone, and a bus
// master that is not a device.
func TestW1SysfsTestdata(t *testing.T) {
	w := &W1Sysfs{Dir: "testdata/w1/devices"}
	ids, err := w.Devices()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10-000802b4a1c3", "22-000001b2c3d4", "28-01d2c3a4b5f6", "28-0316a2794bff", "28-0516a2795cff"}
	if !slices.Equal(ids, want) {
		t.Errorf("Devices = %v, want %v", ids, want)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		id   string
		want float64
		err  string
	}{
		{"28-0316a2794bff", 23.125, ""},
		{"28.0316A2794BFF", 23.125, ""}, // owserver's form of the same id
		{"10-000802b4a1c3", 22.875, ""},
		{"28-01d2c3a4b5f6", -1.25, ""},
		{"28-0516a2795cff", 0, "CRC error"},
		{"28-ffffffffffff", 0, "not on the bus"},
	} {
		th, err := w.Thermometer(tc.id)
		if err != nil {
			t.Fatal(err)
		}
		v, err := th.Read(ctx)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, %v; want an error containing %q", tc.id, v, err, tc.err)
			}
			continue
		}
		if err != nil || v != tc.want {
			t.Errorf("%s: %v, %v; want %v", tc.id, v, err, tc.want)
		}
	}
	// 85 °C reads as a number; CheckReading is what refuses it.
	th, _ := w.Thermometer("22-000001b2c3d4")
	if v, err := th.Read(ctx); err != nil || !errors.Is(CheckReading(v), ErrNoReading) {
		t.Errorf("the power-on value: %v, %v", v, err)
	}
}

// TestW1SysfsComesAndGoes: a device that leaves the bus fails its reads and
// leaves the scan; when it is back, both see it again.
func TestW1SysfsComesAndGoes(t *testing.T) {
	dir := t.TempDir()
	w := &W1Sysfs{Dir: dir}
	th, err := w.Thermometer("28-0316a2794bff")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := th.Read(ctx); err == nil || !strings.Contains(err.Error(), "not on the bus") {
		t.Errorf("absent: %v", err)
	}
	dev := filepath.Join(dir, "28-0316a2794bff")
	if err := os.Mkdir(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dev, "w1_slave"), []byte("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"), 0o644)
	if ids, _ := w.Devices(); !slices.Equal(ids, []string{"28-0316a2794bff"}) {
		t.Errorf("after it came: %v", ids)
	}
	if v, err := th.Read(ctx); err != nil || v != 23.125 {
		t.Errorf("present: %v, %v", v, err)
	}
	os.RemoveAll(dev)
	if ids, _ := w.Devices(); len(ids) != 0 {
		t.Errorf("after it went: %v", ids)
	}
	if _, err := th.Read(ctx); err == nil {
		t.Error("a device that left still reads")
	}
	if _, err := (&W1Sysfs{Dir: filepath.Join(dir, "nope")}).Devices(); err == nil {
		t.Error("a missing sysfs directory lists devices")
	}
}

func TestParseW1Slave(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		err  string
	}{
		{"72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n", 23.125, ""},
		{"f6 ff 4b 46 7f ff 0a 10 f1 : crc=f1 YES\nf6 ff 4b 46 7f ff 0a 10 f1 t=-625\n", -0.625, ""},
		{"72 01 4b 46 7f ff 0e 10 57 : crc=57 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n", 0, "CRC error"},
		{"", 0, "want 2"},
		{"garbage\nmore\n", 0, "no crc="},
		{"x : crc=57 MAYBE\nt=1\n", 0, "want YES or NO"},
		{"x : crc=57 YES\nno temperature\n", 0, "no t="},
		{"x : crc=57 YES\nx t=hot\n", 0, "not millidegrees"},
	} {
		v, err := ParseW1Slave([]byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, %v; want an error containing %q", tc.in, v, err, tc.err)
			}
			continue
		}
		if err != nil || v != tc.want {
			t.Errorf("%q: %v, %v; want %v", tc.in, v, err, tc.want)
		}
	}
}

func FuzzParseW1Slave(f *testing.F) {
	f.Add([]byte("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"))
	f.Add([]byte("72 01 4b 46 7f ff 0e 10 57 : crc=57 NO\n72 01 4b 46 7f ff 0e 10 57 t=85000\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := ParseW1Slave(in)
		if err == nil && (v != v || v > 1<<31/1000+1 || v < -(1<<31)/1000-1) {
			t.Fatalf("%q gave %v", in, v)
		}
	})
}
