//go:build !linux

package pgtest

import "testing"

// Partition is a network link to a server that a test can cut; it needs
// Linux network namespaces, so elsewhere the test is skipped.
type Partition struct{}

// NewPartition skips the test: partitions need Linux.
func NewPartition(t testing.TB, s *Server) *Partition {
	t.Helper()
	t.Skip("pgtest: a network partition needs Linux network namespaces")
	return nil
}

// Proxy is never reached: NewPartition skipped the test.
func (p *Partition) Proxy(t testing.TB, dsn string) *Proxy { return nil }

// Cut is never reached: NewPartition skipped the test.
func (p *Partition) Cut() error { return nil }

// Heal is never reached: NewPartition skipped the test.
func (p *Partition) Heal() error { return nil }
