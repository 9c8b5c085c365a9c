package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// FS is the small file system a Store needs: one flat directory of named
// files. Names are plain file names (no separators). Missing files are
// reported with errors that match fs.ErrNotExist.
//
// Durability contract, which both DirFS and MemFS follow: bytes written to
// a File are durable once File.Sync returns; a Create, Rename or Remove is
// durable once a later SyncDir returns; Truncate is durable when it
// returns.
type FS interface {
	// Create creates or truncates name and opens it for writing.
	Create(name string) (File, error)
	// OpenAppend opens an existing file for appending.
	OpenAppend(name string) (File, error)
	// ReadFile returns the whole content of name.
	ReadFile(name string) ([]byte, error)
	// Rename renames oldname to newname, replacing newname if it exists.
	Rename(oldname, newname string) error
	// Remove removes name.
	Remove(name string) error
	// List returns the names of the files in the directory, sorted. A
	// missing directory lists as empty.
	List() ([]string, error)
	// Truncate cuts (or zero-extends) name to size bytes, durably.
	Truncate(name string, size int64) error
	// SyncDir makes the directory's entries (creates, renames, removes)
	// durable.
	SyncDir() error
}

// File is a file opened for writing by an FS.
type File interface {
	Write(p []byte) (n int, err error)
	Sync() error
	Close() error
}

// validName reports whether name is a plain file name.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." &&
		!strings.ContainsAny(name, "/\\\x00") && !strings.ContainsRune(name, filepath.Separator)
}

func nameError(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
}

// DirFS returns an FS on the operating system's directory dir. The
// directory is created (mode 0o755, parent directory synced) on the first
// Create; until then it may be missing, and List reports it as empty.
// Truncate fsyncs the file; SyncDir fsyncs the directory.
func DirFS(dir string) FS { return &dirFS{dir: dir} }

type dirFS struct{ dir string }

func (d *dirFS) path(op, name string) (string, error) {
	if !validName(name) {
		return "", nameError(op, name)
	}
	return filepath.Join(d.dir, name), nil
}

// ensureDir creates the directory if it is missing and makes its entry
// durable in the parent.
func (d *dirFS) ensureDir() error {
	if _, err := os.Stat(d.dir); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return err
	}
	return syncDir(filepath.Dir(d.dir))
}

func (d *dirFS) Create(name string) (File, error) {
	p, err := d.path("create", name)
	if err != nil {
		return nil, err
	}
	if err := d.ensureDir(); err != nil {
		return nil, err
	}
	return os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
}

func (d *dirFS) OpenAppend(name string) (File, error) {
	p, err := d.path("open", name)
	if err != nil {
		return nil, err
	}
	return os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
}

func (d *dirFS) ReadFile(name string) ([]byte, error) {
	p, err := d.path("read", name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

func (d *dirFS) Rename(oldname, newname string) error {
	op, err := d.path("rename", oldname)
	if err != nil {
		return err
	}
	np, err := d.path("rename", newname)
	if err != nil {
		return err
	}
	return os.Rename(op, np)
}

func (d *dirFS) Remove(name string) error {
	p, err := d.path("remove", name)
	if err != nil {
		return err
	}
	return os.Remove(p)
}

func (d *dirFS) List() ([]string, error) {
	ents, err := os.ReadDir(d.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

func (d *dirFS) Truncate(name string, size int64) error {
	p, err := d.path("truncate", name)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

func (d *dirFS) SyncDir() error { return syncDir(d.dir) }

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return f.Close()
}
