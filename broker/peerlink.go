package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/edgekv/edgekv/tree/wire"
)

// LinkEvents receives what an outbound link hears. The node implements it;
// calls come from the link's goroutines and must not block for long.
type LinkEvents interface {
	LinkUp(name string)
	LinkDown(name string)
	LinkReceive(name string, kind wire.Kind, data []byte)
}

// PeerLinkConfig configures one outbound link: to another node's broker
// (Hub false) or to an external broker shared by several nodes (Hub true).
type PeerLinkConfig struct {
	Node       string // this node's name
	Name       string // the peer's node name, or the hub's name
	Addr       string // host:port of the broker to dial
	Username   string
	Password   string
	TLS        *tls.Config // nil: plain TCP
	SyncPrefix string
	Hub        bool
	// QueueLen bounds the messages waiting to be sent; when it is full
	// the link is dropped and re-established (the digest exchange on
	// reconnect sends whatever was lost). Default 4096.
	QueueLen int
	Logger   *slog.Logger
}

// PeerLink is an outbound MQTT v5 connection (paho autopaho) that carries
// sync messages: it subscribes to the sync topics meant for this node (No
// Local) and publishes the node's own. It reconnects with exponential
// backoff and jitter. Send is safe for concurrent use and never blocks; Run
// owns everything else, on its own goroutine: LinkUp and LinkDown are
// reported from it (never after Run returned), LinkReceive from autopaho's
// reader while a connection is up.
type PeerLink struct {
	cfg    PeerLinkConfig
	ev     LinkEvents
	log    *slog.Logger
	queue  chan outMsg
	reset  chan struct{} // Send asks Run to drop the connection (capacity 1)
	drops  atomic.Int64
	resets atomic.Int64
	up     atomic.Bool
}

type outMsg struct {
	kind wire.Kind
	data []byte
}

// NewPeerLink returns a link; Run dials it.
func NewPeerLink(cfg PeerLinkConfig, ev LinkEvents) *PeerLink {
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 4096
	}
	if cfg.SyncPrefix == "" {
		cfg.SyncPrefix = "edgekv/sync"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PeerLink{cfg: cfg, ev: ev, log: log.With("peer", cfg.Name), queue: make(chan outMsg, cfg.QueueLen),
		reset: make(chan struct{}, 1)}
}

// Name returns the peer's (or hub's) name.
func (l *PeerLink) Name() string { return l.cfg.Name }

// Connected reports whether the link is up (connected and subscribed).
func (l *PeerLink) Connected() bool { return l.up.Load() }

// Dropped counts messages lost to a full queue.
func (l *PeerLink) Dropped() int64 { return l.drops.Load() }

// Resets counts the connections dropped on purpose (full queue, failed
// subscribe).
func (l *PeerLink) Resets() int64 { return l.resets.Load() }

// Topics: to a peer's broker, publish on <sync>/to/<peer>/from/<self>/<kind>
// and subscribe to <sync>/to/<self>/#; on a hub, publish on <sync>/<kind>
// and subscribe to <sync>/# (MoaT-KV's topics when the prefix is moat/kv).
func (l *PeerLink) pubTopic(k wire.Kind) string {
	if l.cfg.Hub {
		return l.cfg.SyncPrefix + "/" + k.TopicSuffix()
	}
	return l.cfg.SyncPrefix + "/to/" + l.cfg.Name + "/from/" + l.cfg.Node + "/" + k.TopicSuffix()
}

func (l *PeerLink) subTopic() string {
	if l.cfg.Hub {
		return l.cfg.SyncPrefix + "/#"
	}
	return l.cfg.SyncPrefix + "/to/" + l.cfg.Node + "/#"
}

// kindOf maps a received topic to a message kind.
func (l *PeerLink) kindOf(topic string) (wire.Kind, bool) {
	rest, ok := strings.CutPrefix(topic, l.cfg.SyncPrefix+"/")
	if !ok {
		return 0, false
	}
	if !l.cfg.Hub {
		// to/<self>/from/<peer>/<suffix>
		want := "to/" + l.cfg.Node + "/from/" + l.cfg.Name + "/"
		if rest, ok = strings.CutPrefix(rest, want); !ok {
			return 0, false
		}
	}
	return wire.KindForTopicSuffix(rest)
}

// Send queues a message for the peer. It never blocks: if the queue is
// full the message is dropped and Run drops the connection, so that the
// catch-up on reconnect (hello and digests both ways) repairs the loss.
func (l *PeerLink) Send(kind wire.Kind, data []byte) error {
	select {
	case l.queue <- outMsg{kind, data}:
		return nil
	default:
		l.drops.Add(1)
		select {
		case l.reset <- struct{}{}:
		default:
		}
		return fmt.Errorf("broker: link to %s: send queue full (%d)", l.cfg.Name, cap(l.queue))
	}
}

func backoff(attempt int) time.Duration {
	d := 200 * time.Millisecond << min(attempt, 6) // 0.2 s … 12.8 s
	d = min(d, 10*time.Second)
	return time.Duration(float64(d) * (0.5 + rand.Float64())) // ±50 % jitter
}

// Run dials the peer and keeps the link up until ctx is done. Each
// connection manager (autopaho) lives until ctx ends or the link is reset;
// a reset disconnects it (Disconnect, autopaho's documented way to end a
// connection) and starts a new one.
func (l *PeerLink) Run(ctx context.Context) error {
	scheme := "mqtt"
	if l.cfg.TLS != nil {
		scheme = "tls"
	}
	u, err := url.Parse(scheme + "://" + l.cfg.Addr)
	if err != nil {
		return fmt.Errorf("broker: link to %s: address %q: %w", l.cfg.Name, l.cfg.Addr, err)
	}
	l.log.Info("dialling", "addr", l.cfg.Addr, "hub", l.cfg.Hub)
	for attempt := 0; ; attempt++ {
		reset, err := l.session(ctx, u)
		if err != nil || !reset {
			return err
		}
		l.resets.Add(1)
		t := time.NewTimer(backoff(min(attempt, 2)))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
	}
}

// session runs one connection manager until ctx ends (reset false) or the
// link must be reset (reset true).
func (l *PeerLink) session(ctx context.Context, u *url.URL) (reset bool, err error) {
	// autopaho calls these on its own goroutine and they must not block:
	// they only hand the event to the loop below.
	upCh := make(chan struct{}, 1)
	downCh := make(chan struct{}, 1)
	signal := func(ch chan struct{}) {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// live gates what autopaho's reader hands on: nothing once this
	// session is ending (its LinkDown must be the link's last word).
	var live atomic.Bool
	live.Store(true)
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        l.cfg.TLS,
		KeepAlive:                     20,
		CleanStartOnInitialConnection: true,
		ReconnectBackoff:              backoff,
		ConnectTimeout:                5 * time.Second,
		ConnectUsername:               l.cfg.Username,
		ConnectPassword:               []byte(l.cfg.Password),
		OnConnectionUp:                func(*autopaho.ConnectionManager, *paho.Connack) { signal(upCh) },
		OnConnectionDown:              func() bool { signal(downCh); return true },
		OnConnectError:                func(err error) { l.log.Debug("link connect failed", "error", err) },
		ClientConfig: paho.ClientConfig{
			ClientID: "edgekv-" + l.cfg.Node + "-to-" + l.cfg.Name,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){
				func(pr paho.PublishReceived) (bool, error) {
					k, ok := l.kindOf(pr.Packet.Topic)
					if !ok || !live.Load() {
						return false, nil
					}
					l.ev.LinkReceive(l.cfg.Name, k, pr.Packet.Payload)
					return true, nil
				},
			},
			OnClientError: func(err error) { l.log.Debug("link client error", "error", err) },
		},
	}
	if l.cfg.Username == "" {
		cfg.ConnectPassword = nil
	}
	cm, err := autopaho.NewConnection(cctx, cfg)
	if err != nil {
		return false, fmt.Errorf("broker: link to %s: %w", l.cfg.Name, err)
	}
	down := func() {
		if l.up.Swap(false) {
			l.log.Debug("connection lost")
			l.ev.LinkDown(l.cfg.Name)
		}
	}
	defer func() {
		live.Store(false)
		dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
		_ = cm.Disconnect(dctx)
		dcancel()
		cancel()
		<-cm.Done()
		down()
	}()
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case <-l.reset:
			l.log.Warn("send queue full: resetting the link", "dropped", l.drops.Load())
			return true, nil
		case <-downCh:
			down()
		case <-upCh:
			down() // a reconnect without a down event in between
			sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: l.subTopic(), QoS: 0, NoLocal: true}}})
			scancel()
			if err != nil {
				if ctx.Err() != nil {
					return false, nil
				}
				l.log.Warn("subscribe failed; resetting the link", "topic", l.subTopic(), "error", err)
				return true, nil
			}
			// Drop whatever was queued while down: the digest covers it.
			for len(l.queue) > 0 {
				<-l.queue
			}
			l.log.Debug("connected and subscribed", "addr", l.cfg.Addr)
			l.ev.LinkUp(l.cfg.Name)
			l.up.Store(true)
		case m := <-l.queue:
			if !l.up.Load() {
				continue // lost; the digest exchange on link-up repairs it
			}
			_, err := cm.Publish(ctx, &paho.Publish{Topic: l.pubTopic(m.kind), Payload: m.data, QoS: 0})
			if err != nil && !errors.Is(err, context.Canceled) {
				l.log.Debug("publish failed", "error", err)
			}
		}
	}
}
