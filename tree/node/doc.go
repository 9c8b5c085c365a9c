// Package node is edgekv's engine: one running replica of the tree with
// the goroutine that owns it, its store, an injected clock, its sync links,
// watches, snapshots and status entries, and the one local API that every
// adapter uses — MQTT writes, the MoaT-KV client protocol, and soon
// hardware and jobs: Get, Set and Delete (with conditions), Walk, Watch,
// State, Import.
//
// # Inputs and outputs
//
// An Engine is built by Open, which opens its store (any store.FS: the
// data directory, or MemFS in tests) and restores the replica; Open starts
// nothing. Run owns everything from then on. Adapters hand it work:
//
//   - local requests through the API methods, which wait for the answer
//     (a write is answered once the store has it, fsynced under sync
//     "always");
//   - sync links with LinkUp, LinkDown and Receive, which never block: link
//     events always queue, messages queue up to Config.InboxMessages and
//     InboxBytes and are dropped beyond (counted in the status; a digest
//     sent on the link afterwards makes the peer send again what it lacks).
//
// Outputs go to the senders given with LinkUp, to watches, and to the
// Observer (every change, for the broker's live MQTT messages), from the
// loop or from a writer's goroutine (see below), never two at once. A Cursor
// walks the tree in steps that run on the engine's goroutine, in order
// with the Observer, from which the broker serves KV topics' retained
// messages.
//
// # Order of work in one step
//
// After each input (or batch of inputs) the engine takes the replica's
// Ready and handles it in this order: save the node record if the
// reservation moved (durable, one fsync), append the records to the log,
// answer the writes that waited for them, send the messages (updates to
// one link folded into batches), then show the changes to watches and the
// Observer. Nothing leaves the process before it is in the store. If the
// store fails, the engine stops: Run returns the error, waiting writes get
// it, and nothing of that step is sent.
//
// # Writes without a hand-off
//
// The loop works under a lock (treeMu) that it lets go only while it
// waits for input. Get reads the tree under that lock on the caller's
// goroutine; a local write (Set, Delete, WriteNoWait) that finds the loop
// waiting, nothing queued for it and the store not fsyncing every write
// (sync "interval" or "none") takes the lock without waiting and does
// what the loop would — apply, flush in the order above — on the caller's
// goroutine: no hand-off to the loop and back. Otherwise it goes to the
// loop, whose turns let many writes share one append (and, under sync
// "always", one fsync). Either way changes reach the store, the peers, the
// watches and the Observer in tock order, one at a time.
//
// # Giving up
//
// A caller whose context ends gets an error, and its request either was
// carried out before the answer or never will be: a request is taken by the
// engine's goroutine or abandoned by its caller, never both. A write that
// the engine has taken is answered even when the caller's context ends
// meanwhile (at most the time of one fsync). When the engine stops, every
// waiting caller gets an error that wraps tree.ErrUnavailable.
//
// # Links
//
// Links are named by the adapters: "out:P" for a connection this node
// dialled to peer P, "in:P" for one P dialled to this node, anything else
// (a hub) on its own. When both "in:P" and "out:P" are up, the engine
// uses only the one dialled by the node whose name sorts first, which is
// the same connection on both sides; the other stays idle until it is the
// only one left. A message on a link that is not up brings it up (it may
// overtake the link event); a repeated LinkUp does the handshake (hello,
// digest) again on the same link.
//
// # Simulation
//
// Stepper drives an Engine on the caller's goroutine, one input at a time,
// through exactly the code Run uses; the simulator (tree/sim) uses it.
// Never use a Stepper while Run runs.
//
// # Imports and concurrency
//
// tree and its sub-packages (replica, store, wire) and the standard
// library only: it knows nothing of MQTT, the client protocol or hardware.
// Run starts three kinds of goroutines and waits for all of them before it
// returns: the owning loop (Run's own), the store's group commit, and at
// most one snapshot writer. Every API method is safe for concurrent use.
package node
