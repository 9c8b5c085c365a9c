package store

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
)

// MemFS is an in-memory FS that models what a crash keeps, for tests and
// the simulator. It is safe for concurrent use. Create it with NewMemFS.
//
// Crash model. Each file (inode) records how many of its leading bytes are
// durable: File.Sync makes all of them durable, Truncate is durable at
// once. The directory (which name points at which inode) is durable as of
// the last SyncDir. Crash then:
//   - restores the directory to its state at the last SyncDir, undoing
//     every later Create, Rename and Remove together (a file created and
//     synced but never made durable by SyncDir is gone; a removed or
//     renamed-away file comes back under its old name); a Create of an
//     existing name makes a new inode, so an undone Create brings the old
//     content back;
//   - cuts every surviving file to its durable bytes plus, when rng is not
//     nil, a random prefix of its unsynced bytes (a torn write), drawn
//     independently per file in name order, so a seed replays exactly;
//   - invalidates every open File (their methods fail) and clears injected
//     failures, like a reboot.
//
// This is the pessimistic POSIX model: real file systems often keep more
// (ext4 usually persists a rename without a directory fsync), never less.
// It does not model bit rot, reordering of unsynced writes within a file,
// or a partially applied set of directory operations.
type MemFS struct {
	mu      sync.Mutex
	files   map[string]*memInode // directory as the running process sees it
	durable map[string]*memInode // directory as of the last SyncDir
	epoch   int                  // incremented by Crash; stale handles fail
	fail    map[string]*memFailure
	flash   int64 // FlashBytes
}

// FlashPage is the page size of FlashBytes' model.
const FlashPage = 4096

// FlashBytes returns how many bytes a flash device would have programmed
// for the file data synced so far: every Sync writes each page that holds
// bytes written since the file's last Sync, whole (so a page that a
// record only begins to fill is written again by the next Sync that adds
// to it). Directory operations are not counted.
func (m *MemFS) FlashBytes() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.flash
}

type memInode struct {
	data   []byte
	synced int // data[:synced] is durable
}

type memFailure struct {
	left int // calls that still succeed
	err  error
}

// Operation names accepted by FailAfter.
var memOps = []string{"create", "open", "read", "rename", "remove", "list", "truncate", "syncdir", "write", "sync"}

// errStaleHandle is returned by a File opened before a Crash.
var errStaleHandle = errors.New("memfs: file handle invalidated by crash")

// NewMemFS returns an empty MemFS.
func NewMemFS() *MemFS {
	return &MemFS{
		files:   make(map[string]*memInode),
		durable: make(map[string]*memInode),
		fail:    make(map[string]*memFailure),
	}
}

// FailAfter makes operation op succeed n more times and then fail with err
// on every later call, until cleared with a nil err or by Crash. op is one
// of "create", "open" (OpenAppend), "read", "rename", "remove", "list",
// "truncate", "syncdir", "write" (File.Write) and "sync" (File.Sync); any
// other value panics. A failing Write stores the first half of its bytes
// (unsynced) before it fails, as a short write would.
func (m *MemFS) FailAfter(op string, n int, err error) {
	if !slices.Contains(memOps, op) {
		panic(fmt.Sprintf("store: MemFS.FailAfter: unknown operation %q", op))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		delete(m.fail, op)
		return
	}
	m.fail[op] = &memFailure{left: n, err: err}
}

// inject returns the injected error for op, if any. m.mu is held.
func (m *MemFS) inject(op, name string) error {
	f := m.fail[op]
	if f == nil {
		return nil
	}
	if f.left > 0 {
		f.left--
		return nil
	}
	return &fs.PathError{Op: op, Path: name, Err: f.err}
}

// Crash simulates a power loss and reboot; see the MemFS doc for the
// model. rng chooses how much of each file's unsynced bytes survive; nil
// loses all of them.
func (m *MemFS) Crash(rng *rand.Rand) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.epoch++
	clear(m.fail)
	m.files = maps.Clone(m.durable)
	for _, name := range slices.Sorted(maps.Keys(m.files)) {
		ino := m.files[name]
		keep := ino.synced
		if extra := len(ino.data) - ino.synced; rng != nil && extra > 0 {
			keep += rng.IntN(extra + 1)
		}
		ino.data = slices.Clip(ino.data[:keep])
		ino.synced = keep
	}
}

func notExist(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
}

// Create implements FS.
func (m *MemFS) Create(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !validName(name) {
		return nil, nameError("create", name)
	}
	if err := m.inject("create", name); err != nil {
		return nil, err
	}
	ino := &memInode{}
	m.files[name] = ino
	return &memFile{fs: m, ino: ino, name: name, epoch: m.epoch}, nil
}

// OpenAppend implements FS.
func (m *MemFS) OpenAppend(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.inject("open", name); err != nil {
		return nil, err
	}
	ino := m.files[name]
	if ino == nil {
		return nil, notExist("open", name)
	}
	return &memFile{fs: m, ino: ino, name: name, epoch: m.epoch}, nil
}

// ReadFile implements FS. It returns a copy.
func (m *MemFS) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.inject("read", name); err != nil {
		return nil, err
	}
	ino := m.files[name]
	if ino == nil {
		return nil, notExist("read", name)
	}
	return slices.Clone(ino.data), nil
}

// Rename implements FS.
func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !validName(newname) {
		return nameError("rename", newname)
	}
	if err := m.inject("rename", oldname); err != nil {
		return err
	}
	ino := m.files[oldname]
	if ino == nil {
		return notExist("rename", oldname)
	}
	delete(m.files, oldname)
	m.files[newname] = ino
	return nil
}

// Remove implements FS.
func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.inject("remove", name); err != nil {
		return err
	}
	if m.files[name] == nil {
		return notExist("remove", name)
	}
	delete(m.files, name)
	return nil
}

// List implements FS.
func (m *MemFS) List() ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.inject("list", "."); err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(m.files)), nil
}

// Truncate implements FS. The new size is durable at once.
func (m *MemFS) Truncate(name string, size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.inject("truncate", name); err != nil {
		return err
	}
	ino := m.files[name]
	if ino == nil {
		return notExist("truncate", name)
	}
	if size < 0 {
		return &fs.PathError{Op: "truncate", Path: name, Err: fs.ErrInvalid}
	}
	if size <= int64(len(ino.data)) {
		ino.data = slices.Clip(ino.data[:size])
	} else {
		ino.data = append(ino.data, make([]byte, size-int64(len(ino.data)))...)
	}
	ino.synced = len(ino.data)
	return nil
}

// SyncDir implements FS.
func (m *MemFS) SyncDir() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.inject("syncdir", "."); err != nil {
		return err
	}
	m.durable = maps.Clone(m.files)
	return nil
}

type memFile struct {
	fs     *MemFS
	ino    *memInode
	name   string
	epoch  int
	closed bool
}

// check returns why the handle cannot be used. f.fs.mu is held.
func (f *memFile) check(op string) error {
	switch {
	case f.closed:
		return &fs.PathError{Op: op, Path: f.name, Err: fs.ErrClosed}
	case f.epoch != f.fs.epoch:
		return &fs.PathError{Op: op, Path: f.name, Err: errStaleHandle}
	}
	return nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("write"); err != nil {
		return 0, err
	}
	if err := f.fs.inject("write", f.name); err != nil {
		n := len(p) / 2
		f.ino.data = append(f.ino.data, p[:n]...)
		return n, err
	}
	f.ino.data = append(f.ino.data, p...)
	return len(p), nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("sync"); err != nil {
		return err
	}
	if err := f.fs.inject("sync", f.name); err != nil {
		return err
	}
	if n := len(f.ino.data); n > f.ino.synced {
		first := f.ino.synced / FlashPage
		last := (n + FlashPage - 1) / FlashPage
		f.fs.flash += int64(last-first) * FlashPage
	}
	f.ino.synced = len(f.ino.data)
	return nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return &fs.PathError{Op: "close", Path: f.name, Err: fs.ErrClosed}
	}
	f.closed = true
	return nil
}
