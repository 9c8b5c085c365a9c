package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// buildBinary builds the edgekv binary into a temporary directory and
// returns its path.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary; skipped in -short mode")
	}
	bin := filepath.Join(t.TempDir(), "edgekv")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	cmd := exec.Command("go", "build", "-o", bin, "-ldflags", "-X main.version=v0.0.0-test", ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runBinary runs bin with args and returns stdout, stderr and the exit code.
func runBinary(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runBinaryEnv(t, bin, nil, args...)
}

// runBinaryEnv is runBinary with env ("KEY=value") added to the test's
// environment.
func runBinaryEnv(t *testing.T, bin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var outBuf, errBuf bytes.Buffer
	cmd := exec.Command(bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout = &outBuf
	cmd.Stderr = &errBuf
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("running %s %q: %v", bin, args, err)
	}
	return outBuf.String(), errBuf.String(), code
}

// wantOneLineError checks how a failed command reports (issue 4): exactly
// one line on stderr, starting "edgekv: ", and nothing on stdout.
func wantOneLineError(t *testing.T, args []string, stdout, stderr string) {
	t.Helper()
	if stdout != "" {
		t.Errorf("edgekv %q failed but wrote to stdout: %q", args, stdout)
	}
	if !strings.HasPrefix(stderr, "edgekv: ") || !strings.HasSuffix(stderr, "\n") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("edgekv %q: stderr %q, want one line starting \"edgekv: \"", args, stderr)
	}
}

func TestBinary(t *testing.T) {
	bin := buildBinary(t)

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string // substrings
		wantStderr []string // substrings
	}{
		{
			name:       "version",
			args:       []string{"version"},
			wantStdout: []string{"edgekv v0.0.0-test " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"},
		},
		{
			name:       "help",
			args:       []string{"--help"},
			wantStdout: []string{"partition-tolerant", "Usage:", "version", "run", "sim"},
		},
		{
			name:       "run with a missing config",
			args:       []string{"run", "-n", "demo", "-c", "/nonexistent/board.yaml"},
			wantCode:   1,
			wantStderr: []string{"/nonexistent/board.yaml"},
		},
		{
			name:       "run with a bad node name",
			args:       []string{"run", "-n", "bad/name"},
			wantCode:   1,
			wantStderr: []string{"node"},
		},
		{
			name:       "sim one seed",
			args:       []string{"sim", "--seed", "7", "--ops", "50", "-q"},
			wantStdout: []string{"ok: seed 7:", "settled in"},
		},
		{
			name:       "sim bad topology",
			args:       []string{"sim", "--topology", "ring"},
			wantCode:   1,
			wantStderr: []string{`unknown topology "ring"`},
		},
		{
			name:       "unknown flag",
			args:       []string{"--no-such-flag"},
			wantCode:   2,
			wantStderr: []string{"unknown flag: --no-such-flag", "--help"},
		},
		{
			name:       "unknown command",
			args:       []string{"no-such-command"},
			wantCode:   2,
			wantStderr: []string{"unknown command"},
		},
		{
			name:       "run without name",
			args:       []string{"run"},
			wantCode:   2,
			wantStderr: []string{`"name"`},
		},
		{
			name:       "malformed flag value",
			args:       []string{"sim", "--seed", "x"},
			wantCode:   2,
			wantStderr: []string{"--seed"},
		},
		{
			name:     "extra argument",
			args:     []string{"version", "extra"},
			wantCode: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runBinary(t, bin, tt.args...)
			if code != tt.wantCode {
				t.Errorf("edgekv %q: exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", tt.args, code, tt.wantCode, stdout, stderr)
			}
			if code != 0 {
				wantOneLineError(t, tt.args, stdout, stderr)
			}
			for _, s := range tt.wantStdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("edgekv %q: stdout lacks %q:\n%s", tt.args, s, stdout)
				}
			}
			for _, s := range tt.wantStderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("edgekv %q: stderr lacks %q:\n%s", tt.args, s, stderr)
				}
			}
		})
	}
}

// TestRunInProcess checks the exit-code mapping without building a binary.
func TestRunInProcess(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"no args prints help", nil, exitOK},
		{"version", []string{"version"}, exitOK},
		{"bad flag", []string{"--nope"}, exitUsage},
		{"sim bad nodes", []string{"sim", "--nodes", "1"}, exitError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if got := run(tt.args, &out, &errOut); got != tt.want {
				t.Errorf("run(%q) = %d, want %d\nstdout:\n%s\nstderr:\n%s", tt.args, got, tt.want, out.String(), errOut.String())
			}
		})
	}
}

// TestOneLineErrors: whatever fails, and however long the underlying
// message, a failed command writes one line on stderr and nothing on
// stdout (in process: no node needed).
func TestOneLineErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"unknown flag", []string{"get", "a", "--nope"}, exitUsage},
		{"YAML error over two lines", []string{"set", "a", "{x: 1, x: 2}"}, exitUsage},
		{"unreadable --file", []string{"set", "a", "--file", filepath.Join(dir, "none.yaml")}, exitUsage},
		{"unreadable dump", []string{"dump", "load", filepath.Join(dir, "none.dkv")}, exitUsage},
		{"command failure", []string{"sim", "--nodes", "1"}, exitError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if got := run(tt.args, &out, &errOut); got != tt.want {
				t.Fatalf("run(%q) = %d, want %d\nstderr:\n%s", tt.args, got, tt.want, errOut.String())
			}
			wantOneLineError(t, tt.args, out.String(), errOut.String())
		})
	}
}
