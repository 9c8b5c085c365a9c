// Package broker is the embedded MQTT broker of one edgekv node: mochi-mqtt
// v2 configured in code, its listeners (TCP, WebSocket, TLS), edgekv's
// authentication and ACL hook, the mapping between tree paths and MQTT
// topics, client writes to KV topics, and the sync plumbing for peers that
// dial this node. mochi stays behind the small API here (Config, New, Run,
// Addrs, PublishEntry, SendToPeer); nothing outside this package sees it.
//
// # Imports
//
// tree and tree/wire, mochi-mqtt/server/v2 (never its config package,
// which drags in every storage backend), gorilla/websocket (which mochi
// uses too), paho's autopaho (outbound peer links, peerlink.go), msgp's
// runtime and the standard library. The assembly (the module root,
// package edgekv) implements the Tree, SyncHandler and LinkEvents
// interfaces defined here on top of the engine (tree/node). The broker
// never imports hw, runner or cmd.
//
// # Broker settings
//
// The broker opens its sockets itself and serves them with its own small
// listeners (TCP, TLS, WebSocket) rather than mochi's: bind errors surface
// in Run, Addrs knows the ports of ":0" addresses, a connection must send
// CONNECT within 10 s, failed accepts are retried, and connections that
// never sent CONNECT are closed at shutdown (mochi's Close waits for them,
// and mochi reads CONNECT without a deadline).
//
// Retained messages never expire (MaximumMessageExpiryInterval 0; mochi's
// default drops them after 24 h). A client packet may be at most
// MaxPacketBytes (4 MiB) long; a client may have 1024 unacknowledged QoS
// 1/2 publishes; what waits to be sent to a client is bounded in bytes
// (Config.MaxQueueBytes, MaxSendingBytes; fanout.go: a client that does not
// read is disconnected); disconnected sessions expire after a day; MQTT v5
// clients asking for no keepalive, or one above 600 s, are given 600 s.
// $SYS topics are published every 10 s.
//
// # Clients and peers
//
// A client whose username is in Config.PeerUsers must present its password
// (compared in constant time) and is then that peer. A client without
// credentials is admitted only with AllowAnonymous and only from a loopback
// address. Everything else is refused with a CONNACK reason code (v5: 0x86
// bad username or password, 0x87 not authorized; v3.1.1: 0x04, 0x05).
//
// # KV topics
//
// Every valued entry of the tree is the retained message of the topic
// "<KVPrefix>/<level>/<level>…", one level per path element (the empty path
// is the bare prefix): the value as JSON (MsgpackToJSON), content type
// "application/json", payload format UTF-8, and user properties node, tick
// and tock. The meta tree (nil first element) has no topics. The broker
// keeps no copy: a new subscription's retained messages are read from the
// tree (Tree.Entries) and built as they are sent (kvretained.go), and the
// node publishes each change to the current subscribers with PublishEntry
// (a deletion as an empty payload), which builds nothing when nobody
// subscribes.
//
// A new subscription gets every matching retained message, however many:
// the broker sends them itself (kvretained.go for KV topics, retained.go
// for others) instead of mochi, paced by the client (TCP flow control at
// QoS 0, at most 256 unacknowledged and never more than a v5 client's
// receive maximum at QoS 1/2), where mochi dropped all beyond its queues.
// A subscriber that arrives while entries change gets each value once,
// never an older after a newer.
//
// Levels follow MoaT-KV's v3 topic plan (path syntax with '/' as separator),
// adapted so that every level is a valid MQTT topic level and the mapping is
// a bijection:
//
//   - A string element is written as it is, except: ':' → "::", '/' → ":_",
//     '+' → ":p", '#' → ":h", NUL → ":z"; a leading '$' is shielded with
//     ":." (so "$x" → ":.$x"); the empty string is ":e". Dots and spaces
//     are not escaped (hence '/' takes ":_", which in dotted path text means
//     a space). The v3 plan shields wildcards with ":."; that cannot work,
//     as a topic name may not contain '+' or '#' anywhere, so they get
//     escapes of their own. A string that is not valid UTF-8 has no topic.
//   - Other elements are written in MoaT path syntax, with the dot of a
//     float unescaped and the '+' of its exponent dropped: ":42", ":-7",
//     ":t", ":f", ":1.5", ":1.0", ":1e16", ":1.5e-07", ":iinf", ":-inf";
//     bytes are ":y" and lowercase hex (":y01ff"), because the base64 of
//     ":s" may contain '/' and '+'.
//
// So a level that does not start with ':', or starts with "::", ":_", ":.",
// ":p", ":h" or ":z", is a string; ":e" is the empty string; any other
// level starting with ':' is a non-string element. PathForTopic accepts
// only this canonical form (":x10", ":1.50", ":y0A", "$x" are errors), so
// PathForTopic and TopicForPath are inverse functions. Example: the path
// ("home", "$sys", "a/b", 3, "x+y", "") is the topic
// "kv/home/:.$sys/a:_b/:3/x:py/:e".
//
// # Client writes
//
// A publish by a client (not the broker's own inline client) on a KV topic
// is a write. The payload is parsed as JSON (JSONToMsgpack); text that is
// not JSON is stored as a string; an empty payload deletes. The hook calls
// Tree.Write on the publisher's goroutine, bounded by 5 s and by Run's
// context, so a slow write holds back only that client, and a QoS 1 PUBACK
// (QoS 2 PUBREC) leaves only after Write returned: mochi builds the
// acknowledgement after its OnPublish hooks return. A QoS 0 publish, which
// nobody acknowledges, is queued (NoWaitWriter) rather than waited for:
// the client's next packet is read at once, and its writes are applied in
// the order sent. The packet itself is
// never retained or forwarded (the hook answers mochi's CodeSuccessIgnore);
// once the node has applied the write, it publishes the canonical retained
// message with PublishEntry. Deleting an entry that does not exist
// succeeds and changes nothing.
//
// A refused write changes nothing. An MQTT v5 client's QoS 1/2 publish is
// answered with a PUBACK/PUBREC reason code and reason string: 0x90 topic
// name invalid (no path for the topic, or the tree rejects the path), 0x97
// quota exceeded (payload above MaxPayloadBytes), 0x99 payload format
// invalid (invalid UTF-8, JSON the tree cannot hold, or a value the tree
// rejects), 0x87 not authorized, 0x80 unspecified (conflicts, timeouts,
// other Write errors). MQTT v3.1.1 and QoS 0 cannot express a refusal: the
// publish is acknowledged as usual and dropped. Each refusal is logged with
// the keys topic and error. A will message on a KV or sync topic is refused
// at CONNECT, as mochi publishes wills without OnPublish.
//
// # Sync topics
//
// Only peers see the sync prefix. A peer P that dialled us subscribes to
// "<SyncPrefix>/to/<P>/#" (then SyncHandler.PeerUp(P); PeerDown(P) when
// that connection ends or unsubscribes) and publishes on
// "<SyncPrefix>/to/<Node>/from/<P>/<kind.TopicSuffix()>", which the hook
// hands to SyncHandler.Receive and neither stores nor forwards (an unknown
// suffix is dropped and logged). SendToPeer publishes the other way. The
// ACL hook refuses every other publish or subscription under the sync
// prefix, and since mochi also checks the ACL on every delivery, wildcard
// subscriptions ("#", "+/sync/#") of anyone else never receive sync
// messages. Other topics pass through as in any broker; the hooks cost them
// a prefix comparison or two.
//
// # Concurrency
//
// New starts nothing; Run owns the broker's lifetime and returns after
// shutdown. mochi runs one goroutine per client (plus a writer) and calls
// the hook on them; hooks take no lock while calling out to Tree or
// SyncHandler. Tree.Write runs on the writing client's goroutine; Receive
// on the peer's; PeerUp and PeerDown run on some client's goroutine, in
// the order the peer's state changed, never concurrently with each other.
// SyncHandler methods must not block for long. PublishEntry and SendToPeer
// may be called from any goroutine, also from within SyncHandler and Tree
// calls, and (PublishEntry) before Run.
package broker
