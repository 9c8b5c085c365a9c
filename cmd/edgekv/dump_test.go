package main

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runCLI is run under a name that the tests' local run helpers do not
// shadow.
func runCLI(args []string, stdout, stderr io.Writer) int { return run(args, stdout, stderr) }

// fakeTerminal is a writer whose Stat says what it is: with
// os.ModeCharDevice it claims to be a terminal, as an *os.File on a tty
// does.
type fakeTerminal struct {
	bytes.Buffer
	mode    fs.FileMode
	statErr error
}

func (f *fakeTerminal) Stat() (fs.FileInfo, error) { return fakeInfo{f.mode}, f.statErr }

type fakeInfo struct{ mode fs.FileMode }

func (i fakeInfo) Name() string       { return "tty" }
func (i fakeInfo) Size() int64        { return 0 }
func (i fakeInfo) Mode() fs.FileMode  { return i.mode }
func (i fakeInfo) ModTime() time.Time { return time.Time{} }
func (i fakeInfo) IsDir() bool        { return false }
func (i fakeInfo) Sys() any           { return nil }

// TestProgress: dump load's progress bar draws on a terminal only: every
// 500 records and at the last, each drawing over the one before, and the
// end (-1) finishes the line if anything was drawn.
func TestProgress(t *testing.T) {
	bar := func(n, total int) string {
		done := 40 * n / total
		return "\r[" + strings.Repeat("#", done) + strings.Repeat(" ", 40-done) + "] " + strconv.Itoa(n) + "/" + strconv.Itoa(total) + " records"
	}
	drive := func(w io.Writer, total int) {
		p := progressTo(w, total)
		for i := 1; i <= total; i++ {
			p(i)
		}
		p(-1)
	}

	tty := func() *fakeTerminal { return &fakeTerminal{mode: os.ModeDevice | os.ModeCharDevice} }
	t.Run("terminal", func(t *testing.T) {
		w := tty()
		drive(w, 1200)
		if want := bar(500, 1200) + bar(1000, 1200) + bar(1200, 1200) + "\n"; w.String() != want {
			t.Errorf("bar on a terminal:\n got %q\nwant %q", w.String(), want)
		}
	})
	t.Run("terminal, few records", func(t *testing.T) {
		w := tty()
		drive(w, 3)
		if want := bar(3, 3) + "\n"; w.String() != want {
			t.Errorf("bar on a terminal:\n got %q\nwant %q", w.String(), want)
		}
	})
	t.Run("terminal, stopped before anything was drawn", func(t *testing.T) {
		w := tty()
		p := progressTo(w, 1200)
		p(1)
		p(-1)
		if w.Len() != 0 {
			t.Errorf("got %q, want nothing (not even an empty line)", w.String())
		}
	})

	file, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	buf, fake := &bytes.Buffer{}, &fakeTerminal{}
	failing := &fakeTerminal{mode: os.ModeDevice | os.ModeCharDevice, statErr: errors.New("closed")}
	for _, tc := range []struct {
		name string
		w    io.Writer
	}{
		{"buffer", buf},
		{"regular file", file},
		{"pipe", pw},
		{"fake regular file", fake},
		{"fake terminal whose Stat fails", failing},
	} {
		t.Run("not a terminal: "+tc.name, func(t *testing.T) {
			if isTerminal(tc.w) {
				t.Fatal("taken for a terminal")
			}
			drive(tc.w, 1200)
		})
	}
	for _, b := range []*bytes.Buffer{buf, &fake.Buffer, &failing.Buffer} {
		if b.Len() != 0 {
			t.Errorf("the bar was drawn on a writer that is not a terminal: %q", b.String())
		}
	}
	if fi, err := file.Stat(); err != nil || fi.Size() != 0 {
		t.Errorf("the bar was written to a regular file: %v, %v", fi, err)
	}
	pw.Close()
	if b, _ := io.ReadAll(pr); len(b) != 0 {
		t.Errorf("the bar was written to a pipe: %q", b)
	}
}
