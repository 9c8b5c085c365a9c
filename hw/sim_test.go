package hw

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/edgekv/edgekv/boards"
)

func TestSimThermometer(t *testing.T) {
	s := NewSim()
	a, b := s.Thermometer("sim-1"), s.Thermometer("sim-1")
	if a != b {
		t.Fatal("the same id gave two thermometers")
	}
	ctx := context.Background()
	prev, err := a.Read(ctx)
	if err != nil || prev < 18 || prev > 23.1 {
		t.Fatalf("first reading %v, %v: want 18 to 23 °C", prev, err)
	}
	for i := range 10000 {
		v, err := a.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(v-prev) > 0.0505 || v < 10 || v > 35 {
			t.Fatalf("reading %d: %v after %v: a step over 0.05 °C or outside 10..35", i, v, prev)
		}
		prev = v
	}
	// Another instance of the same id starts the same walk.
	x, _ := NewSim().Thermometer("sim-1").Read(ctx)
	y, _ := NewSim().Thermometer("sim-1").Read(ctx)
	if x != y {
		t.Errorf("sim-1 started at %v and %v", x, y)
	}
	a.Fail(nil)
	if _, err := a.Read(ctx); !errors.Is(err, ErrSimFault) {
		t.Errorf("after Fail: %v", err)
	}
	a.Recover()
	if _, err := a.Read(ctx); err != nil {
		t.Errorf("after Recover: %v", err)
	}
}

func TestSimInputToggles(t *testing.T) {
	s := NewSim()
	s.TogglePeriod = 30 * time.Millisecond
	in := s.Input(boards.Pin{Name: "GPIO17"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	seen := map[bool]bool{in.Read(): true}
	for range 4 {
		if err := in.WaitForEdge(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
		seen[in.Read()] = true
	}
	if !seen[true] || !seen[false] {
		t.Errorf("levels seen over 4 edges: %v", seen)
	}
	in.Set(true)
	if !in.Read() {
		t.Error("Set(true) reads false")
	}
	if err := in.WaitForEdge(ctx); err != nil { // the Set's own edge
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.WaitForEdge(ctx) }()
	time.Sleep(100 * time.Millisecond) // held: no toggles any more
	select {
	case err := <-done:
		t.Fatalf("a held input had an edge on its own: %v", err)
	default:
	}
	in.Set(false)
	if err := <-done; err != nil || in.Read() {
		t.Errorf("after Set(false): %v, level %v", err, in.Read())
	}
	// A Set while nobody waits is not lost.
	in.Set(true)
	if err := in.WaitForEdge(ctx); err != nil || !in.Read() {
		t.Errorf("a Set made before the wait: %v, level %v", err, in.Read())
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if err := in.WaitForEdge(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitForEdge on a cancelled context: %v", err)
	}
}

func TestSimOutputRecords(t *testing.T) {
	o := NewSim().Output(boards.Pin{Name: "GPIO27"})
	if _, driven := o.Level(); driven {
		t.Fatal("a new output was driven")
	}
	ch := o.Changed()
	o.Out(true)
	select {
	case <-ch:
	default:
		t.Error("Changed was not closed by Out")
	}
	o.Out(false)
	if l, driven := o.Level(); l || !driven {
		t.Errorf("Level = %v, %v", l, driven)
	}
	if got := o.Levels(); len(got) != 2 || !got[0] || got[1] {
		t.Errorf("Levels = %v", got)
	}
}
