package edgekv

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
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
// announced at .edgekv.ha.NODE).
type homeAssistant struct {
	br      *broker.Broker
	eng     *node.Engine
	log     *slog.Logger
	prefix  string
	node    string
	avail   string // the availability topic
	configs []haConfig
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
		node: cfg.Node, avail: "edgekv/availability/" + cfg.Node}
	prof, _ := boards.Lookup(cfg.Board)
	device := map[string]any{
		"identifiers":  []string{"edgekv_" + haSlug(cfg.Node)},
		"name":         cfg.Node,
		"manufacturer": "edgekv",
		"model":        prof.Name,
	}
	topic := func(path string) (string, error) {
		p, err := tree.ParsePath(path)
		if err != nil {
			return "", err
		}
		return broker.TopicForPath(cfg.KV.Prefix, p)
	}
	// add announces the binding at path: state from stateOf (a tree path).
	add := func(component, path, stateOf string, fields map[string]any) error {
		state, err := topic(stateOf)
		if err != nil {
			return fmt.Errorf("home assistant: %s: %w", stateOf, err)
		}
		id := haSlug(path)
		c := map[string]any{
			"name":                  path,
			"unique_id":             "edgekv_" + haSlug(cfg.Node) + "_" + id,
			"state_topic":           state,
			"availability_topic":    ha.avail,
			"payload_available":     "online",
			"payload_not_available": "offline",
			"device":                device,
		}
		for k, v := range fields {
			c[k] = v
		}
		payload, err := json.Marshal(c)
		if err != nil {
			return err
		}
		ha.configs = append(ha.configs, haConfig{topic: fmt.Sprintf("%s/%s/edgekv_%s/%s/config", ha.prefix, component, haSlug(cfg.Node), id), payload: payload})
		return nil
	}
	onOff := "{{ 'ON' if value_json.value else 'OFF' }}"
	for _, s := range hc.Sensors {
		if s.Device == boards.AllDevices {
			continue // found as they come: not announced (yet)
		}
		if err := add("sensor", s.Path, s.Path, map[string]any{"device_class": "temperature", "state_class": "measurement",
			"unit_of_measurement": "°C", "value_template": "{{ value_json.value }}"}); err != nil {
			return nil, err
		}
	}
	for _, in := range hc.Inputs {
		if err := add("binary_sensor", in.Path, in.Path, map[string]any{"value_template": onOff, "payload_on": "ON", "payload_off": "OFF"}); err != nil {
			return nil, err
		}
	}
	for _, o := range hc.Outputs {
		// Commands go to the path's own topic; the state is the state path's.
		cmd, err := topic(o.Path)
		if err != nil {
			return nil, fmt.Errorf("home assistant: %s: %w", o.Path, err)
		}
		if err := add("switch", o.Path, o.StatePath(), map[string]any{"value_template": onOff, "state_on": "ON", "state_off": "OFF",
			"command_topic": cmd, "payload_on": "true", "payload_off": "false"}); err != nil {
			return nil, err
		}
	}
	return ha, nil
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
	ha.announce()
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
				ha.log.Info("Home Assistant is back: announcing again", "configs", len(ha.configs))
				ha.announce()
				_ = ha.br.PublishRetained(ha.avail, []byte("online"))
			}
		}
	}
}

func (ha *homeAssistant) announce() {
	for _, c := range ha.configs {
		if err := ha.br.PublishRetained(c.topic, c.payload); err != nil {
			ha.log.Warn("discovery config not published", "topic", c.topic, "error", err)
		}
	}
}

// removeStale empties the configs announced before that are not announced
// now, and records what is.
func (ha *homeAssistant) removeStale(ctx context.Context) {
	p := ha.announcedPath()
	var before []string
	if e, err := ha.eng.Get(ctx, p); err == nil && e.Value != nil {
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
	now := make([]string, len(ha.configs))
	for i, c := range ha.configs {
		now[i] = c.topic
	}
	for _, t := range before {
		if !slices.Contains(now, t) && strings.HasPrefix(t, ha.prefix+"/") {
			if err := ha.br.PublishRetained(t, nil); err != nil {
				ha.log.Warn("stale discovery config not removed", "topic", t, "error", err)
			} else {
				ha.log.Info("binding gone: its Home Assistant entity is removed", "topic", t)
			}
		}
	}
	b := msgp.AppendArrayHeader(nil, uint32(len(now)))
	for _, t := range now {
		b = msgp.AppendString(b, t)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := ha.eng.Set(wctx, p, b, node.Cond{}); err != nil {
		ha.log.Warn("announced configs not recorded", "error", err)
	}
}
