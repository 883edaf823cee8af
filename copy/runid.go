package copy

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// NewRunID returns a new run id: the UTC start time to the second and
// eight random hex digits, as in 20250314T021500Z-9f86d081. Ids sort by
// start time, are unique without coordination (N processes started at
// once included), and need no quoting in a file name, a log line or a
// Prometheus label.
func NewRunID() string {
	var b [4]byte
	rand.Read(b[:]) // never fails (crypto/rand: it panics rather than return an error)
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}
