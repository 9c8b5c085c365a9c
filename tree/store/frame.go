package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrCorrupt marks a record whose framing or checksum is wrong.
	ErrCorrupt = errors.New("store: corrupt record")
	// ErrTooLarge marks a record longer than Options.MaxRecordBytes, on
	// write or on read.
	ErrTooLarge = errors.New("store: record too large")
	// ErrEmptyRecord is returned for a zero-length record. Empty records
	// are refused so that a zero-filled tail (which a crash can leave
	// behind) never decodes as valid records: CRC-32C of nothing is 0.
	ErrEmptyRecord = errors.New("store: empty record")
	// ErrClosed is returned by every method of a closed Store.
	ErrClosed = errors.New("store: closed")
)

// DefaultMaxRecordBytes is the default bound on one record's payload.
const DefaultMaxRecordBytes = 16 << 20

// frameHeaderLen is the size of a record header: payload length, CRC-32C.
const frameHeaderLen = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// FrameError describes a record that cannot be decoded: what is wrong and
// where. It wraps ErrCorrupt or ErrTooLarge.
type FrameError struct {
	File   string // file name; "" when the bytes did not come from a file
	Record int    // 0-based index of the bad record within File
	Offset int64  // byte offset of the bad record's header within File
	Reason string // what is wrong, e.g. "checksum mismatch (…)"
	Err    error  // ErrCorrupt or ErrTooLarge
}

func (e *FrameError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("store: record %d at offset %d: %s", e.Record, e.Offset, e.Reason)
	}
	return fmt.Sprintf("store: %s: record %d at offset %d: %s", e.File, e.Record, e.Offset, e.Reason)
}

func (e *FrameError) Unwrap() error { return e.Err }

// appendFrame appends payload to dst as one framed record. The caller has
// checked the payload's length.
func appendFrame(dst, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(payload, castagnoli))
	return append(dst, payload...)
}

// frameLen is the framed size of a payload of n bytes.
func frameLen(n int) int64 { return int64(frameHeaderLen + n) }

// ReadFrame decodes the record at the start of b, with the default size
// limit DefaultMaxRecordBytes, and returns its payload and the bytes after
// it. The payload aliases b (its capacity is clipped, so appending to it
// never overwrites rest).
//
// ReadFrame returns io.EOF for an empty b. A bad record yields a
// *FrameError (Record 0, Offset 0) wrapping ErrCorrupt or ErrTooLarge, and
// rest == b. ReadFrame never panics.
func ReadFrame(b []byte) (payload, rest []byte, err error) {
	if len(b) == 0 {
		return nil, b, io.EOF
	}
	p, r, reason, kind := readFrame(b, DefaultMaxRecordBytes)
	if kind != nil {
		return nil, b, &FrameError{Reason: reason, Err: kind}
	}
	return p, r, nil
}

// readFrame decodes one record of a non-empty b. On failure kind is
// ErrCorrupt or ErrTooLarge and reason says what is wrong.
func readFrame(b []byte, maxLen int) (payload, rest []byte, reason string, kind error) {
	if len(b) < frameHeaderLen {
		return nil, b, fmt.Sprintf("torn record header (%d of %d bytes)", len(b), frameHeaderLen), ErrCorrupt
	}
	n := uint64(binary.LittleEndian.Uint32(b))
	switch {
	case n == 0:
		return nil, b, "zero-length record", ErrCorrupt
	case n > uint64(maxLen):
		return nil, b, fmt.Sprintf("record length %d exceeds limit %d", n, maxLen), ErrTooLarge
	case n > uint64(len(b)-frameHeaderLen):
		return nil, b, fmt.Sprintf("torn record (header says %d payload bytes, %d present)", n, len(b)-frameHeaderLen), ErrCorrupt
	}
	end := frameHeaderLen + int(n)
	p := b[frameHeaderLen:end:end]
	stored := binary.LittleEndian.Uint32(b[4:])
	if got := crc32.Checksum(p, castagnoli); got != stored {
		return nil, b, fmt.Sprintf("checksum mismatch (stored 0x%08x, computed 0x%08x)", stored, got), ErrCorrupt
	}
	return p, b[end:], "", nil
}

// decodeRecords splits data (the contents of file name) into records. It
// stops at the first bad record and returns the records before it, the
// offset where the good prefix ends, and a *FrameError describing the bad
// record (nil when every byte decoded).
func decodeRecords(name string, data []byte, maxLen int) (recs [][]byte, good int, ferr *FrameError) {
	rest := data
	for i := 0; len(rest) > 0; i++ {
		p, r, reason, kind := readFrame(rest, maxLen)
		if kind != nil {
			off := len(data) - len(rest)
			return recs, off, &FrameError{File: name, Record: i, Offset: int64(off), Reason: reason, Err: kind}
		}
		recs = append(recs, p)
		rest = r
	}
	return recs, len(data), nil
}
