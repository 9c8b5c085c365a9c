package edgekv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"github.com/edgekv/edgekv/boards"
	"github.com/edgekv/edgekv/runner"
	"periph.io/x/conn/v3/gpio"

	"github.com/edgekv/edgekv/broker"
	"github.com/edgekv/edgekv/hw"
	"github.com/edgekv/edgekv/internal/budget"
	"github.com/edgekv/edgekv/internal/memtrim"
	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/node"
	"github.com/edgekv/edgekv/tree/store"
)

// Options are what a node takes beside its board config.
type Options struct {
	// Logger receives the node's logs (default: discarded).
	Logger *slog.Logger
	// Engine, if set, adjusts the engine's configuration after New has
	// filled it in from the board config (tests: timings, reservation).
	Engine func(*node.Config)
	// Pins, if set, opens a real board's GPIO pins instead of periph's
	// character-device driver (tests: periph's gpiotest pins).
	Pins func(boards.Pin) (gpio.PinIO, error)
}

// Node is one board's running node: see the package documentation.
type Node struct {
	cfg    *boards.Config
	log    *slog.Logger
	eng    *node.Engine
	br     *broker.Broker
	links  []*broker.PeerLink
	client []clientListener // plain first (if any), then TLS
	trim   *memtrim.Trimmer // told when clients leave
	hw     *hardware        // the board's sensor and pin bindings
	ha     *homeAssistant   // Home Assistant discovery, or nil
	jobs   *runner.Runner   // the job runner, or nil
	clog   *changeLog       // the `log` action's change log
	recv   *budget.Budget   // limits.receiving: unfinished messages of all connections

	ready     chan struct{} // closed once every listener is open (or Run failed)
	readyOnce sync.Once
	mu        sync.Mutex
	addrs     []net.Addr // client-protocol listeners' addresses, once ready
}

// New builds the node described by cfg, which must be valid (see
// boards.Config.Validate) and have its node name set: it opens and loads
// the store in the data directory, builds the broker, the links and the
// client-protocol servers, and loads every TLS certificate. It opens no
// socket and starts no goroutine.
func New(cfg *boards.Config, opts Options) (*Node, error) {
	if cfg == nil || cfg.Node == "" {
		return nil, errors.New("edgekv: the board config has no node name")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, log: log.With("node", cfg.Node), ready: make(chan struct{}), trim: memtrim.New(memtrim.Config{}),
		recv: budget.New("limits.receiving", int64(cfg.Limits.Receiving), cfg.Limits.ReceivingWait.Std())}

	var err error
	if cfg.Listen.Client != "" {
		n.client = append(n.client, clientListener{name: "listen.client", addr: cfg.Listen.Client})
	}
	tlsLns, err := clientTLSListeners(cfg.Listen.ClientTLS)
	if err != nil {
		return nil, err
	}
	n.client = append(n.client, tlsLns...)
	bcfg := broker.Config{
		Node:            cfg.Node,
		MQTT:            cfg.Listen.MQTT,
		WebSocket:       cfg.Listen.WebSocket,
		KVPrefix:        cfg.KV.Prefix,
		SyncPrefix:      cfg.Sync.Prefix,
		MaxPayloadBytes: cfg.KV.MaxPayloadBytes,
		PeerUsers:       make(map[string]string),
		AllowAnonymous:  true, // loopback only, until the security issue lands
		Logger:          log,
		ClientGone:      n.trim.Poke,
		MaxConns:        cfg.Limits.MQTTConnections,
		MaxPacketBytes:  int(cfg.Limits.MQTTPacket),
		Budget:          n.recv,
		// 0 in the board config: no retained messages outside the tree
		// (every message has at least one byte of topic and of payload).
		MaxRetainedBytes: max(int64(cfg.Limits.Retained), 1),
		MaxQueueBytes:    int64(cfg.Limits.MQTTQueue),
		MaxSendingBytes:  int64(cfg.Limits.Sending),
	}
	for _, u := range cfg.PeerUsers {
		bcfg.PeerUsers[u.Username] = u.Password
	}
	for _, l := range cfg.Listen.TLS {
		bcfg.TLS = append(bcfg.TLS, broker.TLSListener{Addr: l.Addr, Cert: l.Cert, Key: l.Key})
	}
	var linkCfgs []broker.PeerLinkConfig
	for _, group := range []struct {
		links []boards.Link
		hub   bool
	}{{cfg.Peers, false}, {cfg.Hubs, true}} {
		for _, l := range group.links {
			tc, err := linkTLS(l.TLS)
			if err != nil {
				return nil, fmt.Errorf("link %s: %w", l.Name, err)
			}
			linkCfgs = append(linkCfgs, broker.PeerLinkConfig{
				Node: cfg.Node, Name: l.Name, Addr: l.Addr, Username: l.Username, Password: l.Password,
				TLS: tc, SyncPrefix: cfg.Sync.Prefix, Hub: group.hub, Logger: n.log,
			})
		}
	}

	ecfg := node.Config{
		Name:      cfg.Node,
		FS:        store.DirFS(cfg.Data.Dir),
		Store:     store.Options{Sync: syncPolicy(cfg.Data.Sync), SyncInterval: cfg.Data.SyncInterval.Std()},
		ChainLen:  cfg.Sync.ChainLength,
		Heartbeat: cfg.Sync.Heartbeat.Std(),
		MoaT: node.MoaTConfig{Off: cfg.Sync.MoaT.Disabled, Only: cfg.Sync.MoaT.Only,
			Cycle: cfg.Sync.MoaT.Cycle.Std(), Gap: cfg.Sync.MoaT.Gap.Std()},
		Logger:   log,
		Observer: n,
	}
	if opts.Engine != nil {
		opts.Engine(&ecfg)
	}
	if n.eng, err = node.Open(ecfg); err != nil {
		return nil, fmt.Errorf("data directory %s: %w", cfg.Data.Dir, err)
	}
	if n.br, err = broker.New(bcfg, brokerTree{n.eng}, peerHandler{n}); err != nil {
		n.eng.Close()
		return nil, err
	}
	for _, lc := range linkCfgs {
		n.links = append(n.links, broker.NewPeerLink(lc, linkHandler{n, lc.Hub}))
	}
	if n.hw, err = newHardware(cfg, n.eng, n.log, opts.Pins); err != nil {
		n.eng.Close()
		return nil, err
	}
	if n.ha, err = newHomeAssistant(cfg, n.br, n.eng, n.log); err != nil {
		n.hw.buses.close()
		n.eng.Close()
		return nil, err
	}
	if n.ha != nil {
		n.hw.found = n.ha.found
	}
	n.clog = newChangeLog(n)
	if n.jobs, err = n.newRunner(cfg); err != nil {
		n.hw.buses.close()
		n.eng.Close()
		return nil, err
	}
	return n, nil
}

func syncPolicy(p boards.SyncPolicy) store.SyncPolicy {
	switch p {
	case boards.SyncAlways:
		return store.SyncAlways
	case boards.SyncNone:
		return store.SyncNone
	}
	return store.SyncInterval
}

// linkTLS builds the TLS configuration of an outbound link.
func linkTLS(c *boards.ClientTLS) (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	tc := &tls.Config{ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificates in %s", c.CA)
		}
		tc.RootCAs = pool
	}
	if c.Cert != "" || c.Key != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Engine returns the node's engine (its local API: Get, Set, Watch, …).
func (n *Node) Engine() *node.Engine { return n.eng }

// Broker returns the node's MQTT broker.
func (n *Node) Broker() *broker.Broker { return n.br }

// Ready is closed once Run has opened every listener, or has failed to.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// ClientAddrs returns the client-protocol listeners' addresses (plain
// first, then TLS, in config order) once Ready is closed; nil before, or
// if Run failed to open them.
func (n *Node) ClientAddrs() []net.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addrs
}

// Changed implements node.Observer: every change of the tree becomes the
// retained message of its topic (the meta tree has none).
func (n *Node) Changed(p tree.Path, value []byte, chain tree.Chain, tock uint64) {
	if p.IsMeta() {
		return
	}
	h, _ := chain.Head()
	if err := n.br.PublishEntry(p, value, h.Node, h.Tick, tock); err != nil {
		n.log.Debug("not published as a topic", "path", p.String(), "error", err)
	}
}

// part is one running component of Run.
type part struct {
	name   string
	cancel context.CancelFunc
	done   chan error
}

// SimHardware returns the simulated board's devices when the node runs on
// the sim board with hardware bound, else nil: a test or a demo can make a
// thermometer fail, hold an input, or see what an output was told.
func (n *Node) SimHardware() *hw.Sim { return n.hw.sim }

// Run starts the node's parts in order and stops them in reverse (see the
// package documentation). It may be called once.
func (n *Node) Run(ctx context.Context) error {
	defer n.readyOnce.Do(func() { close(n.ready) })
	var parts []*part
	failed := make(chan error, 16)
	start := func(name string, run func(context.Context) error) {
		pctx, cancel := context.WithCancel(context.Background())
		p := &part{name: name, cancel: cancel, done: make(chan error, 1)}
		parts = append(parts, p)
		go func() {
			err := run(pctx)
			if err != nil {
				err = fmt.Errorf("%s: %w", name, err)
				failed <- err
			}
			p.done <- err
		}()
	}
	stop := func(first error) error {
		for i := len(parts) - 1; i >= 0; i-- {
			p := parts[i]
			p.cancel()
			if err := <-p.done; err != nil && first == nil && !errors.Is(err, context.Canceled) {
				first = err
			}
		}
		return first
	}

	// The client-protocol ports are bound before the broker opens its
	// own: whoever sees the MQTT port open (a script, a test, a service
	// check) can connect to the client port too. Connections wait in
	// the backlog until the broker is up and they are served.
	start("engine", n.eng.Run)
	lns, err := n.listenClients()
	if err != nil {
		return stop(err)
	}
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	start("broker", n.br.Run)
	select {
	case <-n.br.Ready():
	case err := <-failed:
		closeAll()
		return stop(err)
	case <-ctx.Done():
		closeAll()
		return stop(nil)
	}
	if n.br.Addrs() == nil { // it failed to listen: its error is on its way
		closeAll()
		return stop(<-failed)
	}
	start("change log", n.clog.Run)
	start("client protocol", func(ctx context.Context) error { return n.serveClients(ctx, lns) })
	start("memory trimmer", n.trim.Run)
	start("hardware", n.hw.Run)
	if n.ha != nil {
		start("home assistant", n.ha.Run)
	}
	if n.jobs != nil { // after the hardware: stopped before it, jobs drive no output while it stops
		start("jobs", n.jobs.Run)
	}
	n.readyOnce.Do(func() { close(n.ready) })
	for _, l := range n.links {
		start("link "+l.Name(), l.Run)
	}
	n.log.Info("node running", "mqtt", n.br.Addrs(), "client", n.ClientAddrs(), "links", len(n.links))
	select {
	case <-ctx.Done():
		return stop(nil)
	case err := <-failed:
		n.log.Error("stopping", "error", err)
		return stop(err)
	}
}
