package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgekv/edgekv/boards"
)

// writeConfig writes text to a file in a temporary directory.
func writeConfig(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigCommand(t *testing.T) {
	bad := writeConfig(t, "bad.yaml", `node: board1
board: pi
peers:
  - name: board2
    addr: localhost
colour: blue
`)
	noNode := writeConfig(t, "template.yaml", "board: rpi4\nhubs: [{name: site, addr: \"127.0.0.1:1883\"}]\n")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string // lines or substrings, in order
		wantStderr []string
		notStdout  []string
	}{
		{
			name:       "help",
			args:       []string{"config"},
			wantStdout: []string{"'edgekv run -c FILE'", "edgekv config check configs/mesh/*.yaml", "check", "default", "show"},
		},
		{
			name:       "check help",
			args:       []string{"config", "check", "--help"},
			wantStdout: []string{"FILE: ok (node board1, board sim, 2 peers)", "FILE:LINE: PATH: MESSAGE", "Exit status"},
		},
		{
			name: "check good files",
			args: []string{"config", "check", "../../configs/mesh/board1.yaml", "../../configs/mesh/board3.yaml", "../../configs/demo.yaml", "../../configs/hub/hub1.yaml", noNode},
			wantStdout: []string{
				"../../configs/mesh/board1.yaml: ok (node board1, board sim, 2 peers)\n",
				"../../configs/mesh/board3.yaml: ok (node board3, board sim, 0 peers)\n",
				"../../configs/demo.yaml: ok (node from -n, board sim, 0 peers)\n",
				"../../configs/hub/hub1.yaml: ok (node hub1, board sim, 0 peers, 1 hub)\n",
				noNode + ": ok (node from -n, board rpi4, 0 peers, 1 hub)\n",
			},
		},
		{
			name:     "check bad file",
			args:     []string{"config", "check", "../../configs/line/b.yaml", bad},
			wantCode: 1,
			wantStdout: []string{
				"../../configs/line/b.yaml: ok (node b, board sim, 1 peer)\n",
				bad + `:2: board: unknown board "pi"`,
				bad + `:5: peers[0].addr: "localhost" is not host:port`,
				bad + `:6: colour: unknown key`,
			},
			wantStderr: []string{"1 of 2 config files have problems"},
		},
		{
			name:       "check missing file",
			args:       []string{"config", "check", "no/such.yaml"},
			wantCode:   1,
			wantStdout: []string{"no/such.yaml: no such file or directory\n"},
		},
		{
			name:       "check with -n",
			args:       []string{"config", "check", "-n", "board2", "../../configs/mesh/board1.yaml", "../../configs/demo.yaml"},
			wantCode:   1,
			wantStdout: []string{`../../configs/mesh/board1.yaml:12: node: is "board1", but -n gave "board2"`, "../../configs/demo.yaml: ok (node board2, board sim, 0 peers)"},
		},
		{
			name:       "check -n names a peer",
			args:       []string{"config", "check", "-n", "site", noNode},
			wantCode:   1,
			wantStdout: []string{noNode + `:2: hubs[0].name: "site" is this node's own name`},
		},
		{
			name:       "check without files",
			args:       []string{"config", "check"},
			wantCode:   2,
			wantStderr: []string{"requires at least 1 arg"},
		},
		{
			name: "show default",
			args: []string{"config", "show", "-n", "demo"},
			wantStdout: []string{
				"# edgekv board config of node demo, from the embedded default",
				"node: demo\n", "board: sim\n", "dir: ./data/demo\n", "sync: interval\n", "sync_interval: 100ms\n",
				"- 127.0.0.1:1883\n", "client: 127.0.0.1:27586\n", "prefix: kv\n", "prefix: edgekv/sync\n", "heartbeat: 1s\n", "peers: []\n",
			},
		},
		{
			name:       "show file",
			args:       []string{"config", "show", "-c", "../../configs/mesh/board2.yaml"},
			wantStdout: []string{"node: board2\n", "- 127.0.0.1:18832\n", "max_payload_bytes: 65536\n", "name: board3\n", "username: board1\n"},
		},
		{
			name:       "show name mismatch",
			args:       []string{"config", "show", "-c", "../../configs/mesh/board2.yaml", "-n", "board1"},
			wantCode:   1,
			wantStderr: []string{`../../configs/mesh/board2.yaml:6: node: is "board2", but -n gave "board1"`, "edgekv: ../../configs/mesh/board2.yaml: 1 problem"},
			notStdout:  []string{"node:"},
		},
		{
			name:       "show bad file",
			args:       []string{"config", "show", "-c", bad},
			wantCode:   1,
			wantStderr: []string{bad + ":2: board:", bad + ":6: colour:", "3 problems"},
		},
		{
			name:       "show without node",
			args:       []string{"config", "show"},
			wantCode:   2,
			wantStderr: []string{"no node name: give -n NAME"},
		},
		{
			name:       "show bad -n",
			args:       []string{"config", "show", "-n", "a/b"},
			wantCode:   1,
			wantStderr: []string{`node: "a/b" contains '/'`},
		},
		{
			name:     "default",
			args:     []string{"config", "default"},
			wantCode: 0,
			wantStdout: []string{
				string(boards.DefaultYAML()),
			},
		},
		{
			name:       "unknown subcommand",
			args:       []string{"config", "frobnicate"},
			wantCode:   2,
			wantStderr: []string{`unknown command "frobnicate"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tt.args, &out, &errOut)
			stdout, stderr := out.String(), errOut.String()
			if code != tt.wantCode {
				t.Errorf("edgekv %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", tt.args, code, tt.wantCode, stdout, stderr)
			}
			rest := stdout
			for _, s := range tt.wantStdout {
				i := strings.Index(rest, s)
				if i < 0 {
					t.Errorf("edgekv %q: stdout lacks %q (in order):\n%s", tt.args, s, stdout)
					continue
				}
				rest = rest[i+len(s):]
			}
			for _, s := range tt.wantStderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("edgekv %q: stderr lacks %q:\n%s", tt.args, s, stderr)
				}
			}
			for _, s := range tt.notStdout {
				if strings.Contains(stdout, s) {
					t.Errorf("edgekv %q: stdout has %q:\n%s", tt.args, s, stdout)
				}
			}
		})
	}
}

// TestConfigShowRoundTrip checks that what show prints is a config that
// loads back to the same settings.
func TestConfigShowRoundTrip(t *testing.T) {
	for _, args := range [][]string{
		{"config", "show", "-n", "demo"},
		{"config", "show", "-c", "../../configs/mesh/board1.yaml"},
		{"config", "show", "-c", "../../configs/line/b.yaml", "-n", "b"},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 0 {
			t.Fatalf("edgekv %q: exit %d\n%s", args, code, errOut.String())
		}
		shown := writeConfig(t, "shown.yaml", out.String())
		var out2, errOut2 bytes.Buffer
		if code := run([]string{"config", "show", "-c", shown}, &out2, &errOut2); code != 0 {
			t.Fatalf("show of the shown config: exit %d\n%s", code, errOut2.String())
		}
		_, body, _ := strings.Cut(out.String(), "\n")
		_, body2, _ := strings.Cut(out2.String(), "\n")
		if body != body2 {
			t.Errorf("edgekv %q: shown config changes when shown again:\n%s\n---\n%s", args, body, body2)
		}
	}
}
