package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgekv/edgekv/boards"
)

// TestDemoIsAlive: the embedded default config (what `make run` starts),
// as its own process, on free ports. Within two seconds of the node being
// up, mosquitto_sub on kv/# sees both simulated temperatures (changing) and
// the door input, each with its documented JSON shape; mosquitto_pub to the
// relay's path switches the simulated relay, whose state entry says so.
func TestDemoIsAlive(t *testing.T) {
	sub := needTool(t, "mosquitto_sub", "mosquitto-clients")
	pub := needTool(t, "mosquitto_pub", "mosquitto-clients")
	dir := t.TempDir()
	ps := freePorts(t, 2)
	yaml := string(boards.DefaultYAML())
	for _, r := range [][2]string{{"127.0.0.1:1883", fmt.Sprintf("127.0.0.1:%d", ps[0])}, {"127.0.0.1:27586", fmt.Sprintf("127.0.0.1:%d", ps[1])}} {
		if !strings.Contains(yaml, r[0]) {
			t.Fatalf("the default config no longer listens on %s", r[0])
		}
		yaml = strings.ReplaceAll(yaml, r[0], r[1])
	}
	if !strings.Contains(yaml, "\ndata:\n") {
		t.Fatal("the default config has no data: section")
	}
	yaml = strings.Replace(yaml, "\ndata:\n", fmt.Sprintf("\ndata:\n  dir: %q\n", filepath.Join(dir, "data")), 1)
	cfg := filepath.Join(dir, "demo.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	startNode(t, "demo", cfg, ps[0])
	port := fmt.Sprint(ps[0])

	// Two seconds of kv/# as a user would watch it.
	out, _ := exec.Command(sub, "-h", "127.0.0.1", "-p", port, "-t", "kv/#", "-v", "-W", "2").Output() // -W ends it with status 27
	values := map[string][]map[string]any{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		topic, payload, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(payload), &m); err != nil {
			t.Errorf("%s: payload %q is not a JSON object: %v", topic, payload, err)
			continue
		}
		values[topic] = append(values[topic], m)
	}
	for _, topic := range []string{"kv/demo/temp/living", "kv/demo/temp/outside"} {
		ms := values[topic]
		if len(ms) < 2 {
			t.Errorf("%s: %d values in 2 s (%v), want it changing every second", topic, len(ms), ms)
			continue
		}
		for _, m := range ms {
			if v, ok := m["value"].(float64); !ok || v < 10 || v > 35 || m["unit"] != "°C" || m["at"] == nil {
				t.Errorf("%s: %v, want {value: °C, unit: \"°C\", at: seconds}", topic, m)
			}
		}
		if ms[0]["value"] == ms[len(ms)-1]["value"] {
			t.Errorf("%s did not change: %v", topic, ms)
		}
	}
	if door := values["kv/demo/door"]; len(door) == 0 {
		t.Errorf("kv/demo/door: nothing in 2 s")
	} else if _, ok := door[0]["value"].(bool); !ok {
		t.Errorf("kv/demo/door: %v, want {value: bool, at}", door[0])
	}
	if st := values["kv/demo/relay/state"]; len(st) == 0 || st[len(st)-1]["value"] != false || st[len(st)-1]["reason"] != "start" {
		t.Errorf("kv/demo/relay/state before any command: %v, want off (safe, reason start)", st)
	}

	// Switch the relay on from MQTT.
	if out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", port, "-t", "kv/demo/relay", "-m", "true", "-q", "1").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := exec.Command(sub, "-h", "127.0.0.1", "-p", port, "-t", "kv/demo/relay/state", "-C", "1", "-W", "2").Output()
		var m map[string]any
		if json.Unmarshal(bytes.TrimSpace(out), &m) == nil && m["value"] == true && m["safe"] == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kv/demo/relay/state after publishing true: %q, want {value: true, at}", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
