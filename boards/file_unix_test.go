//go:build unix

package boards

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestTLSFileNotReadable: a cert or key that exists but cannot be opened
// (or is not a regular file) is reported at config check, not first at
// start.
func TestTLSFileNotReadable(t *testing.T) {
	r := tlsFiles(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	locked := filepath.Join(dir, "locked.pem")
	if err := os.WriteFile(locked, []byte("x"), 0o000); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, key, want string
		skip            bool
	}{
		// A FIFO would block a plain open: it must be refused unopened.
		{"fifo", fifo, "is not a regular file", false},
		// root opens anything, so this case only runs as another user.
		{"no permission", locked, "cannot be read: permission denied", os.Geteuid() == 0},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skip {
				t.Skip("running as root: every file is readable")
			}
			src := r.Replace("listen:\n  client_tls:\n    - addr: 127.0.0.1:27587\n      cert: $CERT\n      key: " + tt.key + "\n")
			_, err := Parse([]byte(src), "x.yaml")
			var ce *ConfigError
			if !errors.As(err, &ce) || len(ce.Problems) != 1 {
				t.Fatalf("Parse: %v, want one problem", err)
			}
			p := ce.Problems[0]
			if p.Path != "listen.client_tls[0].key" || p.Line != 5 || !strings.Contains(p.Msg, tt.want) {
				t.Errorf("problem %+v, want listen.client_tls[0].key on line 5 saying %q", p, tt.want)
			}
		})
	}
}
