// Package store is the durable record store of one edgekv node: a
// snapshot plus an append-only change log in one directory, each a
// sequence of opaque records (the caller encodes them as msgpack; the
// store never looks inside), each record framed with a checksum.
//
// It owns the on-disk format, loading with torn-tail repair, the sync
// policies (always, interval, none), snapshot writing and rotation, and
// the FS abstraction with two implementations: DirFS on the operating
// system and MemFS, an in-memory file system with a crash model and error
// injection for tests and the simulator. It may import only the standard
// library.
//
// # Concurrency
//
// A Store is safe for concurrent use. Open starts nothing; Run is the only
// entry point that runs for long (interval flushing: group commit every
// Options.SyncInterval), and it returns when its context is done or the
// store is closed. While the caller's snapshot iterator runs, the store
// holds only its snapshot lock, which Append never takes: Append never
// waits for a snapshot being written, its records go to the new log
// segment meanwhile (the iterator may itself call Append). Under SyncAlways concurrent Appends
// share fsyncs (group commit): a writer that finds its record already
// synced by another returns at once.
//
// # On-disk format
//
// The directory holds, for generations N (12-digit decimal):
//
//	snap-N.ekv      snapshot N: the full state as of the start of log N
//	log-N.ekv       log segment N: records appended after snapshot N began
//	snap-N.ekv.tmp  snapshot N being written (never read, removed on Open)
//	node.ekv        the node record: one record, replaced atomically
//	node.ekv.tmp    a node record being written (never read, removed on Open)
//
// Every file is a sequence of records, each framed as
//
//	uint32 LE  payload length (1 … MaxRecordBytes; 0 is invalid)
//	uint32 LE  CRC-32C (Castagnoli) of the payload
//	payload
//
// A snapshot's last record is its commit footer, written by the store:
// the 8 bytes "EKV-SNAP", uint32 LE format version (1), uint64 LE
// generation, uint64 LE number of state records before it. A snapshot
// without a valid footer (or with any bad record) is incomplete and is
// ignored in favour of the previous one. Loading takes the newest
// complete snapshot N and then every log segment with generation ≥ N in
// ascending order. Files with other names are left alone.
//
// # Crash model
//
// The store relies on the FS contract: bytes written to a file are
// durable after File.Sync, a create, rename or remove after FS.SyncDir,
// a truncate when FS.Truncate returns. From that it guarantees:
//   - SyncAlways: an Append that returned nil survives any crash.
//   - SyncInterval: records appended before a Flush that returned nil
//     survive; later ones may be lost, from the end only (a torn tail).
//   - Loading never fails because of a torn or corrupt record: the log is
//     cut at the first bad record (the segment truncated, later segments
//     removed) and the cut reported, so appends after reopening are clean.
//   - A snapshot is written to a tmp file, fsynced, renamed and the
//     directory synced before older files are removed, so a crash at any
//     point leaves either the old or the new generation complete.
//   - After a failed log write or sync, the store refuses further writes
//     (the segment's tail is unknown) until it is reopened.
//   - SaveNodeRecord is durable when it returns, under every policy; a
//     crash leaves the old or the new node record, never a torn one.
//
// MemFS documents the crash it simulates; DirFS gets it from the kernel.
package store
