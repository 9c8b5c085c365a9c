package boards

import (
	"time"

	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Validation limits.
const (
	// MaxNameBytes is the longest node or link name, in bytes.
	MaxNameBytes = 64
	// MaxChainLength is the largest Sync.ChainLength.
	MaxChainLength = 64
	// MaxPayloadLimitBytes is the largest KV.MaxPayloadBytes: MQTT's
	// largest packet.
	MaxPayloadLimitBytes = 268_435_455
)

// Validate checks the whole config, the node name included (Parse lets it
// be absent until SetNode), and returns a *ConfigError listing every
// problem with its YAML path and, for a parsed config, its line. Files
// named in TLS settings must exist and be readable; they are opened and
// closed, not parsed.
func (c *Config) Validate() error {
	return c.ValidateWith(nil)
}

// ValidateWith is Validate that also checks each tree path the config
// binds hardware to with checkPath (boards does not parse tree paths:
// the caller passes the tree's parser). nil skips that check.
func (c *Config) ValidateWith(checkPath func(string) error) error {
	if ps := c.check(true, checkPath); len(ps) > 0 {
		return &ConfigError{Source: c.source, Problems: sortProblems(ps)}
	}
	return nil
}

// ValidatePaths checks only the tree paths that hardware is bound to, with
// checkPath: for a config that has no node name yet (Parse has checked the
// rest).
func (c *Config) ValidatePaths(checkPath func(string) error) error {
	v := validator{c: c}
	v.hardware(checkPath)
	var ps []Problem
	for _, p := range v.problems {
		if strings.HasSuffix(p.Path, ".path") || strings.HasSuffix(p.Path, ".state") {
			ps = append(ps, p)
		}
	}
	if len(ps) > 0 {
		return &ConfigError{Source: c.source, Problems: sortProblems(ps)}
	}
	return nil
}

// check returns every problem with c; with requireNode false an empty node
// name (and so an empty data directory) is allowed.
func (c *Config) check(requireNode bool, checkPath func(string) error) []Problem {
	v := validator{c: c}
	if c.Node != "" || requireNode {
		if msg := nameProblem(c.Node); msg != "" {
			v.add("node", "%s", msg)
		}
	}
	if _, ok := Lookup(c.Board); !ok {
		v.add("board", "unknown board %q (known: %s)", c.Board, strings.Join(ProfileNames(), ", "))
	}
	if _, ok := logLevels[c.LogLevel]; !ok {
		v.add("log_level", "%q is not a log level (want debug, info, warn or error)", c.LogLevel)
	}
	v.data(requireNode)
	v.listen()
	v.topics()
	if c.Sync.ChainLength < 1 || c.Sync.ChainLength > MaxChainLength {
		v.add("sync.chain_length", "%d is out of range (want 1 to %d)", c.Sync.ChainLength, MaxChainLength)
	}
	if c.Sync.Heartbeat <= 0 {
		v.add("sync.heartbeat", "%s is not positive", c.Sync.Heartbeat)
	}
	if m := c.Sync.MoaT; m.Cycle < Duration(time.Second) || m.Gap < 0 || m.Cycle < 3*m.Gap || m.Cycle > Duration(24*time.Hour) {
		v.add("sync.moat", "cycle %s and gap %s: want 1s ≤ cycle ≤ 24h and 0 ≤ 3 × gap ≤ cycle (as MoaT-KV's ping group)", m.Cycle, m.Gap)
	}
	if c.Sync.MoaT.Only && c.Sync.MoaT.Disabled {
		v.add("sync.moat.only", "only MoaT-KV's recovery, but sync.moat.disabled turns it off: nothing would catch up")
	}
	v.links()
	v.peerUsers()
	v.limits()
	v.hardware(checkPath)
	v.jobs(checkPath)
	return v.problems
}

type validator struct {
	c        *Config
	problems []Problem
}

func (v *validator) add(path, format string, args ...any) {
	v.problems = append(v.problems, Problem{Path: path, Line: v.c.line(path), Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) limits() {
	l := v.c.Limits
	count := func(path string, n int) {
		if n < 1 || n > 65536 {
			v.add(path, "%d is out of range (want 1 to 65536)", n)
		}
	}
	count("limits.mqtt_connections", l.MQTTConnections)
	count("limits.client_connections", l.ClientConnections)
	size := func(path string, s, lo, hi Size) bool {
		if s < lo || s > hi {
			v.add(path, "%s is out of range (want %s to %s)", s, lo, hi)
			return false
		}
		return true
	}
	okMsg := size("limits.client_message", l.ClientMessage, 64<<10, 256<<20)
	okPkt := size("limits.mqtt_packet", l.MQTTPacket, 64<<10, 256<<20)
	if kv := v.c.KV.MaxPayloadBytes; okPkt && kv <= MaxPayloadLimitBytes && l.MQTTPacket < Size(kv) {
		v.add("limits.mqtt_packet", "%s is less than kv.max_payload_bytes (%d): raise it, or such writes could not arrive", l.MQTTPacket, kv)
	}
	if size("limits.receiving", l.Receiving, 1<<20, 1<<40) && okMsg && okPkt {
		if biggest := max(l.ClientMessage, l.MQTTPacket); l.Receiving < biggest {
			v.add("limits.receiving", "%s is less than the largest message allowed (%s): one could never be received", l.Receiving, biggest)
		}
	}
	if l.ReceivingWait < 0 {
		v.add("limits.receiving_wait", "%s is negative", l.ReceivingWait)
	}
	size("limits.retained", l.Retained, 0, 1<<40)
	if size("limits.mqtt_queue", l.MQTTQueue, 64<<10, 1<<40) && size("limits.sending", l.Sending, 1<<20, 1<<40) && l.Sending < l.MQTTQueue {
		v.add("limits.sending", "%s is less than limits.mqtt_queue (%s)", l.Sending, l.MQTTQueue)
	}
}

func (v *validator) data(requireNode bool) {
	d := v.c.Data
	if d.Dir == "" && (requireNode || v.c.Node != "") {
		v.add("data.dir", "is empty")
	}
	if !slices.Contains(syncPolicies, d.Sync) {
		v.add("data.sync", "%q is not a sync policy (want always, interval or none)", d.Sync)
	}
	if d.Sync == SyncInterval && d.SyncInterval <= 0 {
		v.add("data.sync_interval", "%s is not positive (sync: interval needs a period)", d.SyncInterval)
	}
	if d.Dumps != "" && d.Dir != "" && filepath.Clean(d.Dumps) == filepath.Clean(d.Dir) {
		v.add("data.dumps", "%q is the data directory: save requests must not write among the store's files", d.Dumps)
	}
}

// listen checks each listening address and that no two collide.
func (v *validator) listen() {
	type use struct {
		path, host, port string
	}
	var uses []use
	check := func(path, addr string) {
		host, port, msg := splitAddr(addr, true)
		if msg != "" {
			v.add(path, "%s", msg)
			return
		}
		if port == "0" {
			return // a free port each: no collision
		}
		for _, u := range uses {
			if u.port == port && (u.host == host || wildcardHost(u.host) || wildcardHost(host)) {
				v.add(path, "%q collides with %s (line %d)", addr, u.path, v.c.line(u.path))
				return
			}
		}
		uses = append(uses, use{path, host, port})
	}
	l := v.c.Listen
	for i, a := range l.MQTT {
		check(fmt.Sprintf("listen.mqtt[%d]", i), a)
	}
	for i, a := range l.WebSocket {
		check(fmt.Sprintf("listen.websocket[%d]", i), a)
	}
	tlsListener := func(p string, t TLSListener) {
		if t.Addr == "" {
			v.add(p+".addr", "missing (want host:port)")
		} else {
			check(p+".addr", t.Addr)
		}
		v.file(p+".cert", t.Cert, true)
		v.file(p+".key", t.Key, true)
	}
	for i, t := range l.TLS {
		tlsListener(fmt.Sprintf("listen.tls[%d]", i), t)
	}
	if l.Client != "" {
		check("listen.client", l.Client)
	}
	for i, t := range l.ClientTLS {
		tlsListener(fmt.Sprintf("listen.client_tls[%d]", i), t)
	}
}

// topics checks the KV and sync topic prefixes and that they are disjoint.
func (v *validator) topics() {
	c := v.c
	kvOK, syncOK := true, true
	if msg := topicPrefixProblem(c.KV.Prefix); msg != "" {
		v.add("kv.prefix", "%s", msg)
		kvOK = false
	}
	if msg := topicPrefixProblem(c.Sync.Prefix); msg != "" {
		v.add("sync.prefix", "%s", msg)
		syncOK = false
	}
	if kvOK && syncOK && topicsOverlap(c.KV.Prefix, c.Sync.Prefix) {
		v.add("sync.prefix", "%q overlaps kv.prefix %q (line %d): KV and sync topics must not share a prefix",
			c.Sync.Prefix, c.KV.Prefix, c.line("kv.prefix"))
	}
	if n := c.KV.MaxPayloadBytes; n < 1 || n > MaxPayloadLimitBytes {
		v.add("kv.max_payload_bytes", "%d is out of range (want 1 to %d)", n, MaxPayloadLimitBytes)
	}
}

// links checks peers and hubs: names present, valid and unique (peers and
// hubs together, and not the node's own), addresses dialable and unique,
// credentials and TLS.
func (v *validator) links() {
	names := map[string]string{} // name → path of its first use
	addrs := map[string]string{} // addr → path of its first use
	check := func(kind string, i int, l Link) {
		p := fmt.Sprintf("%s[%d]", kind, i)
		switch msg := nameProblem(l.Name); {
		case l.Name == "":
			v.add(p+".name", "missing")
		case msg != "":
			v.add(p+".name", "%s", msg)
		case l.Name == v.c.Node:
			v.add(p+".name", "%q is this node's own name", l.Name)
		case names[l.Name] != "":
			v.add(p+".name", "%q is already the name of %s (line %d)", l.Name, names[l.Name], v.c.line(names[l.Name]))
		default:
			names[l.Name] = p
		}
		if l.Addr == "" {
			v.add(p+".addr", "missing (want host:port)")
		} else if _, _, msg := splitAddr(l.Addr, false); msg != "" {
			v.add(p+".addr", "%s", msg)
		} else if first := addrs[l.Addr]; first != "" {
			v.add(p+".addr", "%q is already the address of %s (line %d)", l.Addr, first, v.c.line(first))
		} else {
			addrs[l.Addr] = p
		}
		if l.Password != "" && l.Username == "" {
			v.add(p+".password", "set without a username")
		}
		if l.Username != "" && !printable(l.Username) {
			v.add(p+".username", "%q has unprintable characters", l.Username)
		}
		if t := l.TLS; t != nil {
			v.file(p+".tls.ca", t.CA, false)
			v.file(p+".tls.cert", t.Cert, false)
			v.file(p+".tls.key", t.Key, false)
			if (t.Cert == "") != (t.Key == "") {
				v.add(p+".tls", "a client certificate needs both cert and key")
			}
		}
	}
	for i, l := range v.c.Peers {
		check("peers", i, l)
	}
	for i, l := range v.c.Hubs {
		check("hubs", i, l)
	}
}

func (v *validator) peerUsers() {
	seen := map[string]string{}
	for i, u := range v.c.PeerUsers {
		p := fmt.Sprintf("peer_users[%d]", i)
		switch {
		case u.Username == "":
			v.add(p+".username", "missing")
		case !printable(u.Username) || strings.ContainsRune(u.Username, ' '):
			v.add(p+".username", "%q has spaces or unprintable characters", u.Username)
		case seen[u.Username] != "":
			v.add(p+".username", "%q is already listed at %s (line %d)", u.Username, seen[u.Username], v.c.line(seen[u.Username]))
		default:
			seen[u.Username] = p
		}
		if u.Password == "" {
			v.add(p+".password", "missing")
		}
	}
}

// file reports a file setting that is missing (when required), names no
// regular file, or names one this process cannot open for reading. The
// file is opened and closed, not read: whether it holds what it should is
// found when it is loaded.
func (v *validator) file(path, name string, required bool) {
	if name == "" {
		if required {
			v.add(path, "missing (want a PEM file)")
		}
		return
	}
	fi, err := os.Stat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		v.add(path, "file %q does not exist", name)
		return
	case err != nil:
		v.add(path, "file %q: %v", name, errors.Unwrap(err))
		return
	case fi.IsDir():
		v.add(path, "%q is a directory, not a file", name)
		return
	case !fi.Mode().IsRegular():
		// Opening a FIFO would block; a device is no PEM file.
		v.add(path, "%q is not a regular file", name)
		return
	}
	f, err := os.Open(name)
	if err != nil {
		v.add(path, "file %q cannot be read: %v", name, errors.Unwrap(err))
		return
	}
	f.Close()
}

// nameProblem says what is wrong with a node or link name, or "".
func nameProblem(name string) string {
	switch {
	case name == "":
		return "missing: every node needs a name (set node: here or give -n NAME)"
	case len(name) > MaxNameBytes:
		return fmt.Sprintf("%q is %d bytes, longer than %d", truncate(name), len(name), MaxNameBytes)
	case !utf8.ValidString(name):
		return fmt.Sprintf("%q is not valid UTF-8", name)
	}
	for _, r := range name {
		switch {
		case r == ' ' || unicode.IsSpace(r):
			return fmt.Sprintf("%q contains a space", name)
		case !unicode.IsPrint(r):
			return fmt.Sprintf("%q contains the unprintable character %U", name, r)
		case strings.ContainsRune("/+#$", r):
			return fmt.Sprintf("%q contains %q (names may not contain / + # $)", name, r)
		}
	}
	return ""
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// splitAddr splits "host:port" and says what is wrong with it, if
// anything. A listening address may have an empty host (every interface)
// and port 0 (any free port); an address to dial needs both.
func splitAddr(addr string, listen bool) (host, port, problem string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		why := err.Error()
		if errors.As(err, &ae) {
			why = ae.Err
		}
		return "", "", fmt.Sprintf("%q is not host:port: %s", addr, why)
	}
	n, err := strconv.Atoi(port)
	switch {
	case port == "":
		return "", "", fmt.Sprintf("%q has no port", addr)
	case err != nil || strings.TrimLeft(port, "0123456789") != "":
		return "", "", fmt.Sprintf("%q: port %q is not a number", addr, port)
	case n > 65535 || (n == 0 && !listen):
		lo := 1
		if listen {
			lo = 0
		}
		return "", "", fmt.Sprintf("%q: port %s is out of range (want %d to 65535)", addr, port, lo)
	}
	switch {
	case host == "" && !listen:
		return "", "", fmt.Sprintf("%q has no host", addr)
	case host == "":
	case net.ParseIP(host) != nil:
	case !validHostname(host):
		return "", "", fmt.Sprintf("%q: %q is not an IP address or host name", addr, host)
	}
	return host, strconv.Itoa(n), ""
}

// validHostname reports whether s is a DNS host name: dot-separated labels
// of letters, digits, '-' and '_', not starting or ending with '-'.
func validHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// wildcardHost reports whether a listening host means every interface.
func wildcardHost(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::" || host == "[::]"
}

// topicPrefixProblem says what is wrong with an MQTT topic prefix, or "".
func topicPrefixProblem(p string) string {
	switch {
	case p == "":
		return "is empty"
	case len(p) > 1024:
		return fmt.Sprintf("is %d bytes, longer than 1024", len(p))
	case !utf8.ValidString(p):
		return fmt.Sprintf("%q is not valid UTF-8", p)
	case strings.ContainsAny(p, "+#"):
		return fmt.Sprintf("%q contains an MQTT wildcard (+ or #)", p)
	case strings.HasPrefix(p, "$"):
		return fmt.Sprintf("%q starts with $, which brokers keep for $SYS and the like", p)
	case strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "//"):
		return fmt.Sprintf("%q has an empty topic level (a leading, trailing or double /)", p)
	}
	for _, r := range p {
		if r == 0 || unicode.IsControl(r) {
			return fmt.Sprintf("%q contains the control character %U", p, r)
		}
	}
	return ""
}

// topicsOverlap reports whether one topic prefix is the other or a
// level-wise prefix of it ("kv" and "kv/sync" overlap, "kv" and "kvx" do
// not).
func topicsOverlap(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/")
}
