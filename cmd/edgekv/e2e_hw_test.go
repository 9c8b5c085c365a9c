package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgekv/edgekv/boards"
	"github.com/edgekv/edgekv/hw"
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

// startOWServer runs Debian's owserver with fake devices on port until the
// test ends (or stop). Without --foreground it would fork away from its pid.
func startOWServer(t *testing.T, port int) (stop func()) {
	t.Helper()
	bin := needTool(t, "owserver", "owserver")
	cmd := exec.Command(bin, "--foreground", "--fake", "28,10,22,3A,29", "-p", fmt.Sprintf("127.0.0.1:%d", port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop = func() {
		cmd.Process.Kill()
		<-done
	}
	t.Cleanup(stop)
	c := &hw.OWServer{Addr: fmt.Sprintf("127.0.0.1:%d", port), Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := c.Devices(context.Background()); err == nil {
			return stop
		} else if time.Now().After(deadline) {
			t.Fatalf("owserver on port %d: %v", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// retainedJSON reads topic's retained message with mosquitto_sub.
func retainedJSON(t *testing.T, sub string, port int, topic string) map[string]any {
	t.Helper()
	out, _ := exec.Command(sub, "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-t", topic, "-C", "1", "-W", "2").Output()
	var m map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(out), &m); err != nil {
		return nil
	}
	return m
}

// TestOWServerSensors: a node on the generic board reads the fake
// thermometers of a real owserver (DS18B20, DS18S20, DS1822), seen on
// mosquitto_sub; when owserver stops, each entry keeps its last value and
// gains the error and since when; when it is back, the error goes.
func TestOWServerSensors(t *testing.T) {
	sub := needTool(t, "mosquitto_sub", "mosquitto-clients")
	ps := freePorts(t, 2)
	stopOW := startOWServer(t, ps[1])
	ow := &hw.OWServer{Addr: fmt.Sprintf("127.0.0.1:%d", ps[1])}
	ids, err := ow.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var sensors strings.Builder
	var topics []string
	for _, id := range ids {
		if fam := id[:2]; fam == "28" || fam == "10" || fam == "22" {
			fmt.Fprintf(&sensors, "    - {device: %s, bus: \"owserver:127.0.0.1:%d\", path: ow.t%s, interval: 200ms}\n", id, ps[1], fam)
			topics = append(topics, "kv/ow/t"+fam)
		}
	}
	if len(topics) != 3 {
		t.Fatalf("owserver's thermometers: %v", ids)
	}
	var outputs, inputs strings.Builder
	for _, id := range ids {
		switch id[:2] {
		case "3A":
			fmt.Fprintf(&outputs, "    - {device: %s, channel: A, bus: \"owserver:127.0.0.1:%d\", path: ow.valve}\n", id, ps[1])
			fmt.Fprintf(&inputs, "    - {device: %s, channel: B, bus: \"owserver:127.0.0.1:%d\", path: ow.float, interval: 200ms}\n", id, ps[1])
		case "29":
			fmt.Fprintf(&outputs, "    - {device: %s, channel: 3, bus: \"owserver:127.0.0.1:%d\", path: ow.pump}\n", id, ps[1])
		}
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ow.yaml")
	yaml := fmt.Sprintf("node: ow\nboard: generic\ndata: {dir: %q}\nlisten: {mqtt: [\"127.0.0.1:%d\"], client: \"\"}\nhardware:\n  sensors:\n%s  outputs:\n%s  inputs:\n%s",
		filepath.Join(dir, "data"), ps[0], sensors.String(), outputs.String(), inputs.String())
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startNode(t, "ow", cfg, ps[0])
	wait := func(what string, ok func(map[string]any) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for _, topic := range topics {
			for {
				m := retainedJSON(t, sub, ps[0], topic)
				if m != nil && ok(m) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %s is %v", what, topic, m)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	wait("readings", func(m map[string]any) bool {
		v, ok := m["value"].(float64)
		return ok && v >= -55 && v <= 125 && m["unit"] == "°C" && m["error"] == nil
	})
	// The DS2413's channel B as an input: a level (the fake's is random).
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := retainedJSON(t, sub, ps[0], "kv/ow/float")
		if _, ok := m["value"].(bool); ok && m["at"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kv/ow/float: %v, want {value: bool, at}", m)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The DS2413 and DS2408 channels follow their topics. owserver's
	// fake devices do not keep what they are told, so its count of
	// successful writes shows that each command reached it.
	writes := func() int {
		v, err := ow.Read(context.Background(), "/statistics/write/success")
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(v)
		return n
	}
	pub := needTool(t, "mosquitto_pub", "mosquitto-clients")
	for _, topic := range []string{"kv/ow/valve", "kv/ow/pump"} {
		before := writes()
		if out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", fmt.Sprint(ps[0]), "-t", topic, "-m", "on", "-q", "1").CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v\n%s", err, out)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			m := retainedJSON(t, sub, ps[0], topic+"/state")
			if m != nil && m["value"] == true && m["safe"] == nil && writes() > before {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s on: state %v, owserver writes %d -> %d", topic, m, before, writes())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	stopOW()
	wait("owserver down", func(m map[string]any) bool {
		e, _ := m["error"].(string)
		return strings.Contains(e, "owserver") && m["since"] != nil && m["value"] != nil
	})
	deadline = time.Now().Add(10 * time.Second)
	for {
		m := retainedJSON(t, sub, ps[0], "kv/ow/float")
		if e, _ := m["error"].(string); strings.Contains(e, "owserver") && m["value"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kv/ow/float with owserver down: %v", m)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := strings.Count(p.Log(), "sensor fails"); n != len(topics) {
		t.Errorf("%d log lines about failing sensors, want one per sensor (%d):\n%s", n, len(topics), p.Log())
	}
	startOWServer(t, ps[1])
	wait("owserver back", func(m map[string]any) bool { return m["error"] == nil && m["value"] != nil })
}

// TestHardwareAcrossBoards: three edgekv processes in a line (board1 ->
// board2 -> board3). A sim thermometer bound on board1 is read on board3;
// a relay bound on board2 is switched by a write on board1 (MQTT), and
// its state, written by board2, is seen on board1 and board3.
func TestHardwareAcrossBoards(t *testing.T) {
	sub := needTool(t, "mosquitto_sub", "mosquitto-clients")
	pub := needTool(t, "mosquitto_pub", "mosquitto-clients")
	dir := t.TempDir()
	ps := freePorts(t, 3)
	names := []string{"board1", "board2", "board3"}
	hwYAML := map[string]string{
		"board1": "hardware:\n  sensors:\n    - {device: sim-1, path: site.b1.temp, interval: 200ms}\n",
		"board2": "hardware:\n  outputs:\n    - {pin: GPIO27, path: site.b2.relay}\n",
	}
	for i, name := range names {
		c := e2eCfg{name: name, port: ps[i], data: filepath.Join(dir, name), extra: hwYAML[name]}
		if i < 2 {
			c.peers = []e2eLink{{name: names[i+1], port: ps[i+1]}}
		}
		if i > 0 {
			c.peerUsers = []string{names[i-1]}
		}
		startNodeCfg(t, dir, "", c)
	}
	read := func(port int, topic string) map[string]any { return retainedJSON(t, sub, port, topic) }
	until := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("after 15 s: %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	var first any
	until("board1's thermometer on board3", func() bool {
		m := read(ps[2], "kv/site/b1/temp")
		if m == nil || m["unit"] != "°C" {
			return false
		}
		first = m["value"]
		return true
	})
	until("board1's thermometer changing on board3", func() bool { m := read(ps[2], "kv/site/b1/temp"); return m != nil && m["value"] != first })

	if out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", fmt.Sprint(ps[0]), "-t", "kv/site/b2/relay", "-m", "on", "-q", "1").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	for _, port := range []int{ps[1], ps[0], ps[2]} {
		until(fmt.Sprintf("the relay on board2 on, seen on port %d", port), func() bool {
			m := read(port, "kv/site/b2/relay/state")
			return m != nil && m["value"] == true && m["safe"] == nil
		})
	}
}

// haConfigs reads the retained discovery configs under homeassistant/#.
func haConfigs(t *testing.T, sub string, port int) map[string]map[string]any {
	t.Helper()
	out, _ := exec.Command(sub, "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-t", "homeassistant/#", "-v", "-W", "1").Output()
	got := map[string]map[string]any{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		topic, payload, _ := strings.Cut(sc.Text(), " ")
		var m map[string]any
		if err := json.Unmarshal([]byte(payload), &m); err != nil {
			t.Errorf("%s: %q is not JSON: %v", topic, payload, err)
			continue
		}
		got[topic] = m
	}
	return got
}

// TestHomeAssistantDiscovery: with home_assistant enabled, the node
// announces each binding as Home Assistant's MQTT discovery documents it
// (sensor, binary_sensor, switch; the keys each requires, a unique_id, one
// device block for the board, availability), announces again when Home
// Assistant publishes "online" on its status topic, says "offline" when it
// stops, and removes the entity of a binding that is gone when it starts
// again.
func TestHomeAssistantDiscovery(t *testing.T) {
	sub := needTool(t, "mosquitto_sub", "mosquitto-clients")
	pub := needTool(t, "mosquitto_pub", "mosquitto-clients")
	dir := t.TempDir()
	ps := freePorts(t, 1)
	w1 := filepath.Join(dir, "w1") // a thermometer for "device: all" to find
	found := filepath.Join(w1, "28-0000000000a1")
	os.MkdirAll(found, 0o755)
	os.WriteFile(filepath.Join(found, "w1_slave"), []byte("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=21000\n"), 0o644)
	write := func(withDoor bool) string {
		hw := "hardware:\n  home_assistant: {enabled: true}\n  sensors:\n    - {device: sim-1, path: ha.temp, interval: 1s}\n" +
			"    - {device: all, bus: \"w1-sysfs:" + w1 + "\", path: ha.scan, interval: 1s}\n" +
			"  outputs:\n    - {pin: GPIO27, path: ha.relay}\n"
		if withDoor {
			hw += "  inputs:\n    - {pin: GPIO17, path: ha.door}\n"
		}
		cfg := filepath.Join(dir, "ha.yaml")
		yaml := fmt.Sprintf("node: ha1\nboard: sim\ndata: {dir: %q}\nlisten: {mqtt: [\"127.0.0.1:%d\"], client: \"\"}\n%s", filepath.Join(dir, "data"), ps[0], hw)
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	p := startNode(t, "ha1", write(true), ps[0])
	var got map[string]map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for got = haConfigs(t, sub, ps[0]); len(got) < 4 && time.Now().Before(deadline); got = haConfigs(t, sub, ps[0]) {
	}
	scanTopic := "homeassistant/sensor/edgekv_ha1/ha_scan_28-0000000000a1/config"
	want := map[string][]string{ // component → keys Home Assistant requires or edgekv promises
		"homeassistant/sensor/edgekv_ha1/ha_temp/config": {"state_topic", "unit_of_measurement", "device_class", "value_template"},
		scanTopic: {"state_topic", "unit_of_measurement", "device_class", "value_template"}, // found by the scan
		"homeassistant/binary_sensor/edgekv_ha1/ha_door/config": {"state_topic", "payload_on", "payload_off", "value_template"},
		"homeassistant/switch/edgekv_ha1/ha_relay/config":       {"command_topic", "state_topic", "payload_on", "payload_off", "state_on", "state_off"},
	}
	ids := map[string]bool{}
	for topic, keys := range want {
		m := got[topic]
		if m == nil {
			t.Errorf("no config on %s (got %v)", topic, got)
			continue
		}
		for _, k := range append(keys, "name", "unique_id", "availability_topic", "payload_available", "payload_not_available", "device") {
			if _, ok := m[k]; !ok {
				t.Errorf("%s: no %q in %v", topic, k, m)
			}
		}
		ids[fmt.Sprint(m["unique_id"])] = true
		dev, _ := m["device"].(map[string]any)
		if idents, _ := dev["identifiers"].([]any); len(idents) != 1 || idents[0] != "edgekv_ha1" || dev["name"] != "ha1" {
			t.Errorf("%s: device %v, want identifiers [edgekv_ha1] and name ha1", topic, m["device"])
		}
		if m["availability_topic"] != "edgekv/availability/ha1" {
			t.Errorf("%s: availability_topic %v", topic, m["availability_topic"])
		}
	}
	if len(ids) != 4 {
		t.Errorf("unique_ids not unique: %v", ids)
	}
	if s := got[scanTopic]; s != nil && s["state_topic"] != "kv/ha/scan/28-0000000000a1" {
		t.Errorf("found sensor's state_topic: %v", s["state_topic"])
	}
	if sw := got["homeassistant/switch/edgekv_ha1/ha_relay/config"]; sw != nil && (sw["command_topic"] != "kv/ha/relay" || sw["state_topic"] != "kv/ha/relay/state") {
		t.Errorf("switch topics: %v", sw)
	}
	if s := got["homeassistant/sensor/edgekv_ha1/ha_temp/config"]; s != nil && s["state_topic"] != "kv/ha/temp" {
		t.Errorf("sensor state_topic: %v", s["state_topic"])
	}
	avail := func() string {
		out, _ := exec.Command(sub, "-h", "127.0.0.1", "-p", fmt.Sprint(ps[0]), "-t", "edgekv/availability/ha1", "-C", "1", "-W", "1").Output()
		return strings.TrimSpace(string(out))
	}
	if a := avail(); a != "online" {
		t.Errorf("availability %q, want online", a)
	}

	// Home Assistant restarts: its birth message brings the configs again,
	// live (not only as retained messages).
	live := exec.Command(sub, "-h", "127.0.0.1", "-p", fmt.Sprint(ps[0]), "-t", "homeassistant/+/+/+/config", "-R", "-C", "4", "-W", "5")
	var liveOut bytes.Buffer
	live.Stdout = &liveOut
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", fmt.Sprint(ps[0]), "-t", "homeassistant/status", "-m", "online").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	if err := live.Wait(); err != nil {
		t.Errorf("re-announce after Home Assistant's birth message: %v (%q)", err, liveOut.String())
	}

	// Stop: a subscriber sees offline. Start without the door: its entity
	// is removed.
	watch := exec.Command(sub, "-h", "127.0.0.1", "-p", fmt.Sprint(ps[0]), "-t", "edgekv/availability/ha1", "-C", "2", "-W", "5")
	var watchOut bytes.Buffer
	watch.Stdout = &watchOut
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	p.stop(syscall.SIGTERM)
	watch.Wait()
	if got := strings.Fields(watchOut.String()); len(got) != 2 || got[0] != "online" || got[1] != "offline" {
		t.Errorf("availability around the stop: %q, want online then offline", watchOut.String())
	}
	// The found thermometer is gone too: its entity stays (the binding
	// that found it does).
	os.RemoveAll(found)
	startNode(t, "ha1", write(false), ps[0])
	deadline = time.Now().Add(10 * time.Second)
	for {
		got = haConfigs(t, sub, ps[0])
		if _, door := got["homeassistant/binary_sensor/edgekv_ha1/ha_door/config"]; !door && len(got) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restarting without the door: %v", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Home Assistant connects after the node started: its birth message
	// brings the door's removal (an empty config), not the found sensor's.
	live = exec.Command(sub, "-h", "127.0.0.1", "-p", fmt.Sprint(ps[0]), "-t", "homeassistant/+/+/+/config", "-F", "%t|%p", "-W", "2")
	liveOut.Reset()
	live.Stdout = &liveOut
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", fmt.Sprint(ps[0]), "-t", "homeassistant/status", "-m", "online").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	live.Wait() // ends after 2 s
	lines := strings.Split(strings.TrimSpace(liveOut.String()), "\n")
	if !slices.Contains(lines, "homeassistant/binary_sensor/edgekv_ha1/ha_door/config|") {
		t.Errorf("after the birth message: no removal of the door's config in %q", lines)
	}
	for _, l := range lines {
		if strings.HasPrefix(l, scanTopic) {
			t.Errorf("the found sensor's entity was touched: %q", l)
		}
	}
}

// edgekvCLI runs the command line in this process (runCLI) and returns
// its output, standard error after standard output, and exit status.
func edgekvCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runCLI(args, &out, &errOut)
	return out.String() + errOut.String(), code
}

// TestHwCommands: `edgekv hw list` shows a config's bindings, the devices
// found now on its owserver and w1 sysfs buses (bound or not) and its
// pins; `edgekv hw read` reads a bound thermometer by id or path, an
// unbound one on --bus, fails with status 1 when owserver is down, and
// with --node asks the running node for the binding's entry.
func TestHwCommands(t *testing.T) {
	ps := freePorts(t, 2)
	stopOW := startOWServer(t, ps[1])
	ow := &hw.OWServer{Addr: fmt.Sprintf("127.0.0.1:%d", ps[1])}
	ids, err := ow.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var t28, t10, t3a string
	for _, id := range ids {
		switch id[:2] {
		case "28":
			t28 = id
		case "10":
			t10 = id
		case "3A":
			t3a = id
		}
	}
	dir := t.TempDir()
	w1 := filepath.Join(dir, "w1")
	dev := filepath.Join(w1, "28-0316a2794bff")
	os.MkdirAll(dev, 0o755)
	os.WriteFile(filepath.Join(dev, "w1_slave"), []byte("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"), 0o644)
	cfg := filepath.Join(dir, "hw.yaml")
	yaml := fmt.Sprintf("node: hw1\nboard: sim\ndata: {dir: %q}\nlisten: {mqtt: [\"127.0.0.1:%d\"], client: \"127.0.0.1:%d\"}\nhardware:\n  sensors:\n"+
		"    - {device: %s, bus: \"owserver:127.0.0.1:%d\", path: cli.ow, interval: 200ms}\n"+
		"    - {device: 28-0316a2794bff, bus: \"w1-sysfs:%s\", path: cli.w1, interval: 200ms}\n"+
		"  inputs:\n    - {pin: GPIO17, path: cli.door}\n"+
		"    - {device: %s, channel: B, bus: \"owserver:127.0.0.1:%d\", path: cli.sw_b}\n"+
		"  outputs:\n    - {device: %s, channel: A, bus: \"owserver:127.0.0.1:%d\", path: cli.sw_a}\n",
		filepath.Join(dir, "data"), ps[0], freePorts(t, 1)[0], t28, ps[1], w1, t3a, ps[1], t3a, ps[1])
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := edgekvCLI(t, "hw", "list", "-c", cfg)
	for _, want := range []string{
		t28 + "  ", "cli.ow", // the binding, and the device found on owserver bound to it
		t10, // an unbound device found on the bus
		"28-0316a2794bff", "cli.w1",
		"GPIO17", "input  cli.door",
		t3a + "  cli.sw_b (input, channel B), cli.sw_a (output, channel A)", // both channels of one switch
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("hw list (status %d) lacks %q:\n%s", code, want, out)
		}
	}
	if out, code := edgekvCLI(t, "hw", "read", "cli.w1", "-c", cfg); code != 0 || !strings.Contains(out, "28-0316a2794bff (cli.w1): 23.125 °C") {
		t.Errorf("hw read cli.w1: status %d, %q", code, out)
	}
	if out, code := edgekvCLI(t, "hw", "read", strings.ToLower(strings.Replace(t28, ".", "-", 1)), "-c", cfg); code != 0 || !strings.Contains(out, "(cli.ow): ") {
		t.Errorf("hw read of the bound owserver id in the kernel's form: status %d, %q", code, out)
	}
	if out, code := edgekvCLI(t, "hw", "read", t10, "--bus", fmt.Sprintf("owserver:127.0.0.1:%d", ps[1]), "-c", cfg); code != 0 || !strings.Contains(out, t10+": ") {
		t.Errorf("hw read of an unbound id on --bus: status %d, %q", code, out)
	}

	// --node: the running node's entry for the binding.
	p := startNode(t, "hw1", cfg, ps[0])
	_ = p
	clientAddr := strings.Split(strings.Split(yaml, "client: \"")[1], "\"")[0]
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, code := edgekvCLI(t, "hw", "read", "cli.w1", "--node", "-s", clientAddr, "-c", cfg, "-o", "json")
		if code == 0 && strings.Contains(out, `"value":23.125`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hw read --node: status %d, %q", code, out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	stopOW()
	if out, code := edgekvCLI(t, "hw", "read", "cli.ow", "-c", cfg); code != 1 || !strings.Contains(out, "owserver") {
		t.Errorf("hw read with owserver down: status %d, %q", code, out)
	}
	if out, code := edgekvCLI(t, "hw", "list", "-c", cfg); code != 0 || !strings.Contains(out, "cannot read") {
		t.Errorf("hw list with owserver down: status %d, %q", code, out)
	}
}
