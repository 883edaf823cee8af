// Package verify owns how lockstep proves that a unit's destination holds
// exactly what the source held: the row hash, the order-independent checksum
// over a COPY stream, and the comparison of two sides' figures.
//
// The checksum of a side is a row count plus two 64-bit lanes, each the sum
// (mod 2^64) of one half of a per-row 128-bit hash (xxh3-128 by default,
// or the first 128 bits of SHA-256; see hash.go). A sum, unlike XOR, does not
// cancel duplicated rows, and it does not depend on row order. Rows are the
// rows of a COPY stream (text or binary) produced with pinned session settings
// over one column list, so the same data yields the same bytes on either
// server. The destination's figure is always computed from a read-back of what
// the destination stored, never from what was sent.
package verify
