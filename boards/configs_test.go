package boards

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const configsDir = "../configs"

// exampleConfigs returns every *.yaml file under configs/.
func exampleConfigs(t testing.TB) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(configsDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".yaml") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no *.yaml under %s", configsDir)
	}
	return files
}

// TestExampleConfigs loads and validates every config under configs/.
func TestExampleConfigs(t *testing.T) {
	for _, f := range exampleConfigs(t) {
		t.Run(strings.TrimPrefix(f, configsDir+"/"), func(t *testing.T) {
			c, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if c.Node == "" {
				// Like the demo: the node comes from -n.
				if err := c.SetNode("example"); err != nil {
					t.Fatal(err)
				}
			} else if want := strings.TrimSuffix(filepath.Base(f), ".yaml"); c.Node != want {
				t.Errorf("node %q in %s; name the file after the node", c.Node, f)
			}
			if err := c.Validate(); err != nil {
				t.Error(err)
			}
			if want := "./data/" + c.Node; c.Data.Dir != want {
				t.Errorf("data dir %q, want %q", c.Data.Dir, want)
			}
		})
	}
}

// TestConfigsDataOnly checks that configs/ holds YAML only.
func TestConfigsDataOnly(t *testing.T) {
	err := filepath.WalkDir(configsDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !strings.HasSuffix(path, ".yaml") {
			t.Errorf("%s: configs/ holds example *.yaml configs only", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestExampleTopologies checks the multi-node examples: the ports the
// issue names, each link dialled by the node with the lower name, and every
// link landing on the other node's MQTT listener with credentials it lists
// in its peer_users.
func TestExampleTopologies(t *testing.T) {
	type node struct {
		file       string
		mqtt, cli  string
		peers      []string
		peerUsers  []string
		hubs       []string
		syncPrefix string
	}
	tests := []struct {
		dir   string
		nodes map[string]node
	}{
		{"mesh", map[string]node{
			"board1": {file: "board1.yaml", mqtt: "127.0.0.1:18831", cli: "127.0.0.1:27591", peers: []string{"board2", "board3"}},
			"board2": {file: "board2.yaml", mqtt: "127.0.0.1:18832", cli: "127.0.0.1:27592", peers: []string{"board3"}, peerUsers: []string{"board1"}},
			"board3": {file: "board3.yaml", mqtt: "127.0.0.1:18833", cli: "127.0.0.1:27593", peerUsers: []string{"board1", "board2"}},
		}},
		{"line", map[string]node{
			"a": {file: "a.yaml", mqtt: "127.0.0.1:18841", cli: "127.0.0.1:27601", peers: []string{"b"}},
			"b": {file: "b.yaml", mqtt: "127.0.0.1:18842", cli: "127.0.0.1:27602", peers: []string{"c"}, peerUsers: []string{"a"}},
			"c": {file: "c.yaml", mqtt: "127.0.0.1:18843", cli: "127.0.0.1:27603", peerUsers: []string{"b"}},
		}},
		{"hub", map[string]node{
			"hub1": {file: "hub1.yaml", mqtt: "127.0.0.1:18851", hubs: []string{"site@127.0.0.1:1883"}, syncPrefix: "edgekv/sync"},
			"hub2": {file: "hub2.yaml", mqtt: "127.0.0.1:18852", hubs: []string{"site@127.0.0.1:1883"}, syncPrefix: "edgekv/sync"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			files, err := filepath.Glob(filepath.Join(configsDir, tt.dir, "*.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != len(tt.nodes) {
				t.Errorf("%d files in configs/%s, want %d", len(files), tt.dir, len(tt.nodes))
			}
			cfgs := map[string]*Config{}
			for name, want := range tt.nodes {
				c, err := Load(filepath.Join(configsDir, tt.dir, want.file))
				if err != nil {
					t.Fatal(err)
				}
				cfgs[name] = c
				if c.Node != name {
					t.Errorf("%s: node %q, want %q", want.file, c.Node, name)
				}
				if !slices.Equal(c.Listen.MQTT, []string{want.mqtt}) {
					t.Errorf("%s: listen.mqtt %q, want [%s]", want.file, c.Listen.MQTT, want.mqtt)
				}
				if want.cli != "" && c.Listen.Client != want.cli {
					t.Errorf("%s: listen.client %q, want %s", want.file, c.Listen.Client, want.cli)
				}
				if c.Data.Sync != SyncInterval {
					t.Errorf("%s: data.sync %q, want interval", want.file, c.Data.Sync)
				}
				var peers, users, hubs []string
				for _, p := range c.Peers {
					peers = append(peers, p.Name)
					if p.Name <= name {
						t.Errorf("%s: dials %s; only the lower name dials, so each link exists once", want.file, p.Name)
					}
				}
				for _, u := range c.PeerUsers {
					users = append(users, u.Username)
				}
				for _, h := range c.Hubs {
					hubs = append(hubs, h.Name+"@"+h.Addr)
				}
				if !slices.Equal(peers, want.peers) || !slices.Equal(users, want.peerUsers) || !slices.Equal(hubs, want.hubs) {
					t.Errorf("%s: peers %q, peer_users %q, hubs %q; want %q, %q, %q", want.file, peers, users, hubs, want.peers, want.peerUsers, want.hubs)
				}
				if want.syncPrefix != "" && c.Sync.Prefix != want.syncPrefix {
					t.Errorf("%s: sync.prefix %q, want %q", want.file, c.Sync.Prefix, want.syncPrefix)
				}
			}
			// Every link reaches the other node's broker with credentials it accepts.
			for name, c := range cfgs {
				for _, p := range c.Peers {
					other, ok := cfgs[p.Name]
					if !ok {
						t.Errorf("%s dials unknown node %s", name, p.Name)
						continue
					}
					if !slices.Contains(other.Listen.MQTT, p.Addr) {
						t.Errorf("%s dials %s at %s, which listens on %q", name, p.Name, p.Addr, other.Listen.MQTT)
					}
					if !slices.Contains(other.PeerUsers, PeerUser{Username: p.Username, Password: p.Password}) {
						t.Errorf("%s dials %s as %q, which %s's peer_users lack", name, p.Name, p.Username, p.Name)
					}
				}
			}
		})
	}
}

func TestExampleConfigsComment(t *testing.T) {
	for _, f := range exampleConfigs(t) {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(text), "# ") || !strings.Contains(string(text), "edgekv run -n ") {
			t.Errorf("%s: start with a comment that says what it is and how to start it (edgekv run -n NAME -c FILE)", f)
		}
	}
}
