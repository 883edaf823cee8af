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
	// Deadlock: the server found the wait in a deadlock with other
	// sessions and gave up this request (which released them); as
	// retryable as a timeout.
	Deadlock bool
}

func (e *TimeoutError) Error() string {
	msg := fmt.Sprintf("%s: %s lock on %s not granted within %s", e.Side, e.Mode, e.Table, e.Timeout)
	if e.Deadlock {
		msg = fmt.Sprintf("%s: %s lock on %s given up: the server found it in a deadlock with other sessions", e.Side, e.Mode, e.Table)
	}
	if len(e.Blockers) == 0 {
		return msg + " (the blocking backend had gone by the time it was looked up)"
	}
	parts := make([]string, len(e.Blockers))
	for i, b := range e.Blockers {
		parts[i] = b.String()
	}
	return msg + "; blocked by " + strings.Join(parts, "; ")
}

// Target is one table a request locks.
type Target struct {
	Table pgx.Identifier
	Only  bool // the table alone, not its inheritance children
}

// Request is one lock attempt on one or more tables, locked in the order
// given by one LOCK statement.
type Request struct {
	Side    string // "source" or "destination", for messages
	Tables  []Target
	Mode    Mode
	Timeout time.Duration
	// Before and After are statements sent in the same message as the
	// LOCK, so that the whole step costs one round trip: Before runs first
	// (BEGIN and settings), After once the lock is granted (TRUNCATE, a
	// SELECT whose answer the caller wants).
	Before, After []string
	// Watch opens a second connection to the same server to look up
	// blockers while the attempt waits. Nil: no blocker report.
	Watch func(ctx context.Context) (*pgx.Conn, error)
}

// names is the tables as LOCK lists them.
func (r Request) names() string {
	parts := make([]string, len(r.Tables))
	for i, t := range r.Tables {
		parts[i] = t.Table.Sanitize()
		if t.Only {
			parts[i] = "ONLY " + parts[i]
		}
	}
	return strings.Join(parts, ", ")
}

// tableNames is the tables for messages.
func (r Request) tableNames() string {
	parts := make([]string, len(r.Tables))
	for i, t := range r.Tables {
		parts[i] = t.Table.Sanitize()
	}
	return strings.Join(parts, ", ")
}

// statements is the message an attempt sends, and the index of the LOCK
// in it. lock_timeout bounds each table's wait on its own, and a LOCK of
// several tables (or of a partitioned table, which locks every partition)
// waits for them one after another, holding those granted: the LOCK's
// statement_timeout bounds the whole wait by the same timeout, so that a
// table granted early is not held while the others wait for longer. It is
// lifted again right after the LOCK (the connection pins it to 0), while
// lock_timeout stays for the transaction's later lock waits.
func (r Request) statements() ([]string, int) {
	ms := r.Timeout.Milliseconds()
	s := append([]string{}, r.Before...)
	s = append(s, fmt.Sprintf("SET LOCAL lock_timeout = %d", ms), fmt.Sprintf("SET LOCAL statement_timeout = %d", ms),
		fmt.Sprintf("LOCK TABLE %s IN %s MODE", r.names(), r.Mode))
	at := len(s) - 1
	s = append(s, "SET LOCAL statement_timeout = 0")
	return append(s, r.After...), at
}

// SQL is the statements of one attempt, in one message.
func (r Request) SQL() string {
	s, _ := r.statements()
	return strings.Join(s, "; ")
}

// Grant is a granted lock: when the request was sent (from then on a queued
// request already blocks others), how long it waited, and the rows of the
// last After statement.
type Grant struct {
	Sent time.Time
	Wait time.Duration
	Rows [][][]byte
}

// Acquire makes one attempt to lock r.Tables on conn, sending r.Before,
// the LOCK and r.After as one message. The LOCK must come before any query
// of its transaction when a snapshot taken after the lock matters. On a
// lock timeout it returns a *TimeoutError naming the blockers; the
// transaction is then aborted and must be rolled back. A failing Before
// or After statement comes back as its error, wrapped with the side.
func Acquire(ctx context.Context, conn *pgx.Conn, r Request) (Grant, error) {
	g := Grant{Sent: time.Now()}
	pid := conn.PgConn().PID()
	watchCtx, stopWatch := context.WithCancel(ctx)
	blockers := make(chan []Blocker, 1)
	go func() { blockers <- watch(watchCtx, r, pid) }()

	stmts, at := r.statements()
	mrr := conn.PgConn().Exec(ctx, strings.Join(stmts, "; "))
	done := 0
	for mrr.NextResult() {
		res := mrr.ResultReader().Read()
		if res.Err != nil {
			break
		}
		if done == at {
			g.Wait = time.Since(g.Sent)
			stopWatch()
		}
		g.Rows = res.Rows
		done++
	}
	err := mrr.Close()
	stopWatch()
	seen := <-blockers
	if done <= at {
		g.Wait = time.Since(g.Sent)
	}

	var pgErr *pgconn.PgError
	// The LOCK's statement timeout: a cancellation once the timeout has
	// passed, of the LOCK or of the statement right after it, which the
	// timeout may reach as the LOCK is granted. (One sooner is someone's
	// pg_cancel_backend.)
	stmtTimeout := errors.As(err, &pgErr) && pgErr.Code == "57014" && (done == at || done == at+1) && time.Since(g.Sent) >= r.Timeout
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "55P03" && done == at, stmtTimeout:
		return g, &TimeoutError{Side: r.Side, Table: r.tableNames(), Mode: r.Mode, Timeout: r.Timeout, Blockers: seen}
	case errors.As(err, &pgErr) && pgErr.Code == "40P01" && done == at:
		return g, &TimeoutError{Side: r.Side, Table: r.tableNames(), Mode: r.Mode, Timeout: r.Timeout, Blockers: seen, Deadlock: true}
	case err == nil:
		return g, nil
	case done == at:
		return g, fmt.Errorf("%s: lock %s: %w", r.Side, r.tableNames(), err)
	case done < len(stmts) && done > at:
		return g, fmt.Errorf("%s: %s: %w", r.Side, firstWords(stmts[done]), err)
	}
	return g, fmt.Errorf("%s: %w", r.Side, err)
}

// firstWords names a statement in an error: its first words, or all of it
// when short.
func firstWords(sql string) string {
	if len(sql) > 200 {
		return sql[:197] + "..."
	}
	return sql
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
