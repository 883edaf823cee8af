package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"lockstep/internal/redact"
)

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
	// Emptied are the partitioned tables (as SQL writes them) the unit
	// truncated on the destination without copying their partitions.
	Emptied []string
	Error   string
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
		started, dest_xid, shape, error, emptied)
	VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, $6::text[], $7::text,
		$8::text, $9::text, $10::int, $11::bigint, $12::bigint, $13::text, $14::text[], $15::text,
		$16::bigint * interval '1 microsecond', $17::bigint * interval '1 microsecond', $18::bigint * interval '1 microsecond',
		$19::bigint * interval '1 microsecond', $20::bigint * interval '1 microsecond', $21::bigint * interval '1 microsecond',
		$22::timestamptz, $23::bigint, $24::text, $25::text, $26::text[])
	RETURNING id`
}

func (l *Ledger) insertArgs(a *Attempt) []any {
	us := func(d time.Duration) int64 { return d.Microseconds() }
	var members, sums, emptied any
	if len(a.Members) > 0 {
		members, sums = a.Members, a.MemberChecksums
	}
	if len(a.Emptied) > 0 {
		emptied = a.Emptied
	}
	return []any{l.run, a.Key, a.Unit, a.Source, a.Dest, members, nullable(a.KeyRange),
		a.Outcome, a.Verify, a.Attempt, a.Rows, a.Bytes, nullable(a.Checksum), sums, nullable(a.Format),
		us(a.DestLockWait), us(a.SourceLockWait), us(a.SourceLockHeld), us(a.WritesBlocked), us(a.Copy), us(a.VerifyTime),
		nullable(a.Started), nullable(a.DestXID), a.Shape, nullable(redact.Passwords(a.Error, l.cfg.Secrets...)), emptied}
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

// Recorded returns the id of the success row of the destination
// transaction xid (0: none), read through q (a new connection, when a
// COMMIT's outcome was lost): the row is there exactly when that
// transaction committed.
func (l *Ledger) Recorded(ctx context.Context, q Querier, unitKey string, xid int64) (int64, error) {
	var id int64
	err := q.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM `+l.schema+`.units
		WHERE unit_key = $1 AND run_id = $2 AND dest_xid = $3 AND outcome = 'ok'`, unitKey, l.run, xid).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("ledger: %w", err)
	}
	return id, nil
}
