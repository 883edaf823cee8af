package lock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"lockstep/internal/redact"
)

// Mode is a table lock mode.
type Mode string

const (
	// AccessExclusive blocks every other access; taken on the destination.
	AccessExclusive Mode = "ACCESS EXCLUSIVE"
	// Exclusive blocks writers but lets plain reads go on; taken on the source.
	Exclusive Mode = "EXCLUSIVE"
)

// Blocker is a backend that held or queued for a conflicting lock.
type Blocker struct {
	PID         int
	User        string
	Application string
	State       string
	XactAge     time.Duration
	Query       string // its query text, on one line, passwords removed, at most MaxQuery characters
}

// MaxQuery is how much of a blocker's query text is kept.
const MaxQuery = 120

// queryText makes another session's query fit for errors and reports: it
// may hold passwords (ALTER ROLE ... PASSWORD, a dblink connection string),
// which are removed before the text is cut, so that a cut cannot hide a
// literal from the redaction.
func queryText(q string) string {
	q = strings.Join(strings.Fields(redact.Passwords(q)), " ")
	if r := []rune(q); len(r) > MaxQuery {
		q = string(r[:MaxQuery-3]) + "..."
	}
	return q
}

func (b Blocker) String() string {
	return fmt.Sprintf("pid %d (user %s, application %q, %s, transaction open %s): %s",
		b.PID, b.User, b.Application, b.State, b.XactAge.Round(time.Millisecond), queryText(b.Query))
}

// TimeoutError says a lock was not granted within the lock timeout. The
// attempt was abandoned (the caller rolls its transaction back), so it is
// retryable after a backoff.
type TimeoutError struct {
	Side     string
	Table    string
	Mode     Mode
	Timeout  time.Duration
	Blockers []Blocker
}

func (e *TimeoutError) Error() string {
	msg := fmt.Sprintf("%s: %s lock on %s not granted within %s", e.Side, e.Mode, e.Table, e.Timeout)
	if len(e.Blockers) == 0 {
		return msg + " (the blocking backend had gone by the time it was looked up)"
	}
	parts := make([]string, len(e.Blockers))
	for i, b := range e.Blockers {
		parts[i] = b.String()
	}
	return msg + "; blocked by " + strings.Join(parts, "; ")
}

// Request is one lock attempt.
type Request struct {
	Side    string // "source" or "destination", for messages
	Table   pgx.Identifier
	Only    bool // lock the table alone, not inheritance children
	Mode    Mode
	Timeout time.Duration
	// Watch opens a second connection to the same server to look up
	// blockers while the attempt waits. Nil: no blocker report.
	Watch func(ctx context.Context) (*pgx.Conn, error)
}

// SQL is the statements of one attempt, to run inside an open transaction.
func (r Request) SQL() string {
	only := ""
	if r.Only {
		only = "ONLY "
	}
	return fmt.Sprintf("SET LOCAL lock_timeout = %d; LOCK TABLE %s%s IN %s MODE",
		r.Timeout.Milliseconds(), only, r.Table.Sanitize(), r.Mode)
}

// Acquire makes one attempt to lock r.Table on conn, which must be inside a
// transaction that has run no query yet when a snapshot taken after the lock
// matters. It returns how long the attempt waited. On a lock timeout it
// returns a *TimeoutError naming the blockers; the transaction is then
// aborted and must be rolled back.
func Acquire(ctx context.Context, conn *pgx.Conn, r Request) (time.Duration, error) {
	start := time.Now()
	pid := conn.PgConn().PID()
	watchCtx, stopWatch := context.WithCancel(ctx)
	blockers := make(chan []Blocker, 1)
	go func() { blockers <- watch(watchCtx, r, pid) }()

	_, err := conn.PgConn().Exec(ctx, r.SQL()).ReadAll()
	stopWatch()
	seen := <-blockers
	wait := time.Since(start)

	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" {
		return wait, &TimeoutError{Side: r.Side, Table: r.Table.Sanitize(), Mode: r.Mode, Timeout: r.Timeout, Blockers: seen}
	}
	if err != nil {
		return wait, fmt.Errorf("%s: lock %s: %w", r.Side, r.Table.Sanitize(), err)
	}
	return wait, nil
}

// watch waits half the timeout; if the attempt is still waiting then, it
// connects and looks up pg_blocking_pids(pid) until the attempt ends,
// returning the last non-empty answer. An attempt granted quickly costs no
// connection.
func watch(ctx context.Context, r Request, pid uint32) []Blocker {
	if r.Watch == nil {
		return nil
	}
	first := r.Timeout / 2
	every := max(r.Timeout/5, 20*time.Millisecond)
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(first):
	}
	conn, err := r.Watch(ctx)
	if err != nil {
		return nil
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var last []Blocker
	for {
		if b, err := Blockers(ctx, conn, pid); err == nil && len(b) > 0 {
			last = b
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(every):
		}
	}
}

// Blockers returns the backends that block pid's lock request.
func Blockers(ctx context.Context, conn *pgx.Conn, pid uint32) ([]Blocker, error) {
	rows, err := conn.Query(ctx, `
		SELECT a.pid, COALESCE(a.usename, ''), COALESCE(a.application_name, ''), COALESCE(a.state, ''),
		       COALESCE(EXTRACT(epoch FROM pg_catalog.now() - a.xact_start), 0)::float8,
		       COALESCE(a.query, '')
		FROM pg_catalog.pg_stat_activity a
		WHERE a.pid = ANY (pg_catalog.pg_blocking_pids($1))
		ORDER BY a.xact_start NULLS LAST, a.pid`, int64(pid))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Blocker, error) {
		var b Blocker
		var age float64
		err := r.Scan(&b.PID, &b.User, &b.Application, &b.State, &age, &b.Query)
		b.XactAge = time.Duration(age * float64(time.Second))
		b.Query = queryText(b.Query)
		return b, err
	})
}

// Backoff is the pause before retry attempt n (1, 2, ...): base doubled per
// attempt up to max, with full jitter over its upper half so that several
// workers do not retry in step.
func Backoff(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + rand.N(d/2+1)
}

// Sleep pauses for d or until ctx is done.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
