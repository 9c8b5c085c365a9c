package boards

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"
)

// cmpConfig compares configs by their settings only.
var cmpConfig = []cmp.Option{cmpopts.IgnoreUnexported(Config{}), cmpopts.EquateEmpty()}

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig("board1")
	if err := c.Validate(); err != nil {
		t.Fatalf("DefaultConfig(board1).Validate: %v", err)
	}
	if c.Data.Dir != "./data/board1" || c.Board != "sim" || c.Listen.MQTT[0] != "127.0.0.1:1883" ||
		c.Data.Sync != SyncInterval || c.Data.SyncInterval.Std() != 100*time.Millisecond ||
		c.Sync.Heartbeat.Std() != time.Second || c.Sync.ChainLength != 5 ||
		c.KV.Prefix != "kv" || c.Sync.Prefix != "edgekv/sync" || c.KV.MaxPayloadBytes != 65536 ||
		c.Listen.Client != "127.0.0.1:27586" || len(c.Peers) != 0 {
		t.Errorf("DefaultConfig(board1) = %+v", c)
	}
	if c := DefaultConfig(""); c.Node != "" || c.Data.Dir != "" {
		t.Errorf(`DefaultConfig("") node %q dir %q, want both empty`, c.Node, c.Data.Dir)
	}
}

func TestDefaultConfigRoundTrip(t *testing.T) {
	for _, node := range []string{"board1", ""} {
		c := DefaultConfig(node)
		text, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(text, "marshalled")
		if err != nil {
			t.Fatalf("Parse(Marshal(DefaultConfig(%q))): %v\n%s", node, err, text)
		}
		if diff := cmp.Diff(c, back, cmpConfig...); diff != "" {
			t.Errorf("DefaultConfig(%q) round trip (-want +got):\n%s\n%s", node, diff, text)
		}
	}
}

// TestRoundTripFull round-trips a config with every setting used.
func TestRoundTripFull(t *testing.T) {
	r := tlsFiles(t)
	src := r.Replace(`node: full
board: rpi4
log_level: debug
data: {dir: /var/lib/edgekv, sync: always, sync_interval: 250ms}
listen:
  mqtt: ["0.0.0.0:1883", "[::1]:1884"]
  websocket: ["127.0.0.1:8080"]
  tls: [{addr: ":8883", cert: $CERT, key: $KEY}]
  client: ""
  client_tls: [{addr: "127.0.0.1:27587", cert: $CERT, key: $KEY}]
kv: {prefix: home/kv, max_payload_bytes: 1024}
sync: {prefix: moat/kv, chain_length: 64, heartbeat: 1m30s}
peers:
  - {name: b, addr: "b.local:1883", username: full, password: "p: w#", tls: {ca: $CERT, cert: $CERT, key: $KEY, server_name: b, insecure_skip_verify: true}}
  - {name: c, addr: "10.0.0.3:1883"}
hubs: [{name: site, addr: "hub:1883", username: u, password: "'quoted'"}]
peer_users: [{username: b, password: "yes"}]
limits: {mqtt_connections: 10, client_connections: 20, client_message: 1MiB, mqtt_packet: 1000000, receiving: 3GiB, receiving_wait: 1s, retained: 0, mqtt_queue: 1MiB, sending: 2MiB}
`)
	c, err := Parse([]byte(src), "full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(text, "marshalled")
	if err != nil {
		t.Fatalf("Parse(Marshal): %v\n%s", err, text)
	}
	if diff := cmp.Diff(c, back, cmpConfig...); diff != "" {
		t.Errorf("round trip (-want +got):\n%s\n%s", diff, text)
	}
	if len(back.Listen.ClientTLS) != 1 || back.Listen.ClientTLS[0].Addr != "127.0.0.1:27587" {
		t.Errorf("listen.client_tls %+v", back.Listen.ClientTLS)
	}
	if back.PeerUsers[0].Password != "yes" || back.Peers[0].Password != "p: w#" {
		t.Errorf("passwords %q, %q", back.PeerUsers[0].Password, back.Peers[0].Password)
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	// Every setting is its default; the demo's hardware bindings are the
	// only addition (the sim board's thermometers, an input, a relay).
	settings := *c
	settings.Hardware = Hardware{}
	if diff := cmp.Diff(DefaultConfig(""), &settings, cmpConfig...); diff != "" {
		t.Errorf("Default() differs from DefaultConfig(\"\") (-DefaultConfig +Default):\n%s", diff)
	}
	h := c.Hardware
	if len(h.Sensors) != 2 || len(h.Inputs) != 1 || len(h.Outputs) != 1 || h.Outputs[0].Path != "demo.relay" || h.Outputs[0].Safe {
		t.Errorf("the demo's hardware: %+v", h)
	}
	if c.Node != "" {
		t.Errorf("embedded default has node %q; the node comes from -n", c.Node)
	}
	if err := c.Validate(); err == nil {
		t.Errorf("Default().Validate() passed without a node")
	}
	if err := c.SetNode("demo"); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Default() with node demo: %v", err)
	}
	if c.Data.Dir != "./data/demo" {
		t.Errorf("data dir %q, want ./data/demo", c.Data.Dir)
	}
	// Each call returns a fresh config.
	if Default().Node != "" {
		t.Errorf("Default() shares state between calls")
	}
	b := DefaultYAML()
	b[0] = 'X'
	if DefaultYAML()[0] == 'X' {
		t.Errorf("DefaultYAML() shares its bytes")
	}
}

func TestDemoIsDefault(t *testing.T) {
	demo, err := os.ReadFile("../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def, err := os.ReadFile("default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(demo, def) {
		t.Errorf("configs/demo.yaml differs from boards/default.yaml; they must be byte-identical (cp boards/default.yaml configs/demo.yaml)")
	}
	if !bytes.Equal(def, DefaultYAML()) {
		t.Errorf("DefaultYAML() differs from boards/default.yaml")
	}
}

func TestSetNode(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		flag     string
		wantNode string
		wantDir  string
		wantErr  string
	}{
		{"flag fills node", "board: sim\n", "b1", "b1", "./data/b1", ""},
		{"flag keeps explicit dir", "data: {dir: /srv/x}\n", "b1", "b1", "/srv/x", ""},
		{"file node without flag", "node: b1\n", "", "b1", "./data/b1", ""},
		{"same name", "node: b1\n", "b1", "b1", "./data/b1", ""},
		{"different names", "board: sim\nnode: b1\n", "b2", "", "", `x.yaml:2: node: is "b1", but -n gave "b2"`},
		{"neither", "board: sim\n", "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "x.yaml")
			if err != nil {
				t.Fatal(err)
			}
			err = c.SetNode(tt.flag)
			if tt.wantErr != "" {
				var ce *ConfigError
				if !errors.As(err, &ce) || err.Error() != tt.wantErr {
					t.Fatalf("SetNode(%q) = %v, want %s", tt.flag, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Node != tt.wantNode || c.Data.Dir != tt.wantDir {
				t.Errorf("node %q dir %q, want %q %q", c.Node, c.Data.Dir, tt.wantNode, tt.wantDir)
			}
		})
	}
}

// TestValidate covers what only Validate checks (the node is required)
// and configs built in code, whose problems have no line.
func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
		want   []string // Error() lines
	}{
		{"default is valid", func(c *Config) {}, nil},
		{"no node", func(c *Config) { c.Node, c.Data.Dir = "", "" }, []string{
			"node: missing: every node needs a name (set node: here or give -n NAME)",
			"data.dir: is empty",
		}},
		{"bad values", func(c *Config) {
			c.Board = "vax"
			c.Sync.ChainLength = 100
			c.Peers = []Link{{Name: "n1", Addr: "x"}}
		}, []string{
			`board: unknown board "vax" (known: beaglebone-black, generic, rpi3, rpi4, rpi5, rpizero2w, sim)`,
			"sync.chain_length: 100 is out of range (want 1 to 64)",
			`peers[0].name: "n1" is this node's own name`,
			`peers[0].addr: "x" is not host:port: missing port in address`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig("n1")
			tt.modify(c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("Validate = %v, want a *ConfigError", err)
			}
			if diff := cmp.Diff(tt.want, ce.Lines()); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
}

// TestValidateParsedLines checks that Validate after Parse knows lines.
func TestValidateParsedLines(t *testing.T) {
	c, err := Parse([]byte("board: sim\npeers:\n  - name: n1\n    addr: h:1\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetNode("n1"); err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	if err == nil || err.Error() != `p.yaml:3: peers[0].name: "n1" is this node's own name` {
		t.Errorf("Validate = %v", err)
	}
}

func TestConfigErrorFormat(t *testing.T) {
	tests := []struct {
		source string
		p      Problem
		want   string
	}{
		{"f.yaml", Problem{Path: "a.b", Line: 3, Msg: "bad"}, "f.yaml:3: a.b: bad"},
		{"f.yaml", Problem{Path: "a.b", Msg: "bad"}, "f.yaml: a.b: bad"},
		{"f.yaml", Problem{Line: 3, Msg: "YAML: oops"}, "f.yaml:3: YAML: oops"},
		{"", Problem{Path: "a", Line: 3, Msg: "bad"}, "line 3: a: bad"},
		{"", Problem{Path: "a", Msg: "bad"}, "a: bad"},
	}
	for _, tt := range tests {
		e := &ConfigError{Source: tt.source, Problems: []Problem{tt.p}}
		if got := e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	e := &ConfigError{Source: "f", Problems: []Problem{{Path: "a", Line: 1, Msg: "x"}, {Path: "b", Line: 2, Msg: "y"}}}
	if got, want := e.Error(), "f:1: a: x\nf:2: b: y"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got := (Problem{Path: "a", Line: 2, Msg: "x"}).String(); got != "line 2: a: x" {
		t.Errorf("Problem.String() = %q", got)
	}
}

func TestLoad(t *testing.T) {
	if _, err := Load("no/such/file.yaml"); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want a not-exist error", err)
	}
	c, err := Load("../configs/mesh/board1.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Source() != "../configs/mesh/board1.yaml" {
		t.Errorf("Source() = %q", c.Source())
	}
	big := bytes.Repeat([]byte("#"), MaxConfigBytes+1)
	if _, err := Parse(big, "big"); err == nil || !strings.Contains(err.Error(), "more than the") {
		t.Errorf("Parse(too big) = %v", err)
	}
}

func TestDurationYAML(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal([]byte("d: 1m30s\n"), &v); err != nil || v.D.Std() != 90*time.Second {
		t.Errorf("Unmarshal 1m30s = %v, %v", v.D, err)
	}
	err := yaml.Unmarshal([]byte("x: 1\nd: fast\n"), &v)
	if err == nil || !strings.Contains(err.Error(), `line 2: "fast" is not a duration`) {
		t.Errorf("Unmarshal fast = %v, want the line", err)
	}
	out, err := yaml.Marshal(struct{ D Duration }{Duration(1500 * time.Millisecond)})
	if err != nil || string(out) != "d: 1.5s\n" {
		t.Errorf("Marshal = %q, %v", out, err)
	}
}

func TestLogLevel(t *testing.T) {
	for l, want := range map[LogLevel]slog.Level{LogDebug: slog.LevelDebug, LogInfo: slog.LevelInfo, LogWarn: slog.LevelWarn, LogError: slog.LevelError} {
		if got := l.Slog(); got != want {
			t.Errorf("%s.Slog() = %v, want %v", l, got, want)
		}
	}
}
