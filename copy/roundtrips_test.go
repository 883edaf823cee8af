package copy_test

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"lockstep/copy"
	"lockstep/internal/pgtest"
	"lockstep/ledger"
)

// tripCounter counts round trips on the connections of a run: the
// requests that wait for the server's answer, i.e. each simple-protocol
// Query message ('Q') and each extended-protocol Sync ('S'). COPY data,
// the startup and authentication are not counted.
type tripCounter struct {
	mu    sync.Mutex
	trips map[string]int
}

type countedConn struct {
	net.Conn
	c       *tripCounter
	side    string
	started bool   // the startup message (which has no type byte) is past
	hdr     []byte // a message header split across writes
	skip    int    // bytes of the current message still to pass over
}

func (c *countedConn) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		if c.skip > 0 {
			n := min(c.skip, len(rest))
			c.skip -= n
			rest = rest[n:]
			continue
		}
		need := 5
		if !c.started {
			need = 4
		}
		take := min(need-len(c.hdr), len(rest))
		c.hdr = append(c.hdr, rest[:take]...)
		rest = rest[take:]
		if len(c.hdr) < need {
			break
		}
		if !c.started {
			c.started = true
			c.skip = int(binary.BigEndian.Uint32(c.hdr)) - 4
		} else {
			if c.hdr[0] == 'Q' || c.hdr[0] == 'S' {
				c.c.mu.Lock()
				c.c.trips[c.side]++
				c.c.mu.Unlock()
			}
			c.skip = int(binary.BigEndian.Uint32(c.hdr[1:])) - 4
		}
		c.hdr = c.hdr[:0]
	}
	return c.Conn.Write(p)
}

// copyTrips copies n small tables, whose id columns are of type id, on one
// worker, with a ledger or without, and returns the round trips on each
// side and on the ledger's own connection.
func copyTrips(t *testing.T, n int, id string, withLedger bool) (src, dst, led int) {
	t.Helper()
	s, d := pgtest.Get(t).NewDBs(t)
	var schema, rows strings.Builder
	var names []string
	for i := range n {
		fmt.Fprintf(&schema, "CREATE TABLE rt%d (id %s PRIMARY KEY, v text);", i, id)
		fmt.Fprintf(&rows, "INSERT INTO rt%d SELECT g, 'v' || g FROM generate_series(1, 100) g;", i)
		names = append(names, fmt.Sprintf("rt%d", i))
	}
	mustExec(t, s, schema.String()+rows.String())
	mustExec(t, d, schema.String())
	o := opts(s, d, names...)
	if withLedger {
		o.Ledger = ledger.New(ledger.Config{})
	}
	tc := &tripCounter{trips: map[string]int{}}
	copy.SetConnWrapper(&o, func(side string, c net.Conn) net.Conn { return &countedConn{Conn: c, c: tc, side: side} })
	mustCopy(t, o)
	return tc.trips["source"], tc.trips["destination"], tc.trips["ledger"]
}

// The round trips one unit costs on its lock-holding connections, measured
// as the difference between runs of 1 and 3 units on one worker (planning
// and connecting cost the same in both). The ledger's success row rides in
// the destination's COMMIT round trip; its claims cost round trips on the
// ledger's own connection only, none of them while a lock is held.
func TestRoundTripsPerUnit(t *testing.T) {
	t.Parallel()
	for _, withLedger := range []bool{false, true} {
		s1, d1, l1 := copyTrips(t, 1, "int", withLedger)
		s3, d3, l3 := copyTrips(t, 3, "int", withLedger)
		src, dst, led := (s3-s1)/2, (d3-d1)/2, (l3-l1)/2
		t.Logf("ledger %v: round trips per unit: source %d, destination %d, ledger %d", withLedger, src, dst, led)
		if src > 4 || dst > 4 {
			t.Errorf("ledger %v: round trips per unit: source %d, destination %d; want at most 4 each", withLedger, src, dst)
		}
		if led > 2 {
			t.Errorf("round trips per unit on the ledger's connection: %d, want at most 2 (claim, release)", led)
		}
	}
}

// A unit whose table a sequence feeds costs one more round trip on the
// destination (the setval), none more on the source (its value is read in
// the round trip that takes the lock).
func TestRoundTripsPerUnitWithSequence(t *testing.T) {
	t.Parallel()
	s1, d1, _ := copyTrips(t, 1, "serial", false)
	s3, d3, _ := copyTrips(t, 3, "serial", false)
	src, dst := (s3-s1)/2, (d3-d1)/2
	t.Logf("round trips per unit with a sequence: source %d, destination %d", src, dst)
	if src > 4 || dst > 5 {
		t.Errorf("round trips per unit with a sequence: source %d, destination %d; want at most 4 and 5", src, dst)
	}
}
