// Package edgekv assembles one board's node from its board config: the
// engine (tree/node) with its store in the data directory, the embedded
// MQTT broker (broker), the outbound peer and hub links (broker's
// PeerLink), the MoaT-KV client-protocol listeners (broker/kvproto),
// plain and TLS, and the board's hardware bindings (hw: sensors polled into
// the tree, inputs written on change, outputs that follow a tree value).
// A Go program can embed a node:
//
//	cfg, _ := boards.Load("board1.yaml")
//	cfg.SetNode("board1")
//	n, err := edgekv.New(cfg, edgekv.Options{Logger: log})
//	…
//	err = n.Run(ctx) // until ctx ends
//
// # What it owns
//
// The wiring, and nothing else: the adapters each define the small
// interface they need (broker.Tree, broker.SyncHandler, broker.LinkEvents,
// kvproto.Tree and its optional interfaces, node.Observer), and this package
// implements them on top of the engine's local API and link calls; for the
// hardware it is the other way round: this package names the device
// methods it needs (a thermometer's Read, an input's Read and WaitForEdge,
// an output's Out) and hw's devices have them.
// cmd/edgekv holds only the command line.
//
// # Start and stop order
//
// New opens the engine's store and loads it, checks the configuration and
// loads TLS certificates; it opens no socket and starts no goroutine. Run
// starts, in this order: the engine (it saves its tick reservation before
// anything else and shows every stored entry to the broker as a retained
// message), the client-protocol ports (bound before the broker opens
// MQTT, so that whoever sees the MQTT port open can use them too), the
// broker's listeners, the client-protocol servers, the hardware bindings
// (each output first takes its safe level), and last the peer and hub
// links. It stops in the reverse order when ctx ends or any part fails:
// links first (no more sync traffic), then the hardware (outputs back to
// their safe level, their state written while the engine still runs),
// then the client-protocol listeners and their connections, then the broker (its
// clients' writes in flight are still answered), and the engine last (a
// final flush, then the store is closed). Run returns the first error that
// stopped it, or nil after a clean stop.
//
// # Imports
//
// Everything in the module but cmd; nothing imports it except cmd/edgekv
// and tests.
//
// # Concurrency
//
// Run owns every goroutine it starts and waits for all of them. The
// accessors (Engine, Broker, ClientAddrs, SimHardware) are safe for
// concurrent use.
package edgekv
