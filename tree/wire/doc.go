// Package wire encodes and decodes edgekv's sync-protocol messages and the
// store's records: msgpack, hand-written on the tinylib/msgp runtime
// (Append*/Read*Bytes style) because the shapes have optional keys and
// MoaT-KV's extension types.
//
// It owns:
//   - the MoaT-KV bus messages edgekv shares with MoaT-KV 0.70: update (the
//     originator shape {node, tick, prev, path, value?, tock} is sent; the
//     recovery shape {value?, chain, tock, path, node, tick} is decoded too)
//     and info (ticks, missing, known/superseded, deleted, node_drop), with
//     chains and range sets encoded exactly as MoaT-KV does; and the
//     asyncactor messages of MoaT-KV's ping group (init, vers, ping, hist:
//     ActorMsg, KindPing);
//   - edgekv's own messages on their own topics, which MoaT-KV ignores:
//     hello, digest, heartbeat and batch;
//   - Kind, the kind of a message, and its topic suffix;
//   - MoaT-KV 0.70's legacy chunk series ({"_p0": [node, seq, i, bytes]}),
//     reassembled by a bounded Reassembler; chunks are never sent;
//   - the store's records (state and entry), RecordKind, and DKVReader for
//     MoaT-KV save files (.dkv), which un-shortens paths;
//   - ReadHead and Lead, edgekv's one reader of msgpack item headers (lead
//     byte, lengths, entry counts): this package's decoders, the client
//     protocol's framing and request parser (broker/kvproto) and the MQTT
//     payload converter (broker) all read items through them.
//
// Paths and path elements are encoded by package tree (extension type 3).
// Values are raw msgpack bytes, checked for well-formedness (nesting at most
// MaxValueDepth) and never interpreted.
//
// Encoding choices. Integers use the smallest form, unsigned for
// non-negative values, as Python's msgpack does, so MoaT-KV's originator
// updates, info messages and .dkv entries re-encode byte for byte (msgp's
// AppendInt64 would not: it writes 128…32767 as int16). Maps are written in
// MoaT-KV's key order, node-keyed maps in ascending name order. A batch
// embeds each update as a msgpack map, {updates: [{…}, {…}]}, not as bin:
// each element is byte for byte an update message, DecodeBatch hands out
// sub-slices for DecodeUpdate, and msgpack tools show batches legibly.
//
// Decoding. Keys may come in any order and unknown keys (of any type) are
// ignored; a known key given twice is an error. Integers may come in any
// int or uint form; ticks, tocks and sequence numbers must be ≥ 0 and may
// use the whole uint64 range. Node names are non-empty UTF-8 strings of at
// most MaxNodeName bytes. Chains have at most MaxChainLinks links, never
// name a node twice and never carry tick 0. Every map or array may declare
// at most MaxEntries entries, and never more than the remaining bytes could
// hold. A decoded range set is bounded in elements, not in ticks: [[1, 2^63]]
// is a valid set of 2^63 ticks, so iterate it only intersected with
// something local.
//
// Errors. Decoders never panic. A failure is an *Error whose message says
// what and where (`wire: update: key "prev": link 3: tick: want integer,
// got str (at byte 76)`) and which wraps tree.ErrMalformed (and the cause,
// e.g. tree.ErrInvalidPath for a bad path).
//
// Aliasing. Decoded values (tree.Event.Value, Record.Event.Value) and the
// slices returned by DecodeBatch, Record.Raw and a pass-through
// Reassembler.Add alias the input: a caller that reuses the input buffer
// or keeps a value beyond the buffer's life must copy it first. (Aliasing
// saves a copy per value; for a 1 KiB value that is most of the decode time,
// see BenchmarkDecodeUpdateLargeValue, and duplicates that are dropped
// never pay for it.) Everything else decoders return — paths, node names,
// maps, range sets — is freshly allocated.
//
// The package is pure: no network, files, clock, goroutines, locks or
// global randomness; it imports only the standard library, the msgp runtime
// and package tree. It has no mutable package state, so its functions are
// safe for concurrent use; a Reassembler or a DKVReader belongs to one
// goroutine.
package wire
