package boards

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// parseCases are YAML configs with exactly one problem each: its path, line
// and a fragment of its message. "$CERT" and "$KEY" stand for existing
// files, "$DIR" for an existing directory.
var parseCases = []struct {
	name     string
	yaml     string
	wantPath string
	wantLine int
	wantMsg  string
}{
	// node
	{"node with slash", "node: a/b\n", "node", 1, `contains '/'`},
	{"node with plus", "board: sim\nnode: a+b\n", "node", 2, `contains '+'`},
	{"node with hash", "node: \"a#b\"\n", "node", 1, `contains '#'`},
	{"node with dollar", "node: $ab\n", "node", 1, `contains '$'`},
	{"node with space", "node: a b\n", "node", 1, "contains a space"},
	{"node with tab", "node: \"a\\tb\"\n", "node", 1, "contains a space"},
	{"node unprintable", "node: \"a\\x07b\"\n", "node", 1, "unprintable character U+0007"},
	{"node too long", "node: " + strings.Repeat("n", 65) + "\n", "node", 1, "65 bytes, longer than 64"},
	{"node as list", "node: [a]\n", "node", 1, "want a string, got a list"},

	// board, log level
	{"unknown board", "node: n\nboard: rpi2\n", "board", 2, `unknown board "rpi2" (known: beaglebone-black, generic,`},
	{"bad log level", "log_level: trace\n", "log_level", 1, `"trace" is not a log level`},

	// data
	{"bad sync policy", "data:\n  sync: sometimes\n", "data.sync", 2, `"sometimes" is not a sync policy (want always, interval or none)`},
	{"sync interval without unit", "data:\n  sync_interval: 100\n", "data.sync_interval", 2, `"100" has no unit`},
	{"sync interval not a duration", "data:\n  sync_interval: soon\n", "data.sync_interval", 2, `"soon" is not a duration`},
	{"dumps in the data directory", "data:\n  dir: /var/lib/e\n  dumps: /var/lib/e/\n", "data.dumps", 3, `is the data directory`},
	{"sync interval zero", "data:\n  sync: interval\n  sync_interval: 0s\n", "data.sync_interval", 3, "0s is not positive"},
	{"sync interval empty", "data:\n  sync_interval:\n", "data.sync_interval", 2, "want a duration such as 100ms or 1s, got nothing"},

	// listen
	{"listen addr without port", "listen:\n  mqtt: [localhost]\n", "listen.mqtt[0]", 2, `"localhost" is not host:port: missing port`},
	{"listen port out of range", "listen:\n  mqtt:\n    - 127.0.0.1:1883\n    - 127.0.0.1:70000\n", "listen.mqtt[1]", 4, "port 70000 is out of range (want 0 to 65535)"},
	{"listen port not a number", "listen:\n  mqtt: [\"127.0.0.1:mqtt\"]\n", "listen.mqtt[0]", 2, `port "mqtt" is not a number`},
	{"listen bad host", "listen:\n  mqtt: [\"bad!host:1883\"]\n", "listen.mqtt[0]", 2, `"bad!host" is not an IP address or host name`},
	{"listen duplicate", "listen:\n  mqtt:\n    - 127.0.0.1:1883\n    - 127.0.0.1:1883\n", "listen.mqtt[1]", 4, `collides with listen.mqtt[0] (line 3)`},
	{"listen wildcard collides", "listen:\n  mqtt: [\"127.0.0.1:1883\"]\n  websocket: [\":1883\"]\n", "listen.websocket[0]", 3, `":1883" collides with listen.mqtt[0] (line 2)`},
	{"listen client collides", "listen:\n  mqtt: [\"0.0.0.0:1883\"]\n  client: 10.0.0.1:1883\n", "listen.client", 3, "collides with listen.mqtt[0]"},
	{"listen ipv6 collides", "listen:\n  mqtt: [\"[::]:1883\"]\n  websocket: [\"[::1]:1883\"]\n", "listen.websocket[0]", 3, "collides"},
	{"listen not a list", "listen:\n  websocket: 127.0.0.1:8080\n", "listen.websocket", 2, `want a list, got the string "127.0.0.1:8080"`},
	{"listen as list", "listen: []\n", "listen", 1, "want a mapping, got a list"},
	{"tls listener without cert", "listen:\n  tls:\n    - addr: 127.0.0.1:8883\n      key: $KEY\n", "listen.tls[0].cert", 3, "missing (want a PEM file)"},
	{"tls listener without key", "listen:\n  tls:\n    - addr: 127.0.0.1:8883\n      cert: $CERT\n", "listen.tls[0].key", 3, "missing (want a PEM file)"},
	{"tls listener without addr", "listen:\n  tls:\n    - cert: $CERT\n      key: $KEY\n", "listen.tls[0].addr", 3, "missing (want host:port)"},
	{"tls cert missing file", "listen:\n  tls:\n    - addr: 127.0.0.1:8883\n      cert: no/such.pem\n      key: $KEY\n", "listen.tls[0].cert", 4, `file "no/such.pem" does not exist`},
	{"tls key is a directory", "listen:\n  tls:\n    - addr: 127.0.0.1:8883\n      cert: $CERT\n      key: $DIR\n", "listen.tls[0].key", 5, "is a directory, not a file"},
	{"tls listener collides", "listen:\n  mqtt: [\"127.0.0.1:8883\"]\n  tls: [{addr: \"127.0.0.1:8883\", cert: $CERT, key: $KEY}]\n", "listen.tls[0].addr", 3, "collides with listen.mqtt[0]"},
	{"client tls without cert", "listen:\n  client_tls:\n    - addr: 127.0.0.1:27587\n      key: $KEY\n", "listen.client_tls[0].cert", 3, "missing (want a PEM file)"},
	{"client tls without key", "listen:\n  client_tls:\n    - addr: 127.0.0.1:27587\n      cert: $CERT\n", "listen.client_tls[0].key", 3, "missing (want a PEM file)"},
	{"client tls without addr", "listen:\n  client_tls:\n    - cert: $CERT\n      key: $KEY\n", "listen.client_tls[0].addr", 3, "missing (want host:port)"},
	{"client tls bad addr", "listen:\n  client_tls: [{addr: \"127.0.0.1\", cert: $CERT, key: $KEY}]\n", "listen.client_tls[0].addr", 2, `"127.0.0.1" is not host:port`},
	{"client tls key missing file", "listen:\n  client_tls:\n    - addr: 127.0.0.1:27587\n      cert: $CERT\n      key: no/key.pem\n", "listen.client_tls[0].key", 5, `file "no/key.pem" does not exist`},
	{"client tls cert is a directory", "listen:\n  client_tls:\n    - addr: 127.0.0.1:27587\n      cert: $DIR\n      key: $KEY\n", "listen.client_tls[0].cert", 4, "is a directory, not a file"},
	{"client tls collides with client", "listen:\n  client: 127.0.0.1:27586\n  client_tls: [{addr: \":27586\", cert: $CERT, key: $KEY}]\n", "listen.client_tls[0].addr", 3, "collides with listen.client (line 2)"},
	{"client tls collides with mqtt tls", "listen:\n  tls: [{addr: \"127.0.0.1:8883\", cert: $CERT, key: $KEY}]\n  client_tls: [{addr: \"127.0.0.1:8883\", cert: $CERT, key: $KEY}]\n", "listen.client_tls[0].addr", 3, "collides with listen.tls[0].addr"},
	{"client tls as string", "listen:\n  client_tls: 127.0.0.1:27587\n", "listen.client_tls", 2, `want a list, got the string "127.0.0.1:27587"`},
	{"client tls unknown key", "listen:\n  client_tls: [{addr: \"127.0.0.1:27587\", cert: $CERT, key: $KEY, ca: $CERT}]\n", "listen.client_tls[0].ca", 2, "unknown key"},

	// kv and sync
	{"kv prefix empty", "kv:\n  prefix: \"\"\n", "kv.prefix", 2, "is empty"},
	{"kv prefix plus", "kv:\n  prefix: kv/+\n", "kv.prefix", 2, "MQTT wildcard"},
	{"kv prefix hash", "kv:\n  prefix: \"kv/#\"\n", "kv.prefix", 2, "MQTT wildcard"},
	{"kv prefix dollar", "kv:\n  prefix: $kv\n", "kv.prefix", 2, "starts with $"},
	{"kv prefix leading slash", "kv:\n  prefix: /kv\n", "kv.prefix", 2, "empty topic level"},
	{"kv prefix double slash", "kv:\n  prefix: a//kv\n", "kv.prefix", 2, "empty topic level"},
	{"kv prefix control", "kv:\n  prefix: \"k\\x01v\"\n", "kv.prefix", 2, "control character U+0001"},
	{"sync prefix wildcard", "sync:\n  prefix: edgekv/+/sync\n", "sync.prefix", 2, "MQTT wildcard"},
	{"prefixes equal", "kv:\n  prefix: data\nsync:\n  prefix: data\n", "sync.prefix", 4, `"data" overlaps kv.prefix "data" (line 2)`},
	{"sync under kv", "kv:\n  prefix: kv\nsync:\n  prefix: kv/sync\n", "sync.prefix", 4, "overlaps"},
	{"kv under sync", "kv:\n  prefix: edgekv/sync/kv\n", "sync.prefix", 0, "overlaps"},
	// hardware
	{"sensor without device", "hardware:\n  sensors:\n    - {path: a.b}\n", "hardware.sensors[0].device", 3, "a device id is required"},
	{"sensor without path", "hardware:\n  sensors:\n    - {device: sim-1}\n", "hardware.sensors[0].path", 3, "a tree path is required"},
	{"sensor interval short", "hardware:\n  sensors:\n    - device: sim-1\n      path: a.b\n      interval: 10ms\n", "hardware.sensors[0].interval", 5, "10ms is shorter than 100ms"},
	{"sensor deadband negative", "hardware:\n  sensors:\n    - {device: sim-1, path: a.b, deadband: -0.5}\n", "hardware.sensors[0].deadband", 3, "-0.5 is not a non-negative number"},
	{"sensor deadband string", "hardware:\n  sensors:\n    - {device: sim-1, path: a.b, deadband: lots}\n", "hardware.sensors[0].deadband", 3, `want a number, got the string "lots"`},
	{"sensor scale zero", "hardware:\n  sensors:\n    - {device: sim-1, path: a.b, scale: 0}\n", "hardware.sensors[0].scale", 3, "not a usable factor"},
	{"sensor device twice", "hardware:\n  sensors:\n    - {device: sim-1, path: a.b}\n    - {device: sim-1, path: a.c}\n", "hardware.sensors[1].device", 4, `device "sim-1" is already bound by hardware.sensors[0].device`},
	{"path bound twice", "hardware:\n  sensors:\n    - {device: sim-1, path: a.b}\n  inputs:\n    - {pin: GPIO17, path: a.b}\n", "hardware.inputs[0].path", 5, `"a.b" is already bound by hardware.sensors[0].path`},
	{"unknown pin", "hardware:\n  inputs:\n    - {pin: GPIO99, path: a.b}\n", "hardware.inputs[0].pin", 3, `board sim has no pin "GPIO99" (its pins: GPIO4, GPIO17`},
	{"pin bound twice", "hardware:\n  inputs:\n    - {pin: GPIO17, path: a.b}\n  outputs:\n    - {pin: gpio17, path: a.c}\n", "hardware.outputs[0].pin", 5, "pin GPIO17 is already bound by hardware.inputs[0].pin"},
	{"pull unknown", "hardware:\n  inputs:\n    - {pin: GPIO17, path: a.b, pull: sideways}\n", "hardware.inputs[0].pull", 3, `"sideways" is not a pull (want up, down or none)`},
	{"debounce too long", "hardware:\n  inputs:\n    - {pin: GPIO17, path: a.b, debounce: 1m}\n", "hardware.inputs[0].debounce", 3, "1m0s is out of range (0 to 10s)"},
	{"output state on a bound path", "hardware:\n  sensors:\n    - {device: sim-1, path: r.state}\n  outputs:\n    - {pin: GPIO27, path: r}\n", "hardware.outputs[0].state", 5, `"r.state" is already bound by hardware.sensors[0].path`},
	{"sensor bus unknown", "hardware:\n  sensors:\n    - {device: sim-1, path: a.b, bus: can}\n", "hardware.sensors[0].bus", 3, `"can" is not a bus (want sim, w1-sysfs[:DIR], ds248x:I2CBUS[:ADDR] or owserver:HOST:PORT)`},
	{"ds248x address", "hardware:\n  sensors:\n    - {device: 28-0316a2794bff, path: a.b, bus: \"ds248x:/dev/i2c-1:0x40\"}\n", "hardware.sensors[0].bus", 3, `address "0x40" is not a DS248x's (0x18 to 0x1b)`},
	{"ds248x no bus", "hardware:\n  sensors:\n    - {device: 28-0316a2794bff, path: a.b, bus: \"ds248x:\"}\n", "hardware.sensors[0].bus", 3, "no I²C bus"},
	{"sensor w1 relative dir", "hardware:\n  sensors:\n    - {device: 28-0316a2794bff, path: a.b, bus: \"w1-sysfs:devs\"}\n", "hardware.sensors[0].bus", 3, "must be an absolute path"},
	{"sensor w1 id on a pi", "board: rpi4\nhardware:\n  sensors:\n    - {device: kitchen, path: a.b}\n", "hardware.sensors[0].device", 4, `"kitchen" is not a 1-wire id`},
	{"sensor owserver address", "hardware:\n  sensors:\n    - {device: 28.67C6697351FF, path: a.b, bus: \"owserver:localhost\"}\n", "hardware.sensors[0].bus", 3, `"owserver:localhost": owserver's address`},
	{"sensor owserver id", "hardware:\n  sensors:\n    - {device: sim-1, path: a.b, bus: \"owserver:127.0.0.1:4304\"}\n", "hardware.sensors[0].device", 3, `"sim-1" is not a 1-wire id`},
	{"sensor on a board without a bus", "board: generic\nhardware:\n  sensors:\n    - {device: 28-67c6697351ff, path: a.b}\n", "hardware.sensors[0].bus", 4, "board generic has no default 1-wire bus"},
	{"output pin and device", "hardware:\n  outputs:\n    - {pin: GPIO27, device: 3A.54F81BE8E78D, channel: A, bus: \"owserver:127.0.0.1:4304\", path: r}\n", "hardware.outputs[0]", 3, "give a pin or a device, not both"},
	{"switch channel", "hardware:\n  outputs:\n    - {device: 3A.54F81BE8E78D, channel: C, bus: \"owserver:127.0.0.1:4304\", path: r}\n", "hardware.outputs[0].channel", 3, `a DS2413 has channels A and B, not "C"`},
	{"switch family", "hardware:\n  outputs:\n    - {device: 28.54F81BE8E78D, channel: A, bus: \"owserver:127.0.0.1:4304\", path: r}\n", "hardware.outputs[0].device", 3, "family 28 is not a switch"},
	{"switch bus", "hardware:\n  outputs:\n    - {device: 29.54F81BE8E78D, channel: 3, path: r}\n", "hardware.outputs[0].bus", 3, "the sim bus has no 1-wire switches"},
	{"jobs group twice", "jobs:\n  groups: [a, a]\n", "jobs.groups[1]", 2, `group "a" is given twice`},
	{"jobs activation", "jobs:\n  activation: 1ms\n", "jobs.activation", 2, "1ms is out of range"},
	{"jobs max_allocs", "jobs:\n  max_allocs: 10\n", "jobs.max_allocs", 2, "10 is out of range"},
	{"switch on a bad bus", "board: rpi4\nhardware:\n  inputs:\n    - {device: 29.54F81BE8E78D, channel: 3, bus: \"ds248x:/dev/i2c-1:0x30\", path: r}\n", "hardware.inputs[0].bus", 4, `address "0x30" is not a DS248x's`},
	{"switch twice on the default bus", "board: rpi4\nhardware:\n  outputs:\n    - {device: 29.54F81BE8E78D, channel: 3, path: r}\n    - {device: 29-54f81be8e78d, channel: 3, path: s}\n", "hardware.outputs[1].channel", 5, "channel 3 of 29-54f81be8e78d is already bound by hardware.outputs[0]"},
	{"switch channel twice", "hardware:\n  outputs:\n    - {device: 29.54F81BE8E78D, channel: 3, bus: \"owserver:127.0.0.1:4304\", path: r}\n    - {device: 29-54f81be8e78d, channel: 3, bus: \"owserver:127.0.0.1:4304\", path: s}\n", "hardware.outputs[1].channel", 4, "channel 3 of 29-54f81be8e78d is already bound by hardware.outputs[0]"},
	{"all on the sim bus", "hardware:\n  sensors:\n    - {device: all, path: a.b}\n", "hardware.sensors[0].device", 3, "the sim bus has no devices to find"},
	{"all twice on a bus", "board: rpi4\nhardware:\n  sensors:\n    - {device: all, path: a.b}\n    - {device: all, path: a.c}\n", "hardware.sensors[1].device", 5, `device "all" is already bound by hardware.sensors[0].device`},
	{"switch input twice", "hardware:\n  inputs:\n    - {device: 3A.54F81BE8E78D, channel: B, bus: \"owserver:127.0.0.1:4304\", path: r}\n  outputs:\n    - {device: 3A.54F81BE8E78D, channel: b, bus: \"owserver:127.0.0.1:4304\", path: s}\n", "hardware.outputs[0].channel", 5, "channel B of 3A.54F81BE8E78D is already bound by hardware.inputs[0]"},
	{"switch input interval", "hardware:\n  inputs:\n    - {device: 29.54F81BE8E78D, channel: 1, bus: \"owserver:127.0.0.1:4304\", path: r, interval: 1ms}\n", "hardware.inputs[0].interval", 3, "1ms is shorter than 100ms"},
	{"output without pin", "hardware:\n  outputs:\n    - {path: r}\n", "hardware.outputs[0].pin", 3, "a pin is required (one of the sim profile's: GPIO4"},
	{"max payload zero", "kv:\n  max_payload_bytes: 0\n", "kv.max_payload_bytes", 2, "0 is out of range (want 1 to 268435455)"},
	{"max payload too big", "kv:\n  max_payload_bytes: 268435456\n", "kv.max_payload_bytes", 2, "out of range"},
	{"max payload string", "kv:\n  max_payload_bytes: lots\n", "kv.max_payload_bytes", 2, `want an integer, got the string "lots"`},
	{"max payload float", "kv:\n  max_payload_bytes: 1.5\n", "kv.max_payload_bytes", 2, "want an integer, got the number 1.5"},
	{"size words", "limits:\n  receiving: lots\n", "limits.receiving", 2, `"lots" is not a size (want e.g. 65536, 512KiB, 64MiB)`},
	{"size unit unknown", "limits:\n  retained: 5 parsecs\n", "limits.retained", 2, "is not a size"},
	{"size negative", "limits:\n  retained: -1\n", "limits.retained", 2, "is not a size"},
	{"size list", "limits:\n  retained: [1]\n", "limits.retained", 2, "want a size such as 65536, 512KiB or 64MiB, got a list"},
	{"receiving below message", "limits:\n  receiving: 8MiB\n", "limits.receiving", 2, "8MiB is less than the largest message allowed (16MiB): one could never be received"},
	{"client message too big", "limits:\n  client_message: 1GiB\n", "limits.client_message", 2, "1GiB is out of range (want 64KiB to 256MiB)"},
	{"connections zero", "limits:\n  mqtt_connections: 0\n", "limits.mqtt_connections", 2, "0 is out of range (want 1 to 65536)"},
	{"packet below payload", "kv: {max_payload_bytes: 8388608}\nlimits:\n  mqtt_packet: 4MiB\n", "limits.mqtt_packet", 3, "4MiB is less than kv.max_payload_bytes (8388608): raise it"},
	{"sending below queue", "limits:\n  mqtt_queue: 32MiB\n  sending: 16MiB\n", "limits.sending", 3, "16MiB is less than limits.mqtt_queue (32MiB)"},
	{"wait negative", "limits:\n  receiving_wait: -1s\n", "limits.receiving_wait", 2, "-1s is negative"},
	{"chain length zero", "sync:\n  chain_length: 0\n", "sync.chain_length", 2, "0 is out of range (want 1 to 64)"},
	{"chain length too long", "sync:\n  chain_length: 65\n", "sync.chain_length", 2, "65 is out of range"},
	{"chain length overflow", "sync:\n  chain_length: 99999999999999999999\n", "sync.chain_length", 2, "want an integer"},
	{"heartbeat zero", "sync:\n  heartbeat: 0s\n", "sync.heartbeat", 2, "0s is not positive"},
	{"heartbeat negative", "sync:\n  heartbeat: -1s\n", "sync.heartbeat", 2, "-1s is not positive"},
	{"moat cycle short", "sync:\n  moat:\n    cycle: 500ms\n", "sync.moat", 3, "cycle 500ms and gap 2s: want 1s ≤ cycle ≤ 24h"},
	{"moat gap too long", "sync:\n  moat:\n    gap: 4s\n", "sync.moat", 3, "cycle 10s and gap 4s"},
	{"moat only but disabled", "sync:\n  moat:\n    only: true\n    disabled: true\n", "sync.moat.only", 3, "nothing would catch up"},
	{"heartbeat as mapping", "sync:\n  heartbeat: {s: 1}\n", "sync.heartbeat", 2, "want a duration such as 100ms or 1s, got a mapping"},

	// peers and hubs
	{"peer without name", "peers:\n  - addr: 127.0.0.1:18832\n", "peers[0].name", 2, "missing"},
	{"peer without addr", "peers:\n  - name: b\n", "peers[0].addr", 2, "missing (want host:port)"},
	{"peer addr without port", "peers:\n  - name: a\n    addr: 127.0.0.1:1\n  - name: b\n    addr: localhost\n", "peers[1].addr", 5, `"localhost" is not host:port`},
	{"peer addr without host", "peers:\n  - name: b\n    addr: \":1883\"\n", "peers[0].addr", 3, `":1883" has no host`},
	{"peer port zero", "peers:\n  - name: b\n    addr: h:0\n", "peers[0].addr", 3, "port 0 is out of range (want 1 to 65535)"},
	{"peer bad name", "peers:\n  - name: b 2\n    addr: h:1\n", "peers[0].name", 2, "contains a space"},
	{"duplicate peer names", "peers:\n  - {name: b, addr: \"h:1\"}\n  - {name: b, addr: \"h:2\"}\n", "peers[1].name", 3, `"b" is already the name of peers[0] (line 2)`},
	{"peer named like node", "node: a\npeers:\n  - name: a\n    addr: h:1\n", "peers[0].name", 3, `"a" is this node's own name`},
	{"duplicate peer addrs", "peers:\n  - {name: b, addr: \"h:1\"}\n  - {name: c, addr: \"h:1\"}\n", "peers[1].addr", 3, "already the address of peers[0]"},
	{"password without username", "peers:\n  - name: b\n    addr: h:1\n    password: x\n", "peers[0].password", 4, "set without a username"},
	{"peer tls ca missing", "peers:\n  - name: b\n    addr: h:1\n    tls:\n      ca: no/ca.pem\n", "peers[0].tls.ca", 5, `file "no/ca.pem" does not exist`},
	{"peer tls cert without key", "peers:\n  - name: b\n    addr: h:1\n    tls:\n      cert: $CERT\n", "peers[0].tls", 5, "needs both cert and key"},
	{"peer tls bad bool", "peers:\n  - name: b\n    addr: h:1\n    tls: {insecure_skip_verify: maybe}\n", "peers[0].tls.insecure_skip_verify", 4, `want true or false, got the string "maybe"`},
	{"peer tls unknown key", "peers:\n  - name: b\n    addr: h:1\n    tls:\n      servername: x\n", "peers[0].tls.servername", 5, `unknown key (did you mean "server_name"?)`},
	{"peer unknown key", "peers:\n  - name: b\n    address: h:1\n    addr: h:1\n", "peers[0].address", 3, `unknown key (did you mean "addr"?)`},
	{"peers as mapping", "peers:\n  b: h:1\n", "peers", 2, "want a list, got a mapping"},
	{"peer as string", "peers:\n  - h:1\n", "peers[0]", 2, `want a mapping, got the string "h:1"`},
	{"hub named like peer", "peers: [{name: s, addr: \"h:1\"}]\nhubs: [{name: s, addr: \"h:2\"}]\n", "hubs[0].name", 2, `"s" is already the name of peers[0] (line 1)`},
	{"hub without addr", "hubs:\n  - name: site\n", "hubs[0].addr", 2, "missing"},

	// peer users
	{"peer user without username", "peer_users:\n  - password: x\n", "peer_users[0].username", 2, "missing"},
	{"peer user without password", "peer_users:\n  - username: b\n", "peer_users[0].password", 2, "missing"},
	{"peer user with space", "peer_users:\n  - {username: b c, password: x}\n", "peer_users[0].username", 2, "has spaces"},
	{"duplicate peer users", "peer_users:\n  - {username: b, password: x}\n  - {username: b, password: y}\n", "peer_users[1].username", 3, `"b" is already listed at peer_users[0] (line 2)`},

	// keys and documents
	{"unknown top-level key", "node: a\nnodes: b\n", "nodes", 2, `unknown key (did you mean "node"?)`},
	{"unknown key far from all", "zzzzzz: 1\n", "zzzzzz", 1, "unknown key (known keys: board, data, hardware, hubs, jobs, kv, limits, listen, log_level, node, peer_users, peers, sync)"},
	{"unknown nested key", "data:\n  directory: x\n", "data.directory", 2, "unknown key"},
	{"duplicate key", "node: a\nboard: sim\nnode: b\n", "node", 3, "duplicate key (first at line 1)"},
	{"non-string key", "[a]: 1\n", "", 1, "a key must be a string, got a list"},
	{"syntax error", "node: a\nboard: sim\nlog_level info\ndata: {}\n", "", 3, "YAML: could not find expected ':'"},
	{"unclosed flow", "node: a\nlisten: {mqtt: [\n", "", 2, "YAML: did not find expected node content"},
	{"tab indent", "node: a\n\tboard: sim\n", "", 2, "YAML: found a tab character that violates indentation"},
	{"control character", "node: a\x01\n", "", 0, "YAML: control characters are not allowed"},
	{"unknown anchor", "node: *a\n", "", 0, "YAML: unknown anchor 'a' referenced"},
	{"two documents", "node: a\n---\nnode: b\n", "", 2, "a second YAML document"},
	{"not a mapping", "- node: a\n", "", 1, "want a mapping, got a list"},
	{"scalar document", "hello\n", "", 1, `want a mapping, got the string "hello"`},
	{"merge of a list", "peers:\n  - <<: [a]\n    name: b\n    addr: h:1\n", "peers[0].<<", 2, "want a mapping (or a list of them) to merge"},
	{"merge cycle", "listen: &l\n  <<: *l\n", "listen", 2, "nested too deeply"},
	{"alias cycle", "peers: &p [*p]\n", "peers[0]", 1, "want a mapping, got a list"},
}

// tlsFiles creates the files the "$CERT", "$KEY" and "$DIR" placeholders
// stand for and returns a replacer.
func tlsFiles(t testing.TB) *strings.Replacer {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for _, f := range []string{cert, key} {
		if err := os.WriteFile(f, []byte("not read"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return strings.NewReplacer("$CERT", cert, "$KEY", key, "$DIR", dir)
}

func TestParseProblems(t *testing.T) {
	r := tlsFiles(t)
	for _, tt := range parseCases {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(r.Replace(tt.yaml)), "x.yaml")
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", tt.yaml, c)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("Parse(%q) error %T %v, want *ConfigError", tt.yaml, err, err)
			}
			if ce.Source != "x.yaml" {
				t.Errorf("Source = %q, want x.yaml", ce.Source)
			}
			if len(ce.Problems) != 1 {
				t.Fatalf("Parse(%q): %d problems, want 1:\n%v", tt.yaml, len(ce.Problems), err)
			}
			p := ce.Problems[0]
			if p.Path != tt.wantPath || p.Line != tt.wantLine || !strings.Contains(p.Msg, tt.wantMsg) {
				t.Errorf("Parse(%q) problem\n  %+v\nwant path %q, line %d, message containing %q", tt.yaml, p, tt.wantPath, tt.wantLine, tt.wantMsg)
			}
			// The message as printed names the file, line and path.
			want := "x.yaml"
			if tt.wantLine > 0 {
				want += ":" + strconv.Itoa(tt.wantLine)
			}
			want += ": "
			if tt.wantPath != "" {
				want += tt.wantPath + ": "
			}
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("Error() = %q, want prefix %q", err.Error(), want)
			}
		})
	}
}

// validCases parse without problems and meet check.
var validCases = []struct {
	name  string
	yaml  string
	check func(t *testing.T, c *Config)
}{
	{"empty file", "", func(t *testing.T, c *Config) {
		if c.Node != "" || c.Data.Dir != "" || c.Board != "sim" {
			t.Errorf("node %q, dir %q, board %q; want defaults", c.Node, c.Data.Dir, c.Board)
		}
	}},
	{"comments only", "# nothing\n", nil},
	{"null document", "~\n", nil},
	{"empty node is absent", "node: \"\"\n", nil},
	{"node fills the data dir", "node: n1\n", func(t *testing.T, c *Config) {
		if c.Data.Dir != "./data/n1" {
			t.Errorf("data dir %q, want ./data/n1", c.Data.Dir)
		}
	}},
	{"node of 64 bytes", "node: " + strings.Repeat("n", 64) + "\n", nil},
	{"unicode node", "node: küche-1\n", nil},
	{"empty listen keeps defaults", "listen:\n", func(t *testing.T, c *Config) {
		if len(c.Listen.MQTT) != 1 || c.Listen.MQTT[0] != DefaultMQTTAddr {
			t.Errorf("mqtt %q, want the default", c.Listen.MQTT)
		}
	}},
	{"explicit empty mqtt", "listen:\n  mqtt: []\n  client: \"\"\n", func(t *testing.T, c *Config) {
		if len(c.Listen.MQTT) != 0 || c.Listen.Client != "" {
			t.Errorf("mqtt %q, client %q, want none", c.Listen.MQTT, c.Listen.Client)
		}
	}},
	{"port zero listeners", "listen:\n  mqtt: [\"127.0.0.1:0\", \"127.0.0.1:0\"]\n", nil},
	{"ipv6 and host names", "listen:\n  mqtt: [\"[::1]:1883\", \"localhost:1884\", \":1885\"]\n", nil},
	{"tls listener", "listen:\n  tls: [{addr: \":8883\", cert: $CERT, key: $KEY}]\n", nil},
	{"client tls listener", "listen:\n  client_tls: [{addr: \"127.0.0.1:27587\", cert: $CERT, key: $KEY}]\n", func(t *testing.T, c *Config) {
		if len(c.Listen.ClientTLS) != 1 || c.Listen.ClientTLS[0].Addr != "127.0.0.1:27587" ||
			!strings.HasSuffix(c.Listen.ClientTLS[0].Cert, "cert.pem") || !strings.HasSuffix(c.Listen.ClientTLS[0].Key, "key.pem") {
			t.Errorf("client_tls %+v", c.Listen.ClientTLS)
		}
		if c.Listen.Client != DefaultClientAddr {
			t.Errorf("client %q: client_tls must leave the plain listener as it is", c.Listen.Client)
		}
	}},
	{"client tls on port zero twice", "listen:\n  client: 127.0.0.1:0\n  client_tls: [{addr: \"127.0.0.1:0\", cert: $CERT, key: $KEY}, {addr: \"127.0.0.1:0\", cert: $CERT, key: $KEY}]\n", nil},
	{"sync none needs no interval", "data:\n  sync: none\n  sync_interval: 0s\n", nil},
	{"sync always", "data: {sync: always}\n", func(t *testing.T, c *Config) {
		if c.Data.Sync != SyncAlways {
			t.Errorf("sync %q", c.Data.Sync)
		}
	}},
	{"disjoint prefixes", "kv: {prefix: kv}\nsync: {prefix: kvx/sync}\n", nil},
	{"moat prefix", "sync:\n  prefix: moat/kv\n", nil},
	{"durations", "data: {sync_interval: 1m30s}\nsync: {heartbeat: 250ms}\n", func(t *testing.T, c *Config) {
		if c.Data.SyncInterval.Std().Seconds() != 90 || c.Sync.Heartbeat.Std().Milliseconds() != 250 {
			t.Errorf("sync interval %v, heartbeat %v", c.Data.SyncInterval, c.Sync.Heartbeat)
		}
	}},
	{"sizes", "limits: {receiving: 128MiB, retained: 1000000, client_message: 512 KiB, mqtt_packet: 2MB}\n", func(t *testing.T, c *Config) {
		l := c.Limits
		if l.Receiving != 128<<20 || l.Retained != 1e6 || l.ClientMessage != 512<<10 || l.MQTTPacket != 2e6 || l.ReceivingWait.Std() != DefaultReceivingWait {
			t.Errorf("limits %+v", l)
		}
	}},
	{"hex integer", "kv: {max_payload_bytes: 0x1000}\n", func(t *testing.T, c *Config) {
		if c.KV.MaxPayloadBytes != 4096 {
			t.Errorf("max payload %d", c.KV.MaxPayloadBytes)
		}
	}},
	{"peer with tls", "peers:\n  - name: b\n    addr: b.local:8883\n    username: a\n    password: p\n    tls: {ca: $CERT, cert: $CERT, key: $KEY, server_name: b, insecure_skip_verify: true}\n", func(t *testing.T, c *Config) {
		if tls := c.Peers[0].TLS; tls == nil || !tls.InsecureSkipVerify || tls.ServerName != "b" {
			t.Errorf("tls %+v", tls)
		}
	}},
	{"null tls", "peers:\n  - {name: b, addr: \"h:1\", tls: ~}\n", func(t *testing.T, c *Config) {
		if c.Peers[0].TLS != nil {
			t.Errorf("tls %+v, want nil", c.Peers[0].TLS)
		}
	}},
	{"hub anonymous", "hubs:\n  - {name: site, addr: \"127.0.0.1:1883\", username: \"\", password: \"\"}\n", nil},
	{"merge keys", "peers:\n  - &p {name: b, addr: \"h:1\", username: u, password: pw}\n  - <<: *p\n    name: c\n    addr: h:2\n", func(t *testing.T, c *Config) {
		if len(c.Peers) != 2 || c.Peers[1].Name != "c" || c.Peers[1].Addr != "h:2" || c.Peers[1].Username != "u" || c.Peers[1].Password != "pw" {
			t.Errorf("peers %+v", c.Peers)
		}
	}},
	{"merge list, earlier wins", "peers:\n  - &a {name: a, addr: \"h:1\", username: ua}\n  - &b {name: b, addr: \"h:2\", username: ub, password: pb}\n  - <<: [*a, *b]\n    name: c\n    addr: h:3\n", func(t *testing.T, c *Config) {
		if p := c.Peers[2]; p.Username != "ua" || p.Password != "pb" {
			t.Errorf("peer %+v, want username ua, password pb", p)
		}
	}},
	{"yes is a bool", "peers:\n  - {name: b, addr: \"h:1\", tls: {insecure_skip_verify: yes}}\n", nil},
	{"numeric strings", "node: 123\npeer_users: [{username: 7, password: 0.5}]\n", func(t *testing.T, c *Config) {
		if c.Node != "123" || c.PeerUsers[0].Password != "0.5" {
			t.Errorf("node %q, password %q", c.Node, c.PeerUsers[0].Password)
		}
	}},
}

func TestParseValid(t *testing.T) {
	r := tlsFiles(t)
	for _, tt := range validCases {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(r.Replace(tt.yaml)), "ok.yaml")
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.yaml, err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// TestParseAllProblemsAtOnce checks that one file with many problems
// reports every one, in line order, one per line of Error().
func TestParseAllProblemsAtOnce(t *testing.T) {
	const src = `node: board/1
board: pi9
log_level: loud
data:
  sync: sometimes
  sync_interval: 100
listen:
  mqtt: [localhost, "127.0.0.1:1883", "127.0.0.1:1883"]
  tls: [{addr: ":8883"}]
kv: {prefix: "kv/#", max_payload_bytes: lots}
sync: {prefix: edgekv/sync, chain_length: 0, heartbeat: 0s}
peers:
  - name: board2
    addr: localhost
  - name: board2
    adress: 127.0.0.1:1
    adr: 127.0.0.1:2
hubs: [{name: site}]
peer_users: [{username: board2}]
colour: blue
`
	want := []string{
		`bad.yaml:1: node: "board/1" contains '/'`,
		`bad.yaml:2: board: unknown board "pi9"`,
		`bad.yaml:3: log_level: "loud" is not a log level`,
		`bad.yaml:5: data.sync: "sometimes" is not a sync policy`,
		`bad.yaml:6: data.sync_interval: "100" has no unit`,
		`bad.yaml:8: listen.mqtt[0]: "localhost" is not host:port`,
		`bad.yaml:8: listen.mqtt[2]: "127.0.0.1:1883" collides with listen.mqtt[1] (line 8)`,
		`bad.yaml:9: listen.tls[0].cert: missing`,
		`bad.yaml:9: listen.tls[0].key: missing`,
		`bad.yaml:10: kv.max_payload_bytes: want an integer, got the string "lots"`,
		`bad.yaml:10: kv.prefix: "kv/#" contains an MQTT wildcard`,
		`bad.yaml:11: sync.chain_length: 0 is out of range`,
		`bad.yaml:11: sync.heartbeat: 0s is not positive`,
		`bad.yaml:14: peers[0].addr: "localhost" is not host:port`,
		`bad.yaml:15: peers[1].name: "board2" is already the name of peers[0] (line 13)`,
		`bad.yaml:15: peers[1].addr: missing`,
		`bad.yaml:16: peers[1].adress: unknown key (known keys: addr, name, password, tls, username)`,
		`bad.yaml:17: peers[1].adr: unknown key (did you mean "addr"?)`,
		`bad.yaml:18: hubs[0].addr: missing`,
		`bad.yaml:19: peer_users[0].password: missing`,
		`bad.yaml:20: colour: unknown key`,
	}
	_, err := Parse([]byte(src), "bad.yaml")
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Parse: %v, want a *ConfigError", err)
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) || len(ce.Problems) != len(want) {
		t.Fatalf("got %d lines, %d problems, want %d:\n%s", len(got), len(ce.Problems), len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("line %d:\n got %s\nwant %s…", i, got[i], want[i])
		}
	}
}

// TestValidateWithPaths: the caller's path parser sees every bound path,
// and its error is reported at the binding's line.
func TestValidateWithPaths(t *testing.T) {
	c, err := Parse([]byte("node: n\nhardware:\n  sensors:\n    - {device: sim-1, path: good}\n  outputs:\n    - pin: GPIO27\n      path: \"bad path\"\n"), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	err = c.ValidateWith(func(p string) error {
		seen = append(seen, p)
		if strings.Contains(p, " ") {
			return errors.New("spaces are not allowed")
		}
		return nil
	})
	if got := strings.Join(seen, ","); got != "good,bad path,bad path.state" {
		t.Errorf("paths checked: %s", got)
	}
	if err == nil || !strings.Contains(err.Error(), `x.yaml:7: hardware.outputs[0].path: "bad path" is not a tree path: spaces are not allowed`) {
		t.Errorf("ValidateWith: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate without a path parser: %v", err)
	}
}
