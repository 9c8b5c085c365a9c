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
// backoff and jitter. Safe for concurrent use; Run starts its goroutines.
type PeerLink struct {
	cfg   PeerLinkConfig
	ev    LinkEvents
	log   *slog.Logger
	queue chan outMsg
	cm    atomic.Pointer[autopaho.ConnectionManager]
	up    atomic.Bool
	drops atomic.Int64
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
	return &PeerLink{cfg: cfg, ev: ev, log: log.With("peer", cfg.Name), queue: make(chan outMsg, cfg.QueueLen)}
}

// Name returns the peer's (or hub's) name.
func (l *PeerLink) Name() string { return l.cfg.Name }

// Connected reports whether the link is up.
func (l *PeerLink) Connected() bool { return l.up.Load() }

// Dropped counts messages lost to a full queue.
func (l *PeerLink) Dropped() int64 { return l.drops.Load() }

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
// full the message is dropped and the link is reset, so that the catch-up
// on reconnect repairs the loss.
func (l *PeerLink) Send(kind wire.Kind, data []byte) error {
	select {
	case l.queue <- outMsg{kind, data}:
		return nil
	default:
		l.drops.Add(1)
		if cm := l.cm.Load(); cm != nil && l.up.Load() {
			l.log.Warn("send queue full: resetting link", "queued", len(l.queue))
			cm.TerminateConnectionForTest() // drop the connection; autopaho reconnects
		}
		return fmt.Errorf("broker: link to %s: send queue full (%d)", l.cfg.Name, cap(l.queue))
	}
}

func backoff(attempt int) time.Duration {
	d := 200 * time.Millisecond << min(attempt, 6) // 0.2 s … 12.8 s
	d = min(d, 10*time.Second)
	return time.Duration(float64(d) * (0.5 + rand.Float64())) // ±50 % jitter
}

// Run dials the peer and keeps the link up until ctx is done.
func (l *PeerLink) Run(ctx context.Context) error {
	scheme := "mqtt"
	if l.cfg.TLS != nil {
		scheme = "tls"
	}
	u, err := url.Parse(scheme + "://" + l.cfg.Addr)
	if err != nil {
		return fmt.Errorf("broker: link to %s: address %q: %w", l.cfg.Name, l.cfg.Addr, err)
	}
	clientID := "edgekv-" + l.cfg.Node + "-to-" + l.cfg.Name
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        l.cfg.TLS,
		KeepAlive:                     20,
		CleanStartOnInitialConnection: true,
		ReconnectBackoff:              backoff,
		ConnectTimeout:                5 * time.Second,
		ConnectUsername:               l.cfg.Username,
		ConnectPassword:               []byte(l.cfg.Password),
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go l.subscribe(ctx, cm)
		},
		OnConnectionDown: func() bool {
			if l.up.Swap(false) {
				l.log.Debug("connection lost")
				l.ev.LinkDown(l.cfg.Name)
			}
			return true
		},
		OnConnectError: func(err error) {
			l.log.Debug("link connect failed", "error", err)
		},
		ClientConfig: paho.ClientConfig{
			ClientID: clientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){
				func(pr paho.PublishReceived) (bool, error) {
					k, ok := l.kindOf(pr.Packet.Topic)
					if !ok {
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
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		return fmt.Errorf("broker: link to %s: %w", l.cfg.Name, err)
	}
	l.cm.Store(cm)
	l.log.Info("dialling", "addr", l.cfg.Addr, "hub", l.cfg.Hub)
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = cm.Disconnect(dctx)
			cancel()
			<-cm.Done()
			if l.up.Swap(false) {
				l.ev.LinkDown(l.cfg.Name)
			}
			return nil
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

func (l *PeerLink) subscribe(ctx context.Context, cm *autopaho.ConnectionManager) {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: l.subTopic(), QoS: 0, NoLocal: true}}})
	if err != nil {
		l.log.Warn("subscribe failed; reconnecting", "topic", l.subTopic(), "error", err)
		cm.TerminateConnectionForTest()
		return
	}
	// Drop whatever was queued while down: the digest covers it.
	for len(l.queue) > 0 {
		<-l.queue
	}
	l.up.Store(true)
	l.log.Debug("connected and subscribed", "addr", l.cfg.Addr)
	l.ev.LinkUp(l.cfg.Name)
}
