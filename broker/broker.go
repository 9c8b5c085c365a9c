package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgekv/edgekv/internal/budget"
	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// Tree applies writes from MQTT clients. The node implements it.
type Tree interface {
	// Write applies an MQTT client's write: value is msgpack, nil = delete.
	// It returns after the write is applied (and durable, with sync
	// "always"). Errors wrap tree.ErrInvalidPath, tree.ErrInvalidValue,
	// tree.ErrNotFound (delete of nothing), tree.ErrConflict, or others.
	Write(ctx context.Context, p tree.Path, value []byte) error
	// Entries returns a walk of the entries at p and below, at most depth
	// levels below p (negative: all), from which the broker serves the
	// retained messages of KV topics (kvretained.go).
	Entries(p tree.Path, depth int) EntryCursor
}

// NoWaitWriter is a Tree that can also queue a write without waiting for
// it to be applied (the node's engine). A client publish at QoS 0, which
// nobody acknowledges, is written that way: the client's next packet is
// read at once, its writes still applied in order (and before its later
// QoS 1/2 writes), and a client that publishes faster than the node
// applies is slowed by the full queue, not buffered. Refusals the tree
// can make at once are returned; later ones (a delete of nothing) are not.
type NoWaitWriter interface {
	WriteNoWait(ctx context.Context, p tree.Path, value []byte) error
}

// EntryCursor walks entries a chunk at a time.
type EntryCursor interface {
	// Next calls fn with the next entries in canonical order (parents
	// first); an entry without a value has a nil Value. fn runs where
	// PublishEntry is called for changes, never at the same time: every
	// change of an entry fn is given was published before fn runs, and a
	// later one is published after it returns. The entries' slices may be
	// kept (never modified) but the slice of entries only during fn, which
	// must not block. Next reports whether entries are left.
	Next(ctx context.Context, fn func([]Entry)) (more bool, err error)
}

// Entry is one entry of the tree as an EntryCursor gives it.
type Entry struct {
	Path       tree.Path
	Value      []byte // msgpack; nil: none
	Node       string // the node that wrote this version
	Tick, Tock uint64
}

// SyncHandler receives the sync traffic of peers that dialled this node's
// broker. The node implements it. Its methods run on mochi's client
// goroutines and must not block for long.
type SyncHandler interface {
	// PeerUp reports that a peer that dialled us is ready: it has
	// subscribed to its sync topic (or resumed a session holding that
	// subscription), so SendToPeer reaches it. It repeats without a
	// PeerDown in between when a new connection of the peer replaces a
	// live one: the link starts afresh.
	PeerUp(peer string)
	// PeerDown reports that the peer's ready connection is gone (closed,
	// or unsubscribed from its sync topic).
	PeerDown(peer string)
	// Receive hands over one sync message from peer. data belongs to the
	// callee.
	Receive(peer string, kind wire.Kind, data []byte)
}

// TLSListener is an MQTT-over-TLS listener: an address and the PEM files of
// its certificate chain and private key.
type TLSListener struct{ Addr, Cert, Key string }

// Defaults for Config fields left zero.
const (
	DefaultKVPrefix         = "kv"
	DefaultSyncPrefix       = "edgekv/sync"
	DefaultMaxPayloadBytes  = 64 << 10
	DefaultMaxPacketBytes   = 4 << 20
	DefaultMaxRetainedBytes = 16 << 20
	DefaultMaxQueueBytes    = 16 << 20
	DefaultMaxSendingBytes  = 128 << 20
)

// Config configures a Broker. Zero fields take the defaults above.
type Config struct {
	// Node is this node's name; it appears in sync topics.
	Node string
	// MQTT lists plain TCP listeners, host:port ("127.0.0.1:0" picks a
	// free port; see Addrs).
	MQTT []string
	// WebSocket lists MQTT-over-WebSocket listeners, host:port (any path).
	WebSocket []string
	// TLS lists MQTT-over-TLS listeners.
	TLS []TLSListener
	// KVPrefix is the topic prefix of the tree's entries (default "kv").
	KVPrefix string
	// SyncPrefix is the topic prefix of sync traffic (default
	// "edgekv/sync"). It must not overlap KVPrefix.
	SyncPrefix string
	// MaxPayloadBytes bounds the payload of a client write to a KV topic;
	// larger writes are refused (default 65536).
	MaxPayloadBytes int
	// MaxPacketBytes bounds any MQTT packet a client sends (default 4 MiB);
	// a larger packet ends the connection. It must be at least
	// MaxPayloadBytes.
	MaxPacketBytes int
	// PeerUsers maps the username of each peer allowed to dial us to its
	// password. The username is the peer's node name.
	PeerUsers map[string]string
	// AllowAnonymous accepts clients without credentials, but only from
	// loopback addresses.
	AllowAnonymous bool
	// Logger receives the broker's and mochi's logs (default: discarded).
	Logger *slog.Logger
	// MaxConns bounds the MQTT connections at once (0: no bound): clients
	// beyond it get a CONNACK "server busy" (v5) or "server unavailable"
	// (v3.1.1), and beyond a few more the connection is closed at once.
	MaxConns int
	// Budget, if set, is the node's budget of unfinished packets, shared
	// with its other listeners: a packet over budget.Free bytes is read
	// only once its length fits (the connection waits, then is closed),
	// and must arrive at budget.MinRate.
	Budget *budget.Budget
	// MaxRetainedBytes bounds the retained messages (topic and payload
	// bytes) on topics outside KVPrefix and SyncPrefix (default 16 MiB;
	// < 0: no bound). A retained publish that does not fit is refused
	// with "quota exceeded" (MQTT v5) or dropped, and logged.
	MaxRetainedBytes int64
	// MaxQueueBytes bounds what waits to be sent to one MQTT client
	// (payload, topic and a fixed overhead per message; default 16 MiB): a
	// client whose queue would go over it is disconnected. MaxSendingBytes
	// bounds all clients' queues together (default 128 MiB). See
	// fanout.go.
	MaxQueueBytes   int64
	MaxSendingBytes int64
	// ClientGone, if set, is called (on mochi's goroutine; it must not
	// block) whenever a client's connection has ended.
	ClientGone func()
}

// DefaultConfig returns a Config with the default prefixes and limits and
// no node name or listeners.
func DefaultConfig() Config {
	return Config{
		KVPrefix:        DefaultKVPrefix,
		SyncPrefix:      DefaultSyncPrefix,
		MaxPayloadBytes: DefaultMaxPayloadBytes,
		MaxPacketBytes:  DefaultMaxPacketBytes,
	}
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.KVPrefix == "" {
		c.KVPrefix = DefaultKVPrefix
	}
	if c.SyncPrefix == "" {
		c.SyncPrefix = DefaultSyncPrefix
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if c.MaxPacketBytes == 0 {
		c.MaxPacketBytes = max(DefaultMaxPacketBytes, c.MaxPayloadBytes)
	}
	if c.MaxRetainedBytes == 0 {
		c.MaxRetainedBytes = DefaultMaxRetainedBytes
	}
	if c.MaxQueueBytes == 0 {
		c.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if c.MaxSendingBytes == 0 {
		c.MaxSendingBytes = DefaultMaxSendingBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem of c (after defaults) at once.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field string, err error) {
		errs = append(errs, fmt.Errorf("broker: %s: %w", field, err))
	}
	if err := checkLevelName(c.Node); err != nil {
		bad("Node "+strconv.Quote(c.Node), err)
	} else if len(c.Node) > wire.MaxNodeName {
		bad("Node", fmt.Errorf("longer than %d bytes", wire.MaxNodeName))
	}
	kvOK, syncOK := true, true
	if err := checkTopicPrefix(c.KVPrefix); err != nil {
		bad("KVPrefix "+strconv.Quote(c.KVPrefix), err)
		kvOK = false
	}
	if err := checkTopicPrefix(c.SyncPrefix); err != nil {
		bad("SyncPrefix "+strconv.Quote(c.SyncPrefix), err)
		syncOK = false
	}
	if kvOK && syncOK && (underPrefix(c.KVPrefix, c.SyncPrefix) || underPrefix(c.SyncPrefix, c.KVPrefix)) {
		bad("SyncPrefix", fmt.Errorf("%q overlaps KVPrefix %q", c.SyncPrefix, c.KVPrefix))
	}
	if c.MaxConns < 0 {
		bad("MaxConns", fmt.Errorf("negative (%d)", c.MaxConns))
	}
	if c.MaxPayloadBytes < 0 {
		bad("MaxPayloadBytes", fmt.Errorf("negative (%d)", c.MaxPayloadBytes))
	}
	if c.MaxPacketBytes < 0 || c.MaxPacketBytes > 1<<28 {
		bad("MaxPacketBytes", fmt.Errorf("%d is outside [0, 256 MiB]", c.MaxPacketBytes))
	} else if c.MaxPacketBytes < c.MaxPayloadBytes {
		bad("MaxPacketBytes", fmt.Errorf("%d is less than MaxPayloadBytes %d", c.MaxPacketBytes, c.MaxPayloadBytes))
	}
	for user, pw := range c.PeerUsers {
		if err := checkLevelName(user); err != nil {
			bad("PeerUsers "+strconv.Quote(user), err)
		}
		if user == c.Node {
			bad("PeerUsers "+strconv.Quote(user), errors.New("is this node's own name"))
		}
		if pw == "" {
			bad("PeerUsers "+strconv.Quote(user), errors.New("empty password"))
		}
	}
	for i, a := range c.MQTT {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad(fmt.Sprintf("MQTT[%d]", i), err)
		}
	}
	for i, a := range c.WebSocket {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad(fmt.Sprintf("WebSocket[%d]", i), err)
		}
	}
	for i, l := range c.TLS {
		if _, _, err := net.SplitHostPort(l.Addr); err != nil {
			bad(fmt.Sprintf("TLS[%d].Addr", i), err)
		}
		if l.Cert == "" || l.Key == "" {
			bad(fmt.Sprintf("TLS[%d]", i), errors.New("needs both Cert and Key"))
		}
	}
	return errors.Join(errs...)
}

// Errors returned by the Broker.
var (
	// ErrPeerNotConnected: SendToPeer for a peer that has no ready
	// connection to this broker.
	ErrPeerNotConnected = errors.New("broker: peer not connected")
	// ErrUnknownPeer: SendToPeer for a name that is not in PeerUsers.
	ErrUnknownPeer = errors.New("broker: unknown peer")
)

// Timeouts.
const (
	writeTimeout    = 5 * time.Second // a client's KV write (Tree.Write)
	shutdownTimeout = 5 * time.Second // Run's shutdown, after ctx is done
	sysInterval     = 10              // seconds between $SYS updates
	maxKeepalive    = 600             // seconds; longer (or no) keepalive of v5 clients is capped
)

// Broker is one node's embedded MQTT broker (mochi-mqtt). Create it with
// New, then call Run.
type Broker struct {
	cfg    Config
	log    *slog.Logger
	srv    *mqtt.Server
	inline *mqtt.Client
	hook   *hook
	peers  *peerTracker
	fill   *filler // retained messages for new subscriptions (retained.go)
	limits *connLimits
	out    *delivery // live delivery of publishes (fanout.go)
	retain retainedBudget

	ready   chan struct{} // closed once Run has opened its listeners (or failed)
	addrs   []net.Addr    // written before ready is closed
	runOnce sync.Once
}

// New checks cfg and builds a broker. It opens no sockets and starts no
// goroutines; PublishEntry already works (retained messages published
// before Run are served once clients connect).
func New(cfg Config, t Tree, sh SyncHandler) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if t == nil || sh == nil {
		return nil, errors.New("broker: New needs a Tree and a SyncHandler")
	}
	cfg = cfg.withDefaults()
	log := cfg.Logger.With("node", cfg.Node)

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumMessageExpiryInterval = 0 // retained KV values never expire (mochi's default is 24 h)
	caps.MaximumPacketSize = uint32(cfg.MaxPacketBytes)
	caps.MaximumSessionExpiryInterval = 24 * 60 * 60 // forget disconnected sessions after a day
	caps.ReceiveMaximum = 1024                       // unacknowledged QoS 1/2 publishes per client
	caps.MaximumInflight = 8192                      // outbound QoS 1/2 messages held per client
	caps.MaximumClientWritesPending = 8192           // outbound queue per client before dropping
	caps.TopicAliasMaximum = 1024
	if cfg.MaxConns > 0 {
		caps.MaximumClients = int64(cfg.MaxConns)
	}

	srv := mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		Logger:                 slog.New(mochiLog{log.Handler()}).With("component", "mqtt"),
		SysTopicResendInterval: sysInterval,
		InlineClient:           true,
	})
	if !stopRetainedExpiry(srv) {
		log.Warn("could not stop mochi's retained-expiry sweep: retained publishes will stall once a second on large trees")
	}
	inline, ok := srv.Clients.Get(mqtt.InlineClientId)
	if !ok {
		return nil, errors.New("broker: mochi created no inline client")
	}
	b := &Broker{
		cfg:    cfg,
		log:    log,
		srv:    srv,
		inline: inline,
		peers:  newPeerTracker(sh),
		ready:  make(chan struct{}),
		limits: &connLimits{max: cfg.MaxConns, budget: cfg.Budget, packet: int64(cfg.MaxPacketBytes), log: log},
		retain: retainedBudget{max: cfg.MaxRetainedBytes},
	}
	b.hook = newHook(b, t, sh)
	b.fill = newFiller(srv, b.hook.OnACLCheck, b.hook.context)
	b.out = newDelivery(srv, inline, cfg.MaxQueueBytes, cfg.MaxSendingBytes, log)
	b.out.acl = b.hook.OnACLCheck
	b.out.tree, b.out.kvPrefix, b.out.ctx = t, cfg.KVPrefix, b.hook.context
	b.out.kvSubs = newKVSubs(cfg.KVPrefix)
	b.out.isPeer = func(cl *mqtt.Client) bool { _, ok := b.hook.peerOf(cl); return ok }
	b.fill.slotLock = b.out.slotLock
	b.fill.out = b.out
	if err := srv.AddHook(b.hook, nil); err != nil {
		return nil, fmt.Errorf("broker: adding hook: %w", err)
	}
	return b, nil
}

// Run opens the listeners and serves until ctx is done; then it closes the
// listeners and disconnects every client within 5 s. It returns nil after
// a clean shutdown, or the error that stopped it (a listener that cannot
// be opened, for example). Run may be called only once.
func (b *Broker) Run(ctx context.Context) error {
	first := false
	b.runOnce.Do(func() { first = true })
	if !first {
		return errors.New("broker: Run called twice")
	}
	lns, err := b.listen()
	if err != nil {
		close(b.ready)
		return err
	}
	addrs := make([]net.Addr, 0, len(lns))
	for _, l := range lns {
		if err := b.srv.AddListener(l.mochi); err != nil {
			for _, l := range lns {
				l.ln.Close()
			}
			close(b.ready)
			return fmt.Errorf("broker: adding listener %s: %w", l.ln.Addr(), err)
		}
		addrs = append(addrs, l.ln.Addr())
	}
	b.addrs = addrs
	b.hook.setContext(ctx)
	if err := b.srv.Serve(); err != nil {
		close(b.ready)
		_ = b.srv.Close()
		return fmt.Errorf("broker: %w", err)
	}
	close(b.ready)
	b.log.Info("broker listening", "addrs", b.addrs)

	<-ctx.Done()
	b.hook.closing.Store(true)
	done := make(chan struct{})
	go func() {
		_ = b.srv.Close()
		b.out.wait() // every client is gone: their writers end
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(shutdownTimeout):
		return fmt.Errorf("broker: clients still connected %v after shutdown began", shutdownTimeout)
	}
}

// Ready is closed once Run has opened its listeners, or has failed to.
func (b *Broker) Ready() <-chan struct{} { return b.ready }

// Addrs waits until Run has opened its listeners and returns their
// addresses: MQTT, then WebSocket, then TLS, each in Config order. It
// returns nil if Run failed before listening. It blocks until Run is
// called.
func (b *Broker) Addrs() []net.Addr {
	<-b.ready
	return b.addrs
}

// PublishEntry delivers a change of the entry at p to the current
// subscribers of its KV topic: value (msgpack) as JSON with content type
// "application/json", and MQTT v5 user properties node, tick and tock; a
// nil value (deleted) is an empty payload. Nothing is retained: new
// subscriptions get their retained messages from the tree
// (Tree.Entries), and PublishEntry must be called in order with the
// cursors' steps (see EntryCursor). Without subscribers it builds nothing.
// Entries of the meta tree are never published (nil is returned); paths
// without a topic give an error wrapping tree.ErrInvalidPath, values that
// are not msgpack (when someone subscribes) one wrapping
// tree.ErrInvalidValue. It may be called from any goroutine, also before
// Run.
func (b *Broker) PublishEntry(p tree.Path, value []byte, node string, tick, tock uint64) error {
	if p.IsMeta() {
		return nil
	}
	if !b.out.kvSubs.any() { // nobody could receive it: build nothing
		return checkTopicPath(b.cfg.KVPrefix, p)
	}
	topic, err := TopicForPath(b.cfg.KVPrefix, p)
	if err != nil {
		return err
	}
	if err := b.out.publishEntry(p, topic, value, node, tick, tock); err != nil {
		return fmt.Errorf("broker: entry %s: %w", p, err)
	}
	return nil
}

// SendToPeer publishes data (QoS 1) on
// "<sync>/to/<peer>/from/<node>/<kind.TopicSuffix()>" for a peer that
// dialled us and subscribed to its sync topic. It returns
// ErrPeerNotConnected if the peer has no such connection. Delivery is not
// confirmed: a message that does not fit the peer's outbound queue is
// dropped (and logged).
func (b *Broker) SendToPeer(peer string, kind wire.Kind, data []byte) error {
	if !kind.Valid() {
		return fmt.Errorf("broker: SendToPeer: invalid kind %v", kind)
	}
	if _, ok := b.cfg.PeerUsers[peer]; !ok {
		return fmt.Errorf("%w %q", ErrUnknownPeer, peer)
	}
	if !b.peers.isUp(peer) {
		return fmt.Errorf("%w: %q", ErrPeerNotConnected, peer)
	}
	topic := b.cfg.SyncPrefix + "/to/" + peer + "/from/" + b.cfg.Node + "/" + kind.TopicSuffix()
	err := b.srv.InjectPacket(b.inline, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   topic,
		PacketID:    1,
		Payload:     data,
	})
	if err != nil {
		return fmt.Errorf("broker: sending to peer %q: %w", peer, err)
	}
	return nil
}
