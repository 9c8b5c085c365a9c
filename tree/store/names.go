package store

import (
	"fmt"
	"strconv"
	"strings"
)

// File kinds in the store's directory.
const (
	kindSnap = iota + 1
	kindLog
	kindTmp
)

const (
	snapPrefix = "snap-"
	logPrefix  = "log-"
	fileSuffix = ".ekv"
	tmpSuffix  = ".tmp"
)

func snapName(gen uint64) string { return fmt.Sprintf("%s%012d%s", snapPrefix, gen, fileSuffix) }
func logName(gen uint64) string  { return fmt.Sprintf("%s%012d%s", logPrefix, gen, fileSuffix) }
func tmpName(gen uint64) string  { return snapName(gen) + tmpSuffix }

// parseName recognises the store's file names; ok is false for any other
// file, which the store leaves alone.
func parseName(name string) (kind int, gen uint64, ok bool) {
	switch {
	case strings.HasPrefix(name, snapPrefix) && strings.HasSuffix(name, fileSuffix+tmpSuffix):
		kind, name = kindTmp, strings.TrimSuffix(strings.TrimPrefix(name, snapPrefix), fileSuffix+tmpSuffix)
	case strings.HasPrefix(name, snapPrefix) && strings.HasSuffix(name, fileSuffix):
		kind, name = kindSnap, strings.TrimSuffix(strings.TrimPrefix(name, snapPrefix), fileSuffix)
	case strings.HasPrefix(name, logPrefix) && strings.HasSuffix(name, fileSuffix):
		kind, name = kindLog, strings.TrimSuffix(strings.TrimPrefix(name, logPrefix), fileSuffix)
	default:
		return 0, 0, false
	}
	if name == "" || strings.TrimLeft(name, "0123456789") != "" {
		return 0, 0, false
	}
	gen, err := strconv.ParseUint(name, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return kind, gen, true
}
