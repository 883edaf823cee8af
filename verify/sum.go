package verify

import (
	"fmt"
)

// Sum is the count and order-independent checksum of a set of rows.
type Sum struct {
	Rows int64
	A, B uint64 // sums (mod 2^64) of the two 64-bit lanes of each row's hash
}

// addRow folds one row's hash into the sum.
func (s *Sum) addRow(a, b uint64) {
	s.Rows++
	s.A += a
	s.B += b
}

// Checksum renders the 128-bit checksum as 32 hex digits.
func (s Sum) Checksum() string { return fmt.Sprintf("%016x%016x", s.A, s.B) }

func (s Sum) String() string { return fmt.Sprintf("%d rows, checksum %s", s.Rows, s.Checksum()) }

// Mode says how much a unit is verified.
type Mode string

const (
	// Checksum compares row counts and checksums (the default).
	Checksum Mode = "checksum"
	// Count compares row counts only.
	Count Mode = "count"
	// None skips verification beyond the rows the destination reported loading.
	None Mode = "none"
)

// ParseMode turns a flag value into a Mode.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Checksum, Count, None:
		return m, nil
	}
	return "", fmt.Errorf("unknown verify mode %q (want checksum, count or none)", s)
}

// MismatchError says that the destination does not hold what the source
// holds. Not retryable as such: in a copy the unit was rolled back on both
// sides, and a re-run copies it again.
type MismatchError struct {
	Unit         string
	Mode         Mode
	Source, Dest Sum
}

func (e *MismatchError) Error() string {
	if e.Source.Rows != e.Dest.Rows {
		return fmt.Sprintf("%s: verification failed: source has %d rows, destination %d", e.Unit, e.Source.Rows, e.Dest.Rows)
	}
	return fmt.Sprintf("%s: verification failed: %d rows on both sides but checksums differ (source %s, destination %s)",
		e.Unit, e.Source.Rows, e.Source.Checksum(), e.Dest.Checksum())
}

// Compare returns a *MismatchError when dst differs from src under mode.
func Compare(unit string, mode Mode, src, dst Sum) error {
	switch {
	case mode == None:
		return nil
	case src.Rows != dst.Rows, mode == Checksum && (src.A != dst.A || src.B != dst.B):
		return &MismatchError{Unit: unit, Mode: mode, Source: src, Dest: dst}
	}
	return nil
}
