package store

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMemFSCrash(t *testing.T) {
	write := func(t *testing.T, f File, s string) {
		t.Helper()
		if _, err := f.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	create := func(t *testing.T, m *MemFS, name string) File {
		t.Helper()
		f, err := m.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	must := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name  string
		setup func(t *testing.T, m *MemFS)
		want  map[string]string // files after Crash(nil)
	}{
		{"unsynced bytes lost", func(t *testing.T, m *MemFS) {
			f := create(t, m, "a")
			must(t, m.SyncDir())
			write(t, f, "abc")
			must(t, f.Sync())
			write(t, f, "def")
		}, map[string]string{"a": "abc"}},
		{"create undone without SyncDir", func(t *testing.T, m *MemFS) {
			f := create(t, m, "a")
			write(t, f, "abc")
			must(t, f.Sync())
		}, map[string]string{}},
		{"rename undone", func(t *testing.T, m *MemFS) {
			f := create(t, m, "a")
			write(t, f, "abc")
			must(t, f.Sync())
			must(t, m.SyncDir())
			must(t, m.Rename("a", "b"))
		}, map[string]string{"a": "abc"}},
		{"rename durable", func(t *testing.T, m *MemFS) {
			f := create(t, m, "a")
			write(t, f, "abc")
			must(t, f.Sync())
			must(t, m.Rename("a", "b"))
			must(t, m.SyncDir())
		}, map[string]string{"b": "abc"}},
		{"remove undone", func(t *testing.T, m *MemFS) {
			create(t, m, "a")
			must(t, m.SyncDir())
			must(t, m.Remove("a"))
		}, map[string]string{"a": ""}},
		{"create over a file undone", func(t *testing.T, m *MemFS) {
			f := create(t, m, "a")
			write(t, f, "old")
			must(t, f.Sync())
			must(t, m.SyncDir())
			f = create(t, m, "a")
			write(t, f, "new")
			must(t, f.Sync())
		}, map[string]string{"a": "old"}},
		{"truncate durable", func(t *testing.T, m *MemFS) {
			f := create(t, m, "a")
			must(t, m.SyncDir())
			write(t, f, "abcdef")
			must(t, f.Sync())
			write(t, f, "ghi")
			must(t, m.Truncate("a", 2))
		}, map[string]string{"a": "ab"}},
		{"renamed file keeps its synced bytes", func(t *testing.T, m *MemFS) {
			f := create(t, m, "a")
			must(t, m.Rename("a", "b"))
			must(t, m.SyncDir())
			write(t, f, "via old handle")
			must(t, f.Sync())
		}, map[string]string{"b": "via old handle"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMemFS()
			tc.setup(t, m)
			m.Crash(nil)
			got := map[string]string{}
			for _, name := range listFiles(t, m) {
				got[name] = string(readFile(t, m, name))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("files after crash (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMemFSTornWrite(t *testing.T) {
	seen := map[int]bool{}
	for seed := range uint64(200) {
		m := NewMemFS()
		f, _ := m.Create("a")
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(m.SyncDir())
		_, err := f.Write([]byte("abc"))
		must(err)
		must(f.Sync())
		_, err = f.Write([]byte("defgh"))
		must(err)
		m.Crash(rand.New(rand.NewPCG(seed, 0)))
		got := string(readFile(t, m, "a"))
		if !strings.HasPrefix("abcdefgh", got) || len(got) < 3 {
			t.Fatalf("seed %d: %q is not the synced bytes plus a prefix of the rest", seed, got)
		}
		seen[len(got)] = true

		if _, err := f.Write([]byte("x")); !errors.Is(err, errStaleHandle) {
			t.Errorf("write through a handle from before the crash = %v", err)
		}
	}
	if len(seen) != 6 {
		t.Errorf("torn lengths seen: %v, want all of 3…8", seen)
	}
}

func TestMemFSFailAfter(t *testing.T) {
	m := NewMemFS()
	f, err := m.Create("a")
	if err != nil {
		t.Fatal(err)
	}
	m.FailAfter("write", 1, errInjected)
	if _, err := f.Write([]byte("ok")); err != nil {
		t.Fatalf("first write: %v", err)
	}
	n, err := f.Write([]byte("1234"))
	if !errors.Is(err, errInjected) || n != 2 {
		t.Fatalf("second write = %d, %v; want 2, injected failure", n, err)
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != "a" || pe.Op != "write" {
		t.Errorf("err = %#v, want a *fs.PathError for write a", err)
	}
	if _, err := f.Write([]byte("x")); !errors.Is(err, errInjected) {
		t.Errorf("third write = %v, want the failure to persist", err)
	}
	if got := string(readFile(t, m, "a")); got != "ok12" {
		t.Errorf("content = %q, want the short write kept", got)
	}
	m.FailAfter("write", 0, nil)
	if _, err := f.Write([]byte("!")); err != nil {
		t.Errorf("write after clearing: %v", err)
	}
	m.FailAfter("sync", 0, errInjected)
	m.Crash(nil)
	f, _ = m.Create("b")
	if err := f.Sync(); err != nil {
		t.Errorf("Crash did not clear injected failures: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("FailAfter with an unknown op did not panic")
		}
	}()
	m.FailAfter("fsync", 0, errInjected)
}

// TestMemFSFlashBytes: each Sync counts the pages holding bytes written
// since the last one, a partly filled page again each time it grows.
func TestMemFSFlashBytes(t *testing.T) {
	m := NewMemFS()
	f, err := m.Create("f")
	if err != nil {
		t.Fatal(err)
	}
	step := func(n int, want int64) {
		t.Helper()
		if _, err := f.Write(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if got := m.FlashBytes(); got != want {
			t.Fatalf("after %d more bytes: %d flash bytes, want %d", n, got, want)
		}
	}
	step(100, 4096)            // page 0
	step(100, 8192)            // page 0 again
	step(4000, 16384)          // pages 0 and 1
	step(0, 16384)             // nothing new: nothing written
	step(3*4096, 16384+4*4096) // pages 1 (again) to 4
}
