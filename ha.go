package edgekv

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgekv/edgekv/boards"
	"github.com/edgekv/edgekv/broker"
	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
)

// homeAssistant announces a board's bound hardware to Home Assistant by
// MQTT discovery (retained config messages under the discovery prefix):
// sensors as sensor, inputs as binary_sensor, outputs as switch, all in
// one device per board, available while the node runs. It announces again
// when Home Assistant says it is back ("online" on PREFIX/status), and
// removes the configs of bindings that are gone (it keeps the topics it
// announced at .edgekv.ha.NODE). Thermometers that a "device: all"
// binding finds are announced as they are found (found), and are not
// removed while that binding stays.
type homeAssistant struct {
	br       *broker.Broker
	eng      *node.Engine
	log      *slog.Logger
	prefix   string
	node     string
	kvPrefix string
	avail    string         // the availability topic
	device   map[string]any // the board's device block
	scanned  []string       // object id prefixes of the "device: all" bindings

	mu      sync.Mutex
	configs []haConfig
	kept    []string // topics announced before under a scanned prefix, not found yet
	removed []string // stale topics emptied at start, emptied again at each birth message
	started bool     // Run has announced: later configs go out at once
}

type haConfig struct {
	topic   string
	payload []byte
}

// haSlug makes s fit Home Assistant's node and object ids ([a-zA-Z0-9_-]).
func haSlug(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return r
		}
		return '_'
	}, s)
}

// newHomeAssistant builds the discovery configs of cfg's bindings, or
// returns nil when discovery is off.
func newHomeAssistant(cfg *boards.Config, br *broker.Broker, eng *node.Engine, log *slog.Logger) (*homeAssistant, error) {
	hc := cfg.Hardware
	if !hc.HomeAssistant.Enabled {
		return nil, nil
	}
	ha := &homeAssistant{br: br, eng: eng, log: log.With("component", "home assistant"), prefix: hc.HomeAssistant.DiscoveryPrefix(),
		node: cfg.Node, kvPrefix: cfg.KV.Prefix, avail: "edgekv/availability/" + cfg.Node}
	prof, _ := boards.Lookup(cfg.Board)
	ha.device = map[string]any{
		"identifiers":  []string{"edgekv_" + haSlug(cfg.Node)},
		"name":         cfg.Node,
		"manufacturer": "edgekv",
		"model":        prof.Name,
	}
	for _, s := range hc.Sensors {
		if s.Device == boards.AllDevices { // announced as they are found
			ha.scanned = append(ha.scanned, haSlug(s.Path)+"_")
			continue
		}
		c, err := ha.sensorConfig(s.Path)
		if err != nil {
			return nil, err
		}
		ha.configs = append(ha.configs, c)
	}
	onOff := "{{ 'ON' if value_json.value else 'OFF' }}"
	for _, in := range hc.Inputs {
		c, err := ha.config("binary_sensor", in.Path, in.Path, map[string]any{"value_template": onOff, "payload_on": "ON", "payload_off": "OFF"})
		if err != nil {
			return nil, err
		}
		ha.configs = append(ha.configs, c)
	}
	for _, o := range hc.Outputs {
		// Commands go to the path's own topic; the state is the state path's.
		cmd, err := ha.topic(o.Path)
		if err != nil {
			return nil, fmt.Errorf("home assistant: %s: %w", o.Path, err)
		}
		c, err := ha.config("switch", o.Path, o.StatePath(), map[string]any{"value_template": onOff, "state_on": "ON", "state_off": "OFF",
			"command_topic": cmd, "payload_on": "true", "payload_off": "false"})
		if err != nil {
			return nil, err
		}
		ha.configs = append(ha.configs, c)
	}
	return ha, nil
}

// topic is the MQTT topic of the tree path in MoaT-KV's syntax.
func (ha *homeAssistant) topic(path string) (string, error) {
	p, err := tree.ParsePath(path)
	if err != nil {
		return "", err
	}
	return broker.TopicForPath(ha.kvPrefix, p)
}

// config builds the discovery config of the binding at path, its state
// read from the topic of stateOf (a tree path).
func (ha *homeAssistant) config(component, path, stateOf string, fields map[string]any) (haConfig, error) {
	state, err := ha.topic(stateOf)
	if err != nil {
		return haConfig{}, fmt.Errorf("home assistant: %s: %w", stateOf, err)
	}
	id := haSlug(path)
	c := map[string]any{
		"name":                  path,
		"unique_id":             "edgekv_" + haSlug(ha.node) + "_" + id,
		"state_topic":           state,
		"availability_topic":    ha.avail,
		"payload_available":     "online",
		"payload_not_available": "offline",
		"device":                ha.device,
	}
	for k, v := range fields {
		c[k] = v
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return haConfig{}, err
	}
	return haConfig{topic: fmt.Sprintf("%s/%s/edgekv_%s/%s/config", ha.prefix, component, haSlug(ha.node), id), payload: payload}, nil
}

// sensorConfig is the config of a thermometer's entity.
func (ha *homeAssistant) sensorConfig(path string) (haConfig, error) {
	return ha.config("sensor", path, path, map[string]any{"device_class": "temperature", "state_class": "measurement",
		"unit_of_measurement": "°C", "value_template": "{{ value_json.value }}"})
}

// found announces a thermometer that a "device: all" binding found at
// path (at once if Run has started, else with the others) and records it.
func (ha *homeAssistant) found(ctx context.Context, path tree.Path) {
	c, err := ha.sensorConfig(path.String())
	if err != nil {
		ha.log.Warn("found thermometer not announced", "path", path.String(), "error", err)
		return
	}
	ha.mu.Lock()
	if slices.ContainsFunc(ha.configs, func(o haConfig) bool { return o.topic == c.topic }) {
		ha.mu.Unlock()
		return
	}
	ha.configs = append(ha.configs, c)
	ha.kept = slices.DeleteFunc(ha.kept, func(t string) bool { return t == c.topic })
	started := ha.started
	ha.mu.Unlock()
	if started {
		if err := ha.br.PublishRetained(c.topic, c.payload); err != nil {
			ha.log.Warn("discovery config not published", "topic", c.topic, "error", err)
		}
		ha.record(ctx)
	}
}

// announcedPath is where the node keeps the config topics it announced.
func (ha *homeAssistant) announcedPath() tree.Path {
	return tree.Path{tree.Str(""), tree.Str("edgekv"), tree.Str("ha"), tree.Str(ha.node)}
}

// Run announces, follows Home Assistant's status until ctx ends, then
// marks the device unavailable.
func (ha *homeAssistant) Run(ctx context.Context) error {
	mon, err := ha.br.Monitor(ha.prefix+"/status", 16)
	if err != nil {
		return err
	}
	defer mon.Close()
	ha.removeStale(ctx)
	ha.mu.Lock()
	ha.started = true
	ha.mu.Unlock()
	ha.announce()
	ha.record(ctx) // with what was found meanwhile
	if err := ha.br.PublishRetained(ha.avail, []byte("online")); err != nil {
		ha.log.Warn("availability not published", "error", err)
	}
	defer func() {
		if err := ha.br.PublishRetained(ha.avail, []byte("offline")); err != nil {
			ha.log.Warn("availability not published", "error", err)
			return
		}
		// Subscribers get it from their queues, written on goroutines
		// of the broker's: give them a moment before the broker stops
		// and closes their connections.
		time.Sleep(250 * time.Millisecond)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-mon.Messages():
			if !ok { // overflowed: follow again
				if mon, err = ha.br.Monitor(ha.prefix+"/status", 16); err != nil {
					return err
				}
				continue
			}
			if string(m.Payload) == "online" {
				ha.log.Info("Home Assistant is back: announcing again")
				ha.announce()
				ha.removeAgain()
				_ = ha.br.PublishRetained(ha.avail, []byte("online"))
			}
		}
	}
}

func (ha *homeAssistant) announce() {
	ha.mu.Lock()
	configs := slices.Clone(ha.configs)
	ha.mu.Unlock()
	for _, c := range configs {
		if err := ha.br.PublishRetained(c.topic, c.payload); err != nil {
			ha.log.Warn("discovery config not published", "topic", c.topic, "error", err)
		}
	}
}

// removeStale empties the configs announced before that are not announced
// now (those of thermometers a "device: all" binding may find again are
// kept), and records what is.
func (ha *homeAssistant) removeStale(ctx context.Context) {
	var before []string
	if e, err := ha.eng.Get(ctx, ha.announcedPath()); err == nil && e.Value != nil {
		if n, rest, err := msgp.ReadArrayHeaderBytes(e.Value); err == nil {
			for range n {
				var s string
				if s, rest, err = msgp.ReadStringBytes(rest); err != nil {
					break
				}
				before = append(before, s)
			}
		}
	}
	ha.mu.Lock()
	now := ha.topics()
	ha.mu.Unlock()
	scannedTopic := func(t string) bool {
		id, ok := strings.CutPrefix(t, ha.prefix+"/sensor/edgekv_"+haSlug(ha.node)+"/")
		return ok && slices.ContainsFunc(ha.scanned, func(p string) bool { return strings.HasPrefix(id, p) })
	}
	var kept []string
	for _, t := range before {
		switch {
		case slices.Contains(now, t) || !strings.HasPrefix(t, ha.prefix+"/"):
		case scannedTopic(t):
			kept = append(kept, t)
		default:
			if err := ha.br.PublishRetained(t, nil); err != nil {
				ha.log.Warn("stale discovery config not removed", "topic", t, "error", err)
			} else {
				ha.log.Info("binding gone: its Home Assistant entity is removed", "topic", t)
			}
			ha.removed = append(ha.removed, t)
		}
	}
	ha.mu.Lock()
	ha.kept = append(ha.kept, kept...)
	ha.mu.Unlock()
	ha.record(ctx)
}

// removeAgain empties the stale configs again: Home Assistant may not have
// been connected when they were emptied at start, and an empty retained
// message is not kept for later subscribers. Only Run's goroutine calls
// it, after removeStale.
func (ha *homeAssistant) removeAgain() {
	for _, t := range ha.removed {
		if err := ha.br.PublishRetained(t, nil); err != nil {
			ha.log.Warn("stale discovery config not removed", "topic", t, "error", err)
		}
	}
}

// topics lists the config topics announced and kept (ha.mu held).
func (ha *homeAssistant) topics() []string {
	ts := make([]string, 0, len(ha.configs)+len(ha.kept))
	for _, c := range ha.configs {
		ts = append(ts, c.topic)
	}
	return append(ts, ha.kept...)
}

// record writes the topics announced and kept at announcedPath, for the
// next start's removeStale.
func (ha *homeAssistant) record(ctx context.Context) {
	ha.mu.Lock()
	ts := ha.topics()
	ha.mu.Unlock()
	b := msgp.AppendArrayHeader(nil, uint32(len(ts)))
	for _, t := range ts {
		b = msgp.AppendString(b, t)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := ha.eng.Set(wctx, ha.announcedPath(), b, node.Cond{}); err != nil && ctx.Err() == nil {
		ha.log.Warn("announced configs not recorded", "error", err)
	}
}
