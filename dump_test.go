package edgekv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/edgekv/edgekv/tree"
)

// TestWriteDump: a save file never replaces one that exists unless asked,
// is whole when it has its name, leaves no temporary file behind, and a
// full disk is a clear error.
func TestWriteDump(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dumps")
	if err := writeDump(dir, "a.dkv", []byte("one"), false); err != nil {
		t.Fatal(err)
	}
	err := writeDump(dir, "a.dkv", []byte("two"), false)
	if !errors.Is(err, tree.ErrConflict) || !strings.Contains(err.Error(), "replace") {
		t.Fatalf("saving over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a.dkv")); string(b) != "one" {
		t.Fatalf("the refused save changed the file: %q", b)
	}
	if err := writeDump(dir, "a.dkv", []byte("three"), true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a.dkv")); string(b) != "three" {
		t.Fatalf("replace: %q", b)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("files left in the dump directory: %v", ents)
	}
	full := diskError("/d/x.dkv", fmt.Errorf("write: %w", syscall.ENOSPC))
	if !errors.Is(full, tree.ErrUnavailable) || !strings.Contains(full.Error(), "the disk is full") {
		t.Fatalf("full disk: %v", full)
	}
}
