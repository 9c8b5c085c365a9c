package store

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// SyncPolicy says when appended records reach stable storage.
type SyncPolicy uint8

// Sync policies. The zero value is SyncInterval, the default.
const (
	// SyncInterval buffers records in memory; Flush (called every
	// Options.SyncInterval by Run, and by Close) writes and fsyncs them
	// in one group commit. A crash loses at most the records appended
	// since the last completed Flush.
	SyncInterval SyncPolicy = iota
	// SyncAlways writes and fsyncs before Append returns: an
	// acknowledged record survives any crash.
	SyncAlways
	// SyncNone keeps no data: no snapshot and no log, and Open loads
	// none (RAM only, like MoaT-KV without a save file). The node record
	// (SaveNodeRecord) is still kept: it is what stops a restarted node
	// from reusing its ticks.
	SyncNone
)

func (p SyncPolicy) String() string {
	switch p {
	case SyncInterval:
		return "interval"
	case SyncAlways:
		return "always"
	case SyncNone:
		return "none"
	}
	return fmt.Sprintf("SyncPolicy(%d)", uint8(p))
}

// ParseSyncPolicy parses the configuration names "always", "interval" and
// "none".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	for _, p := range []SyncPolicy{SyncInterval, SyncAlways, SyncNone} {
		if s == p.String() {
			return p, nil
		}
	}
	return 0, fmt.Errorf("store: unknown sync policy %q (want always, interval or none)", s)
}

// Options configure a Store. A zero field takes its default.
type Options struct {
	// Sync is the durability policy; default SyncInterval.
	Sync SyncPolicy
	// SyncInterval is the group-commit period of Run under SyncInterval;
	// default 100 ms.
	SyncInterval time.Duration
	// MaxRecordBytes bounds one record's payload, enforced on write and on
	// read (a longer record found on load is treated as corruption and
	// cut, so never lower it below the size of records already stored);
	// default 16 MiB, at most 1 GiB.
	MaxRecordBytes int
	// SnapshotAfterBytes is the log size, in framed bytes since the last
	// snapshot, at which SnapshotDue reports true; default 64 MiB;
	// negative means never. It is a hint: the store never snapshots by
	// itself.
	SnapshotAfterBytes int64
	// Logger receives warnings (cut tails, failed clean-ups); default
	// discards.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultSyncInterval       = 100 * time.Millisecond
	DefaultSnapshotAfterBytes = 64 << 20
	maxMaxRecordBytes         = 1 << 30
)

// DefaultOptions returns the options a zero Options stands for.
func DefaultOptions() Options {
	return Options{
		Sync:               SyncInterval,
		SyncInterval:       DefaultSyncInterval,
		MaxRecordBytes:     DefaultMaxRecordBytes,
		SnapshotAfterBytes: DefaultSnapshotAfterBytes,
		Logger:             slog.New(slog.DiscardHandler),
	}
}

// Validate reports every problem with o at once.
func (o Options) Validate() error {
	var errs []error
	if o.Sync > SyncNone {
		errs = append(errs, fmt.Errorf("store: Sync: unknown policy %d", o.Sync))
	}
	if o.SyncInterval < 0 {
		errs = append(errs, fmt.Errorf("store: SyncInterval %v is negative", o.SyncInterval))
	}
	if o.MaxRecordBytes < 0 || o.MaxRecordBytes > maxMaxRecordBytes {
		errs = append(errs, fmt.Errorf("store: MaxRecordBytes %d not in [0, %d]", o.MaxRecordBytes, maxMaxRecordBytes))
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero fields of o.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.SyncInterval == 0 {
		o.SyncInterval = d.SyncInterval
	}
	if o.MaxRecordBytes == 0 {
		o.MaxRecordBytes = d.MaxRecordBytes
	}
	if o.SnapshotAfterBytes == 0 {
		o.SnapshotAfterBytes = d.SnapshotAfterBytes
	}
	if o.Logger == nil {
		o.Logger = d.Logger
	}
	return o
}
