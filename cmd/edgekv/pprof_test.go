package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// `edgekv run --pprof ADDR` serves the running node's profiles on
// loopback, and refuses any other address before it starts.
func TestRunPprof(t *testing.T) {
	dir := t.TempDir()
	ps := freePorts(t, 3)
	cfg := filepath.Join(dir, "p.yaml")
	yaml := fmt.Sprintf("node: prof\nboard: sim\ndata: {dir: %q}\nlisten: {mqtt: [\"127.0.0.1:%d\"], client: \"127.0.0.1:%d\"}\n", filepath.Join(dir, "data"), ps[0], ps[1])
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ps[2])
	p := &proc{t: t, name: "prof", args: []string{"run", "-n", "prof", "-c", cfg, "--pprof", addr}, mqtt: ps[0], log: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	p.start()
	t.Cleanup(func() { p.stop(syscall.SIGKILL) })
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "heap profile") {
		t.Fatalf("heap profile: %s, %.200q", resp.Status, body)
	}
	if !strings.Contains(p.Log(), "profiler listening") {
		t.Fatalf("no log line for the profiler:\n%s", p.Log())
	}
	if p.stop(syscall.SIGTERM); p.exited() != nil {
		t.Fatalf("the node did not stop cleanly: %v\n%s", p.exited(), p.Log())
	}

	out, err := exec.Command(edgekvBinary(t), "run", "-n", "prof", "-c", cfg, "--pprof", "0.0.0.0:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not a loopback address") {
		t.Fatalf("--pprof 0.0.0.0:0: %v, %s; want a refusal naming loopback", err, out)
	}
}
