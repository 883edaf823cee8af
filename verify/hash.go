package verify

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"

	"github.com/zeebo/xxh3"
)

// Algorithm is the per-row hash a checksum sums.
//
// A checksum detects copy errors, not an adversary: a 128-bit
// non-cryptographic hash is enough, and xxh3-128 costs a small fraction of
// SHA-256 per row. The sum of per-row hashes in two 64-bit lanes stays
// order-independent and cannot cancel duplicated rows (XOR would). Two
// different multisets of rows give the same checksum only when both lanes'
// sums agree by chance: with hashes that behave as random, probability
// 2^-128 whatever the number of rows (the row count is compared too).
// SHA-256 remains available for those who want a cryptographic hash.
type Algorithm string

const (
	// XXH3 is xxh3-128 (the default).
	XXH3 Algorithm = "xxh3"
	// SHA256 is the first 128 bits of SHA-256.
	SHA256 Algorithm = "sha256"
)

// ParseAlgorithm turns a flag value into an Algorithm.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch a := Algorithm(s); a {
	case XXH3, SHA256:
		return a, nil
	}
	return "", fmt.Errorf("unknown --checksum %q (want xxh3 or sha256)", s)
}

// rowHash hashes rows: whole, or written in parts when a row spans
// writes. Each result is two 64-bit lanes.
type rowHash interface {
	whole(row []byte) (a, b uint64)
	part(p []byte)
	finish() (a, b uint64) // the parts written since the last finish
}

func newRowHash(alg Algorithm) rowHash {
	if alg == SHA256 {
		return &sha256Row{d: sha256.New()}
	}
	return &xxh3Row{h: xxh3.New()}
}

type xxh3Row struct{ h *xxh3.Hasher }

func (x *xxh3Row) whole(row []byte) (uint64, uint64) {
	s := xxh3.Hash128(row)
	return s.Lo, s.Hi
}

func (x *xxh3Row) part(p []byte) { x.h.Write(p) }

func (x *xxh3Row) finish() (uint64, uint64) {
	s := x.h.Sum128()
	x.h.Reset()
	return s.Lo, s.Hi
}

type sha256Row struct {
	d      hash.Hash
	digest [sha256.Size]byte
}

func (s *sha256Row) whole(row []byte) (uint64, uint64) {
	s.digest = sha256.Sum256(row)
	return binary.LittleEndian.Uint64(s.digest[0:8]), binary.LittleEndian.Uint64(s.digest[8:16])
}

func (s *sha256Row) part(p []byte) { s.d.Write(p) }

func (s *sha256Row) finish() (uint64, uint64) {
	s.d.Sum(s.digest[:0])
	s.d.Reset()
	return binary.LittleEndian.Uint64(s.digest[0:8]), binary.LittleEndian.Uint64(s.digest[8:16])
}
