package budget

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTakeGive(t *testing.T) {
	b := New("limits.receiving", 100, time.Second)
	if err := b.Take(context.Background(), 60); err != nil {
		t.Fatal(err)
	}
	if err := b.Take(context.Background(), 40); err != nil {
		t.Fatal(err)
	}
	if u := b.Used(); u != 100 {
		t.Fatalf("used %d, want 100", u)
	}
	b.Give(60)
	b.Give(40)
	if u, p := b.Used(), b.Peak(); u != 0 || p != 100 {
		t.Fatalf("used %d peak %d, want 0 and 100", u, p)
	}
}

func TestTakeTooLarge(t *testing.T) {
	b := New("limits.receiving", 100, time.Hour)
	err := b.Take(context.Background(), 101)
	var ex *ExhaustedError
	if !errors.As(err, &ex) || !strings.Contains(err.Error(), "more than the whole budget of 100") {
		t.Fatalf("got %v, want an ExhaustedError naming the whole budget", err)
	}
}

func TestTakeWaitsForGive(t *testing.T) {
	b := New("x", 100, 10*time.Second)
	if err := b.Take(context.Background(), 80); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Take(context.Background(), 50) }()
	select {
	case err := <-got:
		t.Fatalf("Take returned %v with only 20 bytes free", err)
	case <-time.After(50 * time.Millisecond):
	}
	b.Give(80)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if u := b.Used(); u != 50 {
		t.Fatalf("used %d, want 50", u)
	}
}

func TestTakeTimesOut(t *testing.T) {
	b := New("limits.receiving", 100, 30*time.Millisecond)
	if err := b.Take(context.Background(), 80); err != nil {
		t.Fatal(err)
	}
	err := b.Take(context.Background(), 50)
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.Free != 20 || ex.Want != 50 || ex.Wait < 30*time.Millisecond {
		t.Fatalf("got %v (%+v), want exhausted with 20 free after 30ms", err, ex)
	}
	if !strings.Contains(err.Error(), "limits.receiving: 50 bytes asked for, 20 of 100 free") {
		t.Fatalf("message %q does not say what and why", err)
	}
	if u := b.Used(); u != 80 {
		t.Fatalf("a failed Take changed used to %d", u)
	}
}

func TestTakeEndsWithContext(t *testing.T) {
	b := New("x", 10, time.Hour)
	if err := b.Take(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() { got <- b.Take(ctx, 1) }()
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}
