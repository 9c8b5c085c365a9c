package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// watchProc is a running `edgekv watch`, its output a line at a time.
type watchProc struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan error
}

func startWatch(t *testing.T, bin string, args ...string) *watchProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"watch"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := lockedBuffer{mu: new(sync.Mutex), b: new(bytes.Buffer)}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &watchProc{cmd: cmd, lines: make(chan string, 100), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
		w.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			stderr.mu.Lock()
			t.Logf("stderr of edgekv watch %q:\n%s", args, stderr.b.String())
			stderr.mu.Unlock()
		}
	})
	return w
}

// expect takes the next line and fails unless it contains every one of
// parts: the watch must print exactly the expected sequence, nothing
// repeated, nothing from outside its subtree.
func (w *watchProc) expect(t *testing.T, parts ...string) {
	t.Helper()
	select {
	case l, ok := <-w.lines:
		if !ok {
			t.Fatalf("watch ended before a line with %q", parts)
		}
		for _, p := range parts {
			if !strings.Contains(l, p) {
				t.Fatalf("watch printed %q, want a line with %q", l, parts)
			}
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no line with %q within 15 s", parts)
	}
}

// expectQuiet fails if the watch prints anything within d.
func (w *watchProc) expectQuiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case l, ok := <-w.lines:
		if ok {
			t.Fatalf("watch printed %q, want nothing", l)
		}
	case <-time.After(d):
	}
}

// exitCode waits for the watch to end and returns its exit status.
func (w *watchProc) exitCode(t *testing.T) int {
	t.Helper()
	for range w.lines { // drain
	}
	select {
	case err := <-w.done:
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &ee):
			return ee.ExitCode()
		default:
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("watch did not end within 15 s")
	}
	return -1
}

// TestE2ECLIWatch: `edgekv watch` against a real node prints the entries,
// the up-to-date marker and later changes; when the node stops, a plain
// watch ends with exit 3 while `--reconnect` carries on after the node
// is back, printing what changed meanwhile and after; Ctrl-C ends it
// with 0.
func TestE2ECLIWatch(t *testing.T) {
	bin := edgekvBinary(t)
	ps := freePorts(t, 2)
	mqttPort, clientPort := ps[0], ps[1]
	dir := t.TempDir()
	cfg := filepath.Join(dir, "w.yaml")
	yaml := fmt.Sprintf("node: w\ndata: {dir: %q, sync: always}\nlisten: {mqtt: [\"127.0.0.1:%d\"], client: \"127.0.0.1:%d\"}\n", filepath.Join(dir, "data"), mqttPort, clientPort)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	node := startNode(t, "w", cfg, mqttPort)
	srv := fmt.Sprintf("127.0.0.1:%d", clientPort)
	set := func(args ...string) {
		t.Helper()
		if out, errOut, code := runBinary(t, bin, append([]string{"set"}, append(args, "-s", srv)...)...); code != 0 {
			t.Fatalf("edgekv set %q: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	set("room.a", "1")

	plainW := startWatch(t, bin, "room", "-s", srv, "-o", "json")
	rw := startWatch(t, bin, "room", "-s", srv, "-o", "json", "--reconnect")
	for _, w := range []*watchProc{plainW, rw} {
		w.expect(t, `"path":"room.a"`, `"value":1`)
		w.expect(t, "# up to date")
	}
	set("room.b", "two")
	set("other.x", "3") // outside the watched subtree
	set("room.c", "{k: true}")
	for _, w := range []*watchProc{plainW, rw} {
		w.expect(t, `"path":"room.b"`, `"value":"two"`)
		w.expect(t, `"path":"room.c"`, `"value":{"k":true}`)
	}

	node.stop(syscall.SIGTERM)
	if code := plainW.exitCode(t); code != 3 {
		t.Fatalf("plain watch after the node stopped: exit %d, want 3", code)
	}
	node.restart()
	// Only what changed: nothing of room.a–c again, then room.d and the
	// new room.a.
	set("room.d", "4")
	rw.expect(t, `"path":"room.d"`, `"value":4`)
	set("other.y", "6")
	set("room.a", "5")
	rw.expect(t, `"path":"room.a"`, `"value":5`)
	rw.expectQuiet(t, 300*time.Millisecond)
	if err := rw.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := rw.exitCode(t); code != 0 {
		t.Fatalf("watch --reconnect after Ctrl-C: exit %d, want 0", code)
	}
}
