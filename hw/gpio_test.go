package hw

import (
	"os"
	"strings"
	"testing"

	"github.com/edgekv/edgekv/boards"
)

// TestOpenGPIONoChips: periph's driver initialises on a machine without
// GPIO chips, and opening a pin then says what is missing.
func TestOpenGPIONoChips(t *testing.T) {
	if _, err := os.Stat("/dev/gpiochip0"); err == nil {
		t.Skip("this machine has GPIO chips")
	}
	prof, _ := boards.Lookup("rpi4")
	g, err := OpenGPIO(prof)
	if err != nil {
		t.Fatal(err)
	}
	pin, _ := prof.Pin("GPIO17")
	if _, err := g.Input(pin, "up"); err == nil || !strings.Contains(err.Error(), "GPIO17") || !strings.Contains(err.Error(), "gpiochip0") {
		t.Errorf("Input on a machine without chips: %v", err)
	}
	if _, err := g.Output(pin); err == nil {
		t.Error("Output on a machine without chips succeeded")
	}
	if _, err := g.Input(pin, "sideways"); err == nil || !strings.Contains(err.Error(), "pull") {
		t.Errorf("a bad pull: %v", err)
	}
}
