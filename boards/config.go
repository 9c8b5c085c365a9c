package boards

import (
	"bytes"
	_ "embed" // for the embedded default config
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is one node's board config: what `edgekv run` reads from the YAML
// file given with -c, or from the embedded default. The yaml tags are the
// file's keys; DESIGN.md §3–5 say what the settings do.
//
// Build one with Parse, Load, Default or DefaultConfig, finish it with
// SetNode, check it with Validate, then treat it as read-only.
type Config struct {
	// Node is the node's name: unique among the nodes that sync with each
	// other, printable, at most 64 bytes, without spaces or any of / + # $.
	// It may be left out of a file and given with `edgekv run -n NAME`.
	Node string `yaml:"node"`
	// Board is the board profile's name (see Profiles): sim, rpi3, rpi4,
	// rpi5, rpizero2w, beaglebone-black or generic. Default sim.
	Board string `yaml:"board"`
	// LogLevel is debug, info (the default), warn or error.
	LogLevel LogLevel `yaml:"log_level"`
	// Data is where and how the node keeps its snapshot and change log.
	Data Data `yaml:"data"`
	// Listen lists the addresses the node's servers listen on.
	Listen Listen `yaml:"listen"`
	// KV is how the tree appears as retained MQTT messages.
	KV KV `yaml:"kv"`
	// Sync tunes the sync protocol between nodes.
	Sync Sync `yaml:"sync"`
	// Peers are the other edgekv nodes whose brokers this node dials.
	Peers []Link `yaml:"peers"`
	// Hubs are external brokers (mosquitto, …) shared by several nodes that
	// sync through them.
	Hubs []Link `yaml:"hubs"`
	// PeerUsers are the credentials other nodes present when they dial this
	// node's broker.
	PeerUsers []PeerUser `yaml:"peer_users"`
	// Limits bound what clients may take from the node.
	Limits Limits `yaml:"limits"`
	// Hardware binds the board's sensors and pins to tree paths.
	Hardware Hardware `yaml:"hardware"`
	// Jobs configures the job runner.
	Jobs Jobs `yaml:"jobs"`

	source string         // the name given to Parse or Load
	lines  map[string]int // YAML path → line, from the parsed file
}

// Data says where the node keeps its snapshot and change log, and when they
// reach the disk (DESIGN.md §4).
type Data struct {
	// Dir is the data directory. Default ./data/NODE.
	Dir string `yaml:"dir"`
	// Sync is the durability policy: always (an fsync before each write is
	// acknowledged: power loss loses nothing acknowledged), interval (the
	// default: group commit every SyncInterval; power loss can lose the
	// writes of the last interval that no peer had received) or none (no
	// data on disk; peers give it back after a restart). Under every
	// policy the node keeps its tick reservation (node.ekv) in Dir, so it
	// never reuses a tick after a crash.
	Sync SyncPolicy `yaml:"sync"`
	// SyncInterval is the group-commit period for the interval policy, a Go
	// duration such as "100ms" (the default).
	SyncInterval Duration `yaml:"sync_interval"`
	// Dumps is the directory where clients' save requests (MoaT-KV's save
	// action) write their files, each a plain file name; never the data
	// directory itself. Default Dir/dumps.
	Dumps string `yaml:"dumps"`
}

// DumpDir returns where save requests write: Dumps, or Dir/dumps.
func (d Data) DumpDir() string {
	if d.Dumps != "" {
		return d.Dumps
	}
	return filepath.Join(d.Dir, "dumps")
}

// Listen lists the node's listening addresses, each "host:port". An empty
// host listens on every interface; port 0 picks a free port (for tests).
type Listen struct {
	// MQTT are MQTT-over-TCP listeners. Default ["127.0.0.1:1883"].
	MQTT []string `yaml:"mqtt"`
	// WebSocket are MQTT-over-WebSocket listeners. Default none.
	WebSocket []string `yaml:"websocket"`
	// TLS are MQTT-over-TLS listeners, each with its certificate and key.
	TLS []TLSListener `yaml:"tls"`
	// Client is the MoaT-KV client-protocol listener (DESIGN.md §6);
	// "" turns it off. Default "127.0.0.1:27586".
	Client string `yaml:"client"`
	// ClientTLS are more MoaT-KV client-protocol listeners that speak TLS,
	// each with its certificate and key; they serve the same tree as
	// Client, which stays as it is. Default none.
	ClientTLS []TLSListener `yaml:"client_tls"`
}

// TLSListener is a listener that speaks TLS: MQTT (listen.tls) or the
// MoaT-KV client protocol (listen.client_tls).
type TLSListener struct {
	// Addr is the "host:port" to listen on.
	Addr string `yaml:"addr"`
	// Cert and Key are PEM files: the server certificate (chain) and its
	// private key. Relative names are relative to the working directory.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// KV is how the tree appears to plain MQTT clients (DESIGN.md §5).
type KV struct {
	// Prefix is the topic prefix of the tree's retained messages. Default
	// "kv".
	Prefix string `yaml:"prefix"`
	// MaxPayloadBytes is the largest payload a client may publish to a KV
	// topic, in bytes. Default 65536.
	MaxPayloadBytes int `yaml:"max_payload_bytes"`
}

// Limits bound what the node's clients (MQTT and the MoaT-KV client
// protocol) may make it hold, so that a broken or hostile one cannot take
// a small board's memory. The README's "Hostile and careless clients"
// says what each costs.
type Limits struct {
	// MQTTConnections is the most MQTT connections at once, peers' links
	// included; more get CONNACK "server busy". Default 256.
	MQTTConnections int `yaml:"mqtt_connections"`
	// ClientConnections is the most client-protocol connections at once;
	// more get an error naming this setting. Default 256.
	ClientConnections int `yaml:"client_connections"`
	// ClientMessage is the largest client-protocol request. Default 16MiB.
	ClientMessage Size `yaml:"client_message"`
	// MQTTPacket is the largest MQTT packet a client may send; at least
	// kv.max_payload_bytes. Default 4MiB.
	MQTTPacket Size `yaml:"mqtt_packet"`
	// Receiving is what all connections together may hold of messages
	// still arriving (beyond 64 KiB each). A connection that finds no room
	// waits ReceivingWait, unread, then is closed with a reason; a message
	// over 64 KiB must also keep arriving at 64 KiB/s (after 10 s).
	// At least ClientMessage and MQTTPacket. Default 64MiB.
	Receiving Size `yaml:"receiving"`
	// ReceivingWait is how long a connection waits for room in Receiving.
	// Default 5s.
	ReceivingWait Duration `yaml:"receiving_wait"`
	// MQTTQueue is what may wait to be sent to one MQTT client (payload,
	// topic and 256 bytes per message): a client that does not read fast
	// enough to stay under it is disconnected, and the reason logged.
	// Default 16MiB.
	MQTTQueue Size `yaml:"mqtt_queue"`
	// Sending bounds all MQTT clients' queues together; a client whose
	// message would go over it while it still has some waiting is
	// disconnected. At least MQTTQueue. Default 128MiB.
	Sending Size `yaml:"sending"`
	// Retained bounds the retained MQTT messages (topic and payload bytes)
	// on topics outside kv.prefix and sync.prefix; one that does not fit
	// is refused; 0 allows none. Default 16MiB.
	Retained Size `yaml:"retained"`
}

// Sync tunes the sync protocol (DESIGN.md §3).
type Sync struct {
	// Prefix is the topic prefix of sync messages. Default "edgekv/sync";
	// "moat/kv" on a hub shared with MoaT-KV servers.
	Prefix string `yaml:"prefix"`
	// ChainLength is how many (node, tick) links an entry's chain keeps
	// when sent, 1 to 64. Default 5.
	ChainLength int `yaml:"chain_length"`
	// Heartbeat is the period between heartbeats, a Go duration. Default
	// "1s".
	Heartbeat Duration `yaml:"heartbeat"`
	// MoaT tunes MoaT-KV's recovery on hub links (reference spec
	// §3.3–3.5): the node takes part in MoaT-KV's ping group there, so that
	// MoaT-KV servers on the same bus and edgekv nodes find what each
	// other missed after a restart or a split.
	MoaT MoaTSync `yaml:"moat"`
}

// MoaTSync: see Sync.MoaT.
type MoaTSync struct {
	// Disabled keeps the node out of MoaT-KV's ping group (edgekv's own
	// catch-up still runs). Default false.
	Disabled bool `yaml:"disabled"`
	// Only turns edgekv's own catch-up off (the digest exchange, ticks
	// learnt from heartbeats, periodic missing requests): only MoaT-KV's
	// recovery finds what is missing. For tests and for checking a mixed
	// network; slower to catch up. Default false.
	Only bool `yaml:"only"`
	// Cycle and Gap are the ping group's timing, as MoaT-KV's
	// server.ping: defaults 10s and 2s. Every member of a group must use
	// the same (asyncactor lets a higher "version" win; edgekv sends 0).
	Cycle Duration `yaml:"cycle"`
	Gap   Duration `yaml:"gap"`
}

// Link is an MQTT broker this node dials: a peer (another edgekv node) or a
// hub (an external broker).
type Link struct {
	// Name names the peer node or the hub; peers and hubs share one
	// namespace. A peer's name is its node name.
	Name string `yaml:"name"`
	// Addr is the broker's "host:port".
	Addr string `yaml:"addr"`
	// Username and Password are the credentials this node presents to the
	// broker; both empty connects anonymously.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// TLS, when set, makes the connection use TLS.
	TLS *ClientTLS `yaml:"tls,omitempty"`
}

// ClientTLS configures TLS on a link. File names relative to the working
// directory.
type ClientTLS struct {
	// CA is a PEM file of the CA certificates to trust; empty uses the
	// system's.
	CA string `yaml:"ca"`
	// Cert and Key are a PEM client certificate and its key, for brokers
	// that want one; both or neither.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ServerName overrides the host name the certificate is checked against.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify turns certificate checking off (tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// PeerUser is a credential another node presents when it dials this node's
// broker.
type PeerUser struct {
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// SyncPolicy is when writes reach the disk (DESIGN.md §4).
type SyncPolicy string

// The sync policies.
const (
	// SyncAlways fsyncs before a write is acknowledged.
	SyncAlways SyncPolicy = "always"
	// SyncInterval commits in groups every Data.SyncInterval.
	SyncInterval SyncPolicy = "interval"
	// SyncNone keeps the tree in memory only, like MoaT-KV.
	SyncNone SyncPolicy = "none"
)

var syncPolicies = []SyncPolicy{SyncAlways, SyncInterval, SyncNone}

// LogLevel is the lowest level logged: debug, info, warn or error.
type LogLevel string

// The log levels.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

var logLevels = map[LogLevel]slog.Level{
	LogDebug: slog.LevelDebug,
	LogInfo:  slog.LevelInfo,
	LogWarn:  slog.LevelWarn,
	LogError: slog.LevelError,
}

// Slog returns l as a slog.Level; slog.LevelInfo for an unknown level.
func (l LogLevel) Slog() slog.Level { return logLevels[l] }

// Size is a number of bytes, written in YAML as an integer or with a unit:
// 512KiB, 64MiB, 1GiB (powers of 1024), or kB, MB, GB (of 1000).
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}

// String writes s in the largest binary unit that divides it.
func (s Size) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if s != 0 && int64(s)%u.mult == 0 {
			return fmt.Sprintf("%d%s", int64(s)/u.mult, u.suffix)
		}
	}
	return fmt.Sprintf("%d", int64(s))
}

// MarshalYAML writes s as String does.
func (s Size) MarshalYAML() (any, error) {
	if str := s.String(); !strings.ContainsAny(str, "KMG") {
		return int64(s), nil
	}
	return s.String(), nil
}

// UnmarshalYAML reads a size; a bad value is reported with its line.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, msg := parseSize(n)
	if msg != "" {
		return fmt.Errorf("boards: line %d: %s", n.Line, msg)
	}
	*s = v
	return nil
}

// parseSize reads a scalar node as a Size, or says what is wrong.
func parseSize(n *yaml.Node) (Size, string) {
	want := "want a size such as 65536, 512KiB or 64MiB, got "
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		return 0, want + describe(n)
	}
	str := strings.TrimSpace(n.Value)
	mult := int64(1)
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(str, u.suffix); ok {
			str, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(str, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return 0, fmt.Sprintf("%q is not a size (want e.g. 65536, 512KiB, 64MiB)", n.Value)
	}
	return Size(v * mult), ""
}

// Duration is a time.Duration written in YAML as a Go duration string
// ("100ms", "1s", "1m30s").
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration string; a bad value is reported with its
// line. It lets plain yaml.Unmarshal read a Duration too.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, msg := parseDuration(n)
	if msg != "" {
		return fmt.Errorf("boards: line %d: %s", n.Line, msg)
	}
	*d = v
	return nil
}

// parseDuration reads a scalar node as a Duration, or says what is wrong.
func parseDuration(n *yaml.Node) (Duration, string) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		return 0, "want a duration such as 100ms or 1s, got " + describe(n)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		msg := fmt.Sprintf("%q is not a duration (want e.g. 100ms, 1s, 1m30s)", n.Value)
		if strings.Trim(n.Value, "0123456789") == "" {
			msg = fmt.Sprintf("%q has no unit (want e.g. %sms or %ss)", n.Value, n.Value, n.Value)
		}
		return 0, msg
	}
	return Duration(v), ""
}

// Defaults of the settings DefaultConfig fills in.
const (
	DefaultBoard           = "sim"
	DefaultMQTTAddr        = "127.0.0.1:1883"
	DefaultClientAddr      = "127.0.0.1:27586"
	DefaultKVPrefix        = "kv"
	DefaultSyncPrefix      = "edgekv/sync"
	DefaultMaxPayloadBytes = 64 << 10
	DefaultChainLength     = 5
	DefaultSyncInterval    = 100 * time.Millisecond
	DefaultHeartbeat       = time.Second

	DefaultMQTTConnections   = 256
	DefaultClientConnections = 256
	DefaultClientMessage     = 16 << 20
	DefaultMQTTPacket        = 4 << 20
	DefaultReceiving         = 64 << 20
	DefaultReceivingWait     = 5 * time.Second
	DefaultRetained          = 16 << 20
	DefaultMQTTQueue         = 16 << 20
	DefaultSending           = 128 << 20
)

// DefaultDataDir returns the default data directory of node: ./data/NODE.
func DefaultDataDir(node string) string { return "./data/" + node }

// DefaultConfig returns the default config of node: the sim board, MQTT on
// 127.0.0.1:1883, the client protocol on 127.0.0.1:27586, data in
// ./data/NODE with interval sync every 100ms, no peers. With node "" the
// node and the data directory are left empty for SetNode. It is what the
// embedded default (Default) says.
func DefaultConfig(node string) *Config {
	c := &Config{
		Node:     node,
		Board:    DefaultBoard,
		LogLevel: LogInfo,
		Data: Data{
			Sync:         SyncInterval,
			SyncInterval: Duration(DefaultSyncInterval),
		},
		Listen: Listen{
			MQTT:   []string{DefaultMQTTAddr},
			Client: DefaultClientAddr,
		},
		KV: KV{Prefix: DefaultKVPrefix, MaxPayloadBytes: DefaultMaxPayloadBytes},
		Sync: Sync{Prefix: DefaultSyncPrefix, ChainLength: DefaultChainLength, Heartbeat: Duration(DefaultHeartbeat),
			MoaT: MoaTSync{Cycle: Duration(10 * time.Second), Gap: Duration(2 * time.Second)}},
		Limits: Limits{
			MQTTConnections:   DefaultMQTTConnections,
			ClientConnections: DefaultClientConnections,
			ClientMessage:     DefaultClientMessage,
			MQTTPacket:        DefaultMQTTPacket,
			Receiving:         DefaultReceiving,
			ReceivingWait:     Duration(DefaultReceivingWait),
			Retained:          DefaultRetained,
			MQTTQueue:         DefaultMQTTQueue,
			Sending:           DefaultSending,
		},
	}
	if node != "" {
		c.Data.Dir = DefaultDataDir(node)
	}
	return c
}

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the text of the embedded default config
// (boards/default.yaml; configs/demo.yaml is a copy).
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// Default returns the embedded default config, used by `edgekv run`
// without -c. It has no node name: give it with SetNode.
func Default() *Config {
	c, err := Parse(defaultYAML, "(embedded default)")
	if err != nil {
		panic(err) // programmer error: a test parses default.yaml
	}
	return c
}

// Source returns the name the config was parsed from: the file given to
// Load, the source given to Parse, or "" for a config built in code.
func (c *Config) Source() string { return c.source }

// SetNode applies the node name given on the command line (`edgekv run -n
// NAME`): a config without a node takes name (and, without a data
// directory, ./data/NAME); a config with a node must agree with a
// non-empty name. It returns a *ConfigError when they differ; Validate
// checks the name itself.
func (c *Config) SetNode(name string) error {
	switch {
	case name == "" || name == c.Node:
	case c.Node == "":
		c.Node = name
	default:
		return &ConfigError{Source: c.source, Problems: []Problem{{
			Path: "node", Line: c.line("node"),
			Msg: fmt.Sprintf("is %q, but -n gave %q", c.Node, name),
		}}}
	}
	if c.Data.Dir == "" && c.Node != "" {
		c.Data.Dir = DefaultDataDir(c.Node)
	}
	return nil
}

// Marshal returns c as YAML (two-space indent), with every setting
// written out; Parse reads it back to an equal Config.
func (c *Config) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("boards: encoding config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("boards: encoding config: %w", err)
	}
	return buf.Bytes(), nil
}

// line returns the line of the YAML path, or of its nearest ancestor that
// has one; 0 when unknown.
func (c *Config) line(path string) int {
	for path != "" {
		if l, ok := c.lines[path]; ok {
			return l
		}
		path = parentPath(path)
	}
	return 0
}

// parentPath strips the last ".key" or "[i]" off a YAML path.
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}
