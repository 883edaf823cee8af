package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"lockstep/internal/redact"
)

// Querier is what reads need: a *pgx.Conn or a pgx.Tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Config is one run's ledger.
type Config struct {
	Schema string // DefaultSchema when empty
	// Redo trusts no record made before this run started (units are
	// copied again; a unit another process copies during this run is not).
	Redo bool
	// Since, when positive, trusts only records this young.
	Since time.Duration
	// Options are the run's selection and options, passwords already
	// redacted, stored with the run.
	Options map[string]any
	// Secrets are removed from every error text stored.
	Secrets []string
	Logger  *slog.Logger
}

// RunInfo is what the run tells the ledger when it starts.
type RunInfo struct {
	Units  int    // units planned
	Verify string // the run's verification: checksum, count or none
}

// Ledger is one run's record in the destination database. Its methods are
// safe for concurrent use; they share one connection, which also holds the
// run's claims.
type Ledger struct {
	cfg    Config
	schema string // quoted
	log    *slog.Logger

	mu        sync.Mutex
	conn      *pgx.Conn
	reconnect func(context.Context) (*pgx.Conn, error)
	run       int64
	cutoff    *time.Time // records finished before it are not trusted; nil: all are
	verify    string
}

// New is a ledger for one run; Open makes it ready.
func New(cfg Config) *Ledger {
	if cfg.Schema == "" {
		cfg.Schema = DefaultSchema
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Ledger{cfg: cfg, schema: quote(cfg.Schema), log: cfg.Logger}
}

// Schema is the ledger's schema, unquoted.
func (l *Ledger) Schema() string { return l.cfg.Schema }

// RunID is the run's id in the ledger (0 before Open).
func (l *Ledger) RunID() int64 { return l.run }

// LockstepVersion is this binary's module version and VCS revision, as the
// Go toolchain recorded them.
func LockstepVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " " + rev + dirty
	}
	return v
}

// Open sets the ledger up on conn (creating or upgrading it), records the
// run and takes the run's own advisory lock, by which status tells a
// running run from a dead one. The ledger keeps conn for the run (its
// claims live there) and, if it is lost, opens another with reconnect. On
// error conn is closed.
func (l *Ledger) Open(ctx context.Context, conn *pgx.Conn, reconnect func(context.Context) (*pgx.Conn, error), info RunInfo) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conn, l.reconnect, l.verify = conn, reconnect, info.Verify
	if err := l.start(ctx, info); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		l.conn = nil
		return err
	}
	return nil
}

func (l *Ledger) start(ctx context.Context, info RunInfo) error {
	if err := setup(ctx, l.conn, l.cfg.Schema, Version, LockstepVersion()); err != nil {
		return err
	}
	opts, err := json.Marshal(l.cfg.Options)
	if err != nil {
		return fmt.Errorf("destination: ledger: options: %w", err)
	}
	host, _ := os.Hostname()
	var since any
	if l.cfg.Since > 0 {
		since = l.cfg.Since.Microseconds()
	}
	err = l.conn.QueryRow(ctx, `INSERT INTO `+l.schema+`.runs (host, pid, lockstep_version, options, units, trust_since)
		VALUES ($1, $2, $3, $4::jsonb, $5, CASE WHEN $6 THEN pg_catalog.now() ELSE pg_catalog.now() - $7::bigint * interval '1 microsecond' END)
		RETURNING id, trust_since`,
		host, os.Getpid(), LockstepVersion(), string(opts), info.Units, l.cfg.Redo, since).Scan(&l.run, &l.cutoff)
	if err != nil {
		if isPrivilege(err) {
			return &PrivilegeError{Schema: l.cfg.Schema, Err: err, What: "the role may not write to it (GRANT USAGE ON SCHEMA, and SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA)"}
		}
		return fmt.Errorf("destination: ledger: record the run: %w", err)
	}
	return l.holdRun(ctx, l.conn)
}

// holdRun readies a ledger connection: it takes the run's own lock; pins
// READ COMMITTED, so that the record read after a claim is read in a
// snapshot taken after the claim whatever the database's default; and
// lifts idle_session_timeout (14+), which would end the session, and the
// claims on it, while a long unit runs.
func (l *Ledger) holdRun(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `SELECT pg_catalog.pg_advisory_lock($1, $2),
		pg_catalog.set_config('default_transaction_isolation', 'read committed', false),
		CASE WHEN pg_catalog.current_setting('server_version_num')::int >= 140000
		THEN pg_catalog.set_config('idle_session_timeout', '0', false) END`,
		runLockKey(l.cfg.Schema), runLockID(l.run))
	if err != nil {
		return fmt.Errorf("destination: ledger: %w", err)
	}
	return nil
}

// runLockKey and runLockID make the advisory lock (two int4 keys) that a
// run holds on its ledger connection while it lives.
func runLockKey(schema string) int32 { return key31(schema, "run") }
func runLockID(run int64) int32      { return int32(run & 0x7fffffff) }

// ClaimKey is the advisory lock key (one bigint) of a unit's claim.
func ClaimKey(schema, unitKey string) int64 { return key64(schema, "claim", unitKey) }

// do runs f on the ledger's connection, opening another first if it was
// lost. A connection that fails with anything but an SQL error is closed
// (and the claims on it with it); f is then run once more on a new one:
// every f here may run twice (a claim lost with its connection is taken
// again, a failure recorded twice says the same thing twice).
func (l *Ledger) do(ctx context.Context, f func(*pgx.Conn) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	for try := 0; try < 2; try++ {
		if err = l.ensureConn(ctx); err != nil {
			return err
		}
		err = f(l.conn)
		if err == nil || !l.lost(ctx, err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// lost tells whether err ended the ledger's connection, closing it if it
// is not closed yet. Call with l.mu held.
func (l *Ledger) lost(ctx context.Context, err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Severity != "FATAL" && pgErr.Severity != "PANIC" {
		return l.conn.IsClosed()
	}
	if !l.conn.IsClosed() {
		l.conn.Close(context.WithoutCancel(ctx))
	}
	return true
}

// ensureConn opens a new ledger connection if it was lost, and takes the
// run's lock on it again. Call with l.mu held.
func (l *Ledger) ensureConn(ctx context.Context) error {
	if l.conn != nil && !l.conn.IsClosed() {
		return nil
	}
	if l.reconnect == nil {
		return errors.New("destination: ledger: not open")
	}
	conn, err := l.reconnect(ctx)
	if err != nil {
		return fmt.Errorf("destination: ledger: reconnect: %w", err)
	}
	l.log.Warn("the ledger's connection was lost and opened again; claims it held were released", "run", l.run)
	l.conn = conn
	if err := l.holdRun(ctx, conn); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "UPDATE "+l.schema+".runs SET backend_pid = pg_catalog.pg_backend_pid() WHERE id = $1", l.run); err != nil {
		return fmt.Errorf("destination: ledger: %w", err)
	}
	return nil
}

// Record is a unit's latest attempt in the ledger.
type Record struct {
	ID       int64     `json:"id"`
	Run      int64     `json:"run"`
	Host     string    `json:"host"`
	Outcome  string    `json:"outcome"`
	Verify   string    `json:"verify"`
	Finished time.Time `json:"finished"`
	Shape    string    `json:"-"`
	Checksum string    `json:"checksum,omitempty"`
	Error    string    `json:"error,omitempty"`
}

const recordCols = `u.id, u.run_id, r.host, u.outcome, u.verify, u.finished, u.shape, coalesce(u.checksum, ''), coalesce(u.error, '')`

func scanRecord(row pgx.Row) (*Record, error) {
	var r Record
	err := row.Scan(&r.ID, &r.Run, &r.Host, &r.Outcome, &r.Verify, &r.Finished, &r.Shape, &r.Checksum, &r.Error)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// latestSQL reads the latest attempt of each of the units keyed $1, one
// index probe per unit.
func latestSQL(schema string) string {
	return `SELECT k.key, ` + recordCols + `
		FROM pg_catalog.unnest($1::text[]) AS k(key)
		CROSS JOIN LATERAL (SELECT * FROM ` + schema + `.units u WHERE u.unit_key = k.key ORDER BY u.id DESC LIMIT 1) u
		JOIN ` + schema + `.runs r ON r.id = u.run_id`
}

// Latest reads the latest attempt of each unit, in keys' order (nil for a
// unit never attempted).
func (l *Ledger) Latest(ctx context.Context, keys []string) ([]*Record, error) {
	out := make([]*Record, len(keys))
	err := l.do(ctx, func(c *pgx.Conn) error {
		var err error
		out, err = latest(ctx, c, l.schema, keys)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("destination: ledger: read earlier runs: %w", err)
	}
	return out, nil
}

func latest(ctx context.Context, q Querier, schema string, keys []string) ([]*Record, error) {
	out := make([]*Record, len(keys))
	at := make(map[string]int, len(keys))
	for i, k := range keys {
		at[k] = i
	}
	rows, err := q.Query(ctx, latestSQL(schema), keys)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var key string
		var r Record
		if err := rows.Scan(&key, &r.ID, &r.Run, &r.Host, &r.Outcome, &r.Verify, &r.Finished, &r.Shape, &r.Checksum, &r.Error); err != nil {
			return nil, err
		}
		out[at[key]] = &r
	}
	return out, rows.Err()
}

// Want is what a record must show for this run to trust it.
type Want struct {
	Shape string // the unit's columns on both sides now
	// After is the ledger id of the latest copy of each unit this one must
	// follow: a copy of those truncates this one's tables, so this one's
	// record counts only if it is newer.
	After []int64
}

// strength orders verification modes: a record verified at least as
// strongly as this run would verify is trusted.
func strength(mode string) int {
	switch mode {
	case "checksum":
		return 2
	case "count":
		return 1
	}
	return 0
}

// Trusted tells whether rec is a copy this run may skip the unit for: a
// success, verified at least as strongly as this run verifies, of the
// unit's current shape, within --since (and made during this run with
// --redo), and newer than the copies of the units it must follow. The
// reason says why not.
func (l *Ledger) Trusted(rec *Record, want Want) (bool, string) {
	return trusted(rec, want, l.verify, l.cutoff)
}

func trusted(rec *Record, want Want, verify string, cutoff *time.Time) (bool, string) {
	switch {
	case rec == nil:
		return false, "never copied"
	case rec.Outcome != OutcomeOK:
		return false, "its latest attempt " + rec.Outcome
	case strength(rec.Verify) < strength(verify):
		return false, fmt.Sprintf("copied with --verify %s, this run verifies by %s", rec.Verify, verify)
	case rec.Shape != want.Shape:
		return false, "its columns changed since it was copied"
	case cutoff != nil && rec.Finished.Before(*cutoff):
		return false, "copied before " + cutoff.UTC().Format(time.RFC3339)
	}
	for _, a := range want.After {
		if a > rec.ID {
			return false, "a unit it must follow was copied again after it"
		}
	}
	return true, ""
}

// Claim claims a unit for this process: a session-level advisory lock on
// the ledger's connection. It reports false when another live process
// holds it. Once claimed, the unit's latest record is read again (in a
// statement of its own, so after the claim: a copy another process
// committed before giving its claim up is seen) and returned.
func (l *Ledger) Claim(ctx context.Context, unitKey string) (bool, *Record, error) {
	var got bool
	var rec *Record
	err := l.do(ctx, func(c *pgx.Conn) error {
		b := &pgx.Batch{}
		b.Queue("SELECT pg_catalog.pg_try_advisory_lock($1)", ClaimKey(l.cfg.Schema, unitKey))
		b.Queue(latestSQL(l.schema), []string{unitKey})
		br := c.SendBatch(ctx, b)
		defer br.Close()
		if err := br.QueryRow().Scan(&got); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var key string
			var r Record
			if err := rows.Scan(&key, &r.ID, &r.Run, &r.Host, &r.Outcome, &r.Verify, &r.Finished, &r.Shape, &r.Checksum, &r.Error); err != nil {
				return err
			}
			rec = &r
		}
		return rows.Err()
	})
	if err != nil {
		if got {
			l.Release(ctx, unitKey)
		}
		return false, nil, fmt.Errorf("destination: ledger: claim: %w", err)
	}
	return got, rec, nil
}

// Release gives a claim up. It cannot fail in a way that matters: a claim
// that cannot be released goes with the ledger's connection.
func (l *Ledger) Release(ctx context.Context, unitKey string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := l.do(rctx, func(c *pgx.Conn) error {
		_, err := c.Exec(rctx, "SELECT pg_catalog.pg_advisory_unlock($1)", ClaimKey(l.cfg.Schema, unitKey))
		return err
	})
	if err != nil {
		l.log.Warn("ledger: releasing a claim failed; closing the ledger's connection, which releases it", "error", err)
		l.mu.Lock()
		if l.conn != nil {
			l.conn.Close(rctx)
		}
		l.mu.Unlock()
	}
}

// Outcomes of a unit attempt.
const (
	OutcomeOK          = "ok"
	OutcomeFailed      = "failed"
	OutcomeMismatch    = "mismatch"
	OutcomeInterrupted = "interrupted"
	// OutcomeRetried: a lock was not granted in time; the unit was tried
	// again in the same run.
	OutcomeRetried = "retried"
)

// Attempt is one pass of the unit protocol over a unit, as recorded.
type Attempt struct {
	Key      string   // the unit's identity across runs
	Unit     string   // its name in messages
	Source   string   // source relation (the first member's, for a group)
	Dest     string   // destination relation (likewise)
	Members  []string // a group's members, in copy order; nil for one table
	KeyRange string   // a key range, when the unit is one
	Outcome  string
	Verify   string
	Attempt  int // the pass's number within the run
	Rows     int64
	Bytes    int64
	Checksum string
	// MemberChecksums are a group's members' checksums, in Members' order.
	MemberChecksums []string
	Format          string
	DestLockWait    time.Duration
	SourceLockWait  time.Duration
	SourceLockHeld  time.Duration
	WritesBlocked   time.Duration
	Copy            time.Duration
	VerifyTime      time.Duration
	Started         time.Time
	DestXID         int64 // the destination transaction (0: none)
	Shape           string
	Error           string
}

func nullable[T comparable](v T) any {
	var zero T
	if v == zero {
		return nil
	}
	return v
}

// insert is the statement and arguments that record a. Every parameter
// is cast, so that its type needs no description round trip and its value
// can be sent as text.
func (l *Ledger) insert(a *Attempt) (string, []any) {
	return l.insertSQL(), l.insertArgs(a)
}

func (l *Ledger) insertSQL() string {
	return `INSERT INTO ` + l.schema + `.units (run_id, unit_key, unit, source_relation, dest_relation, members, key_range,
		outcome, verify, attempt, rows, bytes, checksum, member_checksums, format,
		dest_lock_wait, source_lock_wait, source_lock_held, writes_blocked, copy_time, verify_time,
		started, dest_xid, shape, error)
	VALUES ($1::bigint, $2::text, $3::text, $4::text, $5::text, $6::text[], $7::text,
		$8::text, $9::text, $10::int, $11::bigint, $12::bigint, $13::text, $14::text[], $15::text,
		$16::bigint * interval '1 microsecond', $17::bigint * interval '1 microsecond', $18::bigint * interval '1 microsecond',
		$19::bigint * interval '1 microsecond', $20::bigint * interval '1 microsecond', $21::bigint * interval '1 microsecond',
		$22::timestamptz, $23::bigint, $24::text, $25::text)
	RETURNING id`
}

func (l *Ledger) insertArgs(a *Attempt) []any {
	us := func(d time.Duration) int64 { return d.Microseconds() }
	var members, sums any
	if len(a.Members) > 0 {
		members, sums = a.Members, a.MemberChecksums
	}
	return []any{l.run, a.Key, a.Unit, a.Source, a.Dest, members, nullable(a.KeyRange),
		a.Outcome, a.Verify, a.Attempt, a.Rows, a.Bytes, nullable(a.Checksum), sums, nullable(a.Format),
		us(a.DestLockWait), us(a.SourceLockWait), us(a.SourceLockHeld), us(a.WritesBlocked), us(a.Copy), us(a.VerifyTime),
		nullable(a.Started), nullable(a.DestXID), a.Shape, nullable(redact.Passwords(a.Error, l.cfg.Secrets...))}
}

// Success is the statement (returning the row's id) and arguments that
// record a successful attempt; the caller runs it inside the unit's
// destination transaction, right before its COMMIT. The statement is
// SuccessSQL, the same for every unit of the run, so a caller may prepare
// it once per connection.
func (l *Ledger) Success(a *Attempt) (string, []any) {
	a.Outcome = OutcomeOK
	return l.insert(a)
}

// SuccessSQL is the statement Success returns.
func (l *Ledger) SuccessSQL() string { return l.insertSQL() }

// Failure records a failed attempt in its own transaction on the ledger's
// connection, after the unit's transactions were rolled back; it is
// written even when ctx was cancelled (an interrupted unit says so).
func (l *Ledger) Failure(ctx context.Context, a *Attempt) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	sql, args := l.insert(a)
	err := l.do(fctx, func(c *pgx.Conn) error {
		_, err := c.Exec(fctx, sql, args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("destination: ledger: record the failure of %s: %w", a.Unit, err)
	}
	return nil
}

// Recorded tells whether the success row of the destination transaction
// xid is in the ledger, read through q (a new connection, when a COMMIT's
// outcome was lost): it is there exactly when that transaction committed.
func (l *Ledger) Recorded(ctx context.Context, q Querier, unitKey string, xid int64) (bool, error) {
	var found bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT FROM `+l.schema+`.units
		WHERE unit_key = $1 AND run_id = $2 AND dest_xid = $3 AND outcome = 'ok')`, unitKey, l.run, xid).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("ledger: %w", err)
	}
	return found, nil
}

// Close records the run's outcome and how many units it skipped, gives the
// run's lock and every claim up, and closes the ledger's connection.
func (l *Ledger) Close(ctx context.Context, outcome string, skipped int) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := l.do(cctx, func(c *pgx.Conn) error {
		_, err := c.Exec(cctx, "UPDATE "+l.schema+".runs SET finished = pg_catalog.now(), outcome = $2, skipped = $3 WHERE id = $1",
			l.run, outcome, skipped)
		return err
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		l.conn.Close(cctx)
		l.conn = nil
	}
	l.reconnect = nil
	if err != nil {
		return fmt.Errorf("destination: ledger: record the run's outcome: %w", err)
	}
	return nil
}

// RecordSkipped records, at the start, how many units the run skipped, so
// that a run that dies still shows them.
func (l *Ledger) RecordSkipped(ctx context.Context, skipped int) error {
	return l.do(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, "UPDATE "+l.schema+".runs SET skipped = $2 WHERE id = $1", l.run, skipped)
		return err
	})
}
