package broker

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgekv/edgekv/tree"
	"github.com/edgekv/edgekv/tree/wire"
)

// hook is edgekv's mochi hook: authentication, ACLs, client writes to KV
// topics and the sync plumbing of peers that dial us. Every method runs on
// a mochi goroutine (mostly the client's own) and takes no lock while
// calling out; topics outside the KV and sync prefixes cost one or two
// prefix comparisons.
type hook struct {
	mqtt.HookBase
	b       *Broker
	tree    Tree
	handler SyncHandler
	log     *slog.Logger

	kvPrefix   string
	syncPrefix string
	toPrefix   string // "<sync>/to/": what peers may read, below their name
	inbound    string // "<sync>/to/<node>/from/": what peers may write, below their name
	maxPayload int
	anonymous  bool
	peers      map[string]peerAuth // username → credentials

	ctx     atomic.Pointer[context.Context] // Run's context: bounds client writes
	closing atomic.Bool                     // shutting down: refuse new connections
}

// peerAuth holds a peer's name (the map key, kept to avoid allocating it
// on lookups) and the SHA-256 of its password, compared in constant time.
type peerAuth struct {
	name string
	pw   [sha256.Size]byte
}

func newHook(b *Broker, t Tree, sh SyncHandler) *hook {
	h := &hook{
		b:          b,
		tree:       t,
		handler:    sh,
		log:        b.log,
		kvPrefix:   b.cfg.KVPrefix,
		syncPrefix: b.cfg.SyncPrefix,
		toPrefix:   b.cfg.SyncPrefix + "/to/",
		inbound:    b.cfg.SyncPrefix + "/to/" + b.cfg.Node + "/from/",
		maxPayload: b.cfg.MaxPayloadBytes,
		anonymous:  b.cfg.AllowAnonymous,
		peers:      make(map[string]peerAuth, len(b.cfg.PeerUsers)),
	}
	for user, pw := range b.cfg.PeerUsers {
		h.peers[user] = peerAuth{name: user, pw: sha256.Sum256([]byte(pw))}
	}
	return h
}

func (h *hook) ID() string { return "edgekv" }

func (h *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck,
		mqtt.OnSessionEstablished, mqtt.OnDisconnect,
		mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnUnsubscribe, mqtt.OnUnsubscribed,
		mqtt.OnPacketProcessed, mqtt.OnQosComplete,
		mqtt.OnPublish, mqtt.OnPublishDropped, mqtt.OnClientExpired:
		return true
	}
	return false
}

func (h *hook) setContext(ctx context.Context) { h.ctx.Store(&ctx) }

func (h *hook) context() context.Context {
	if p := h.ctx.Load(); p != nil {
		return *p
	}
	return context.Background()
}

// peerOf reports whether cl authenticated as a peer, and which.
// OnConnect admits a username from PeerUsers only with its password.
func (h *hook) peerOf(cl *mqtt.Client) (string, bool) {
	if len(cl.Properties.Username) == 0 || cl.Net.Inline {
		return "", false
	}
	p, ok := h.peers[string(cl.Properties.Username)]
	return p.name, ok
}

// OnConnect admits or refuses a connection, answering a refusal with a
// CONNACK reason code itself (mochi closes the connection silently when
// OnConnect fails):
//
//   - a username from PeerUsers must come with its password (else 0x86,
//     v3.1.1: 0x04); the client is then that peer;
//   - a client without username and password is admitted only if
//     AllowAnonymous and its address is loopback (else 0x87, v3.1.1: 0x05);
//   - any other username is refused (0x86, v3.1.1: 0x04);
//   - a will message on a KV or sync topic is refused (0x90, v3.1.1: 0x05):
//     mochi publishes wills without OnPublish, so they would bypass the
//     tree and the sync ACLs;
//   - the client ID "inline" (mochi's embedded client) is refused (0x85,
//     v3.1.1: 0x02), and so is everything while shutting down (0x8B,
//     v3.1.1: 0x03).
//
// An admitted MQTT v5 client asking for no keepalive or one above 600 s is
// given 600 s (Server Keep Alive).
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	refuse := func(v5, v3 packets.Code, why string) error {
		code := v5
		if cl.Properties.ProtocolVersion < 5 {
			code = v3
		}
		h.log.Info("connection refused", "client", cl.ID, "remote", cl.Net.Remote,
			"user", string(pk.Connect.Username), "reason", why)
		if err := h.b.srv.SendConnack(cl, code, false, nil); err != nil {
			h.log.Debug("sending CONNACK failed", "client", cl.ID, "error", err)
		}
		return v5
	}
	switch {
	case h.closing.Load():
		return refuse(packets.ErrServerShuttingDown, packets.Err3ServerUnavailable, "shutting down")
	case cl.ID == mqtt.InlineClientId:
		return refuse(packets.ErrClientIdentifierNotValid, packets.Err3ClientIdentifierNotValid, "reserved client ID")
	}
	c := pk.Connect
	if !c.UsernameFlag && !c.PasswordFlag && len(c.Username) == 0 && len(c.Password) == 0 {
		if !h.anonymous {
			return refuse(packets.ErrNotAuthorized, packets.Err3NotAuthorized, "anonymous clients are not allowed")
		}
		if !isLoopback(cl.Net.Remote) {
			return refuse(packets.ErrNotAuthorized, packets.Err3NotAuthorized, "anonymous clients only from loopback")
		}
	} else {
		p, ok := h.peers[string(c.Username)]
		got := sha256.Sum256(c.Password)
		if subtle.ConstantTimeCompare(got[:], p.pw[:]) != 1 || !ok {
			return refuse(packets.ErrBadUsernameOrPassword, packets.ErrMalformedUsernameOrPassword, "bad username or password")
		}
	}
	if c.WillFlag && (underPrefix(c.WillTopic, h.kvPrefix) || underPrefix(c.WillTopic, h.syncPrefix)) {
		return refuse(packets.ErrTopicNameInvalid, packets.Err3NotAuthorized, "will message on a KV or sync topic")
	}
	if cl.Properties.ProtocolVersion == 5 && (cl.State.Keepalive == 0 || cl.State.Keepalive > maxKeepalive) {
		cl.State.ServerKeepalive = true
		cl.State.Keepalive = maxKeepalive
	}
	return nil
}

// OnConnectAuthenticate admits what OnConnect admitted (mochi refuses
// every client unless some hook provides this).
func (h *hook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// OnACLCheck guards the sync prefix; everything else is open. Under it,
// only a peer P may publish, and only on "<sync>/to/<node>/from/<P>/…";
// only P may subscribe to or receive "<sync>/to/<P>/…". mochi checks
// subscriptions against the filter and every delivery against the topic,
// so a wildcard subscription such as "#" never delivers sync messages to
// anyone else.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if !underPrefix(topic, h.syncPrefix) {
		return true
	}
	peer, ok := h.peerOf(cl)
	if !ok {
		return false
	}
	if write {
		return belowName(topic, h.inbound, peer)
	}
	return belowName(topic, h.toPrefix, peer)
}

// belowName reports whether topic is prefix + name + "/" + something.
func belowName(topic, prefix, name string) bool {
	rest, ok := strings.CutPrefix(topic, prefix)
	return ok && len(rest) > len(name)+1 && rest[len(name)] == '/' && rest[:len(name)] == name
}

// peerFilter is the subscription that makes a peer ready.
func (h *hook) peerFilter(peer string) string { return h.toPrefix + peer + "/#" }

// OnSessionEstablished makes a peer ready whose resumed session already
// holds its sync subscription.
func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.b.out.established(cl)
	h.b.out.kvSubs.established(cl)
	if peer, ok := h.peerOf(cl); ok {
		if _, ok := cl.State.Subscriptions.Get(h.peerFilter(peer)); ok {
			h.b.peers.up(peer, cl)
		}
	}
}

// OnSubscribe hands the retained messages of new subscriptions to the
// filler (retained.go) instead of mochi.
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	h.b.out.inboundID(cl, pk.PacketID)
	return h.b.fill.subscribe(cl, pk)
}

// OnUnsubscribe notes the client's packet id (fanout.go, nextPacketID).
func (h *hook) OnUnsubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	h.b.out.inboundID(cl, pk.PacketID)
	return pk
}

// OnPacketProcessed starts the retained messages of a SUBSCRIBE once its
// SUBACK has gone out.
func (h *hook) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, err error) {
	if pk.FixedHeader.Type == packets.Subscribe {
		h.b.fill.processed(cl, err)
	}
}

// OnQosComplete gives back a live message's bytes and window slot, and
// lets a paced retained delivery go on (on the client's reader goroutine:
// processPuback, processPubcomp).
func (h *hook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	h.b.out.completed(cl, pk.PacketID)
	h.b.fill.completed(cl)
}

// OnSubscribed makes a peer ready when it subscribes to its sync topic,
// and tells the filler which filters were granted.
func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	h.b.fill.subscribed(cl, codes)
	h.b.out.kvSubs.subscribed(cl, pk, codes)
	peer, ok := h.peerOf(cl)
	if !ok {
		return
	}
	want := h.peerFilter(peer)
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] < packets.ErrUnspecifiedError.Code && f.Filter == want {
			h.b.peers.up(peer, cl)
		}
	}
}

// OnUnsubscribed ends the walks of the filters dropped (kvretained.go); a
// peer that drops its sync subscription is not ready.
func (h *hook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	h.b.out.unsubscribed(cl, pk.Filters)
	h.b.out.kvSubs.unsubscribed(cl, pk)
	peer, ok := h.peerOf(cl)
	if !ok {
		return
	}
	want := h.peerFilter(peer)
	for _, f := range pk.Filters {
		if f.Filter == want {
			h.b.peers.down(peer, cl)
		}
	}
}

// OnDisconnect reports a peer's ready connection gone, and any client's
// end to Config.ClientGone.
func (h *hook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	h.b.fill.disconnected(cl)
	h.b.out.disconnected(cl)
	if expire {
		h.b.out.expired(cl.ID)
		h.b.out.kvSubs.ended(cl)
	}
	if peer, ok := h.peerOf(cl); ok {
		h.b.peers.down(peer, cl)
	}
	if f := h.b.cfg.ClientGone; f != nil {
		f()
	}
}

// OnClientExpired forgets what was counted for a session that has ended
// while its client was away.
func (h *hook) OnClientExpired(cl *mqtt.Client) {
	h.b.out.expired(cl.ID)
	h.b.out.kvSubs.ended(cl)
}

// OnPublishDropped logs sync messages a peer's full queue could not take.
func (h *hook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	if underPrefix(pk.TopicName, h.syncPrefix) {
		h.log.Warn("sync message dropped: the peer's outbound queue is full", "client", cl.ID, "topic", pk.TopicName)
	}
}

// OnPublish turns client publishes on KV topics into tree writes and peer
// publishes on sync topics into SyncHandler.Receive calls; every other
// publish (the inline client's: entries, sync and bus messages; clients'
// on other topics) is retained and delivered by edgekv itself (fanout.go).
// Either way the hook returns mochi's CodeSuccessIgnore, with which mochi
// still acknowledges the packet (PUBACK or PUBREC with success) but
// neither retains nor delivers it. Since mochi calls OnPublish before it
// builds the acknowledgement, a QoS 1 PUBACK leaves only after Tree.Write
// has returned, or the message is in its subscribers' queues.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		out := pk
		out.Payload = clonePayload(pk.Payload)
		h.b.out.forward(out, true)
		return pk, packets.CodeSuccessIgnore
	}
	if pk.FixedHeader.Qos > 0 {
		h.b.out.inboundID(cl, pk.PacketID)
	}
	switch {
	case underPrefix(pk.TopicName, h.kvPrefix):
		return h.write(cl, pk)
	case underPrefix(pk.TopicName, h.syncPrefix):
		return h.syncIn(cl, pk)
	case pk.FixedHeader.Retain:
		if err := h.b.retain.admit(pk.TopicName, len(pk.Payload)); err != nil {
			return h.refuse(cl, pk, packets.ErrQuotaExceeded, err)
		}
	}
	h.b.out.forward(pk, true)
	return pk, packets.CodeSuccessIgnore
}

// write applies a client publish on a KV topic; see doc.go.
func (h *hook) write(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	p, err := PathForTopic(h.kvPrefix, pk.TopicName)
	if err != nil {
		return h.refuse(cl, pk, packets.ErrTopicNameInvalid, err)
	}
	if len(pk.Payload) > h.maxPayload {
		return h.refuse(cl, pk, packets.ErrQuotaExceeded,
			fmt.Errorf("payload of %d bytes exceeds the limit of %d", len(pk.Payload), h.maxPayload))
	}
	v, err := payloadValue(pk.Payload)
	if err != nil {
		return h.refuse(cl, pk, packets.ErrPayloadFormatInvalid, err)
	}
	ctx, cancel := context.WithTimeout(h.context(), writeTimeout)
	if nw, ok := h.tree.(NoWaitWriter); ok && pk.FixedHeader.Qos == 0 {
		err = nw.WriteNoWait(ctx, p, v)
	} else {
		err = h.tree.Write(ctx, p, v)
	}
	cancel()
	switch {
	case err == nil:
	case v == nil && errors.Is(err, tree.ErrNotFound):
		// Deleting what is not there leaves the tree as the client wants
		// it, like clearing a retained message that does not exist.
		h.log.Debug("delete of a missing entry", "topic", pk.TopicName, "client", cl.ID)
	default:
		return h.refuse(cl, pk, reasonFor(err), err)
	}
	return pk, packets.CodeSuccessIgnore
}

// reasonFor maps a Tree.Write error to a PUBACK reason code.
func reasonFor(err error) packets.Code {
	switch {
	case errors.Is(err, tree.ErrInvalidPath):
		return packets.ErrTopicNameInvalid
	case errors.Is(err, tree.ErrInvalidValue), errors.Is(err, tree.ErrMalformed):
		return packets.ErrPayloadFormatInvalid
	case tree.KindOf(err) == tree.KindPermission:
		return packets.ErrNotAuthorized
	}
	return packets.ErrUnspecifiedError
}

// maxReasonString bounds the error text sent back in a reason string.
const maxReasonString = 200

// refuse drops pk and tells the client why, where MQTT allows it: an MQTT
// v5 client's QoS 1 publish gets a PUBACK, a QoS 2 publish a PUBREC, with
// the reason code and the error as reason string (after which mochi skips
// the packet: ErrRejectPacket). QoS 0 and MQTT v3.1.1 have no way to say
// no: the packet is acknowledged as usual and dropped (CodeSuccessIgnore).
// Returning the code itself, as mochi also allows, would retain and
// forward the packet on v3.1.1 and QoS 0, and send PUBACK instead of
// PUBREC for QoS 2.
func (h *hook) refuse(cl *mqtt.Client, pk packets.Packet, code packets.Code, err error) (packets.Packet, error) {
	h.log.Info("write refused", "topic", pk.TopicName, "error", err, "client", cl.ID, "reason", code.Reason)
	if cl.Properties.ProtocolVersion < 5 || pk.FixedHeader.Qos == 0 {
		return pk, packets.CodeSuccessIgnore
	}
	ackType := packets.Puback
	if pk.FixedHeader.Qos == 2 {
		ackType = packets.Pubrec
	}
	reason := code.Reason + ": " + err.Error()
	if len(reason) > maxReasonString {
		reason = strings.ToValidUTF8(reason[:maxReasonString], "") + "…"
	}
	ack := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: ackType},
		PacketID:    pk.PacketID,
		ReasonCode:  code.Code,
		Properties:  packets.Properties{ReasonString: reason},
	}
	if werr := cl.WritePacket(ack); werr != nil {
		h.log.Debug("sending refusal failed", "client", cl.ID, "error", werr)
	}
	return pk, packets.ErrRejectPacket
}

// syncIn hands a peer's sync message to the SyncHandler. The ACL has
// admitted only "<sync>/to/<node>/from/<peer>/…" from that peer; this
// checks again rather than trust it.
func (h *hook) syncIn(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	peer, ok := h.peerOf(cl)
	if !ok || !belowName(pk.TopicName, h.inbound, peer) {
		return h.refuse(cl, pk, packets.ErrNotAuthorized, errors.New("not a sync topic of this client"))
	}
	suffix := pk.TopicName[len(h.inbound)+len(peer)+1:]
	kind, ok := wire.KindForTopicSuffix(suffix)
	if !ok {
		h.log.Warn("sync message of unknown kind dropped", "peer", peer, "topic", pk.TopicName)
		return pk, packets.CodeSuccessIgnore
	}
	h.handler.Receive(peer, kind, pk.Payload)
	return pk, packets.CodeSuccessIgnore
}

// isLoopback reports whether a remote address ("ip:port") is loopback.
func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
