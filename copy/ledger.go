package copy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"lockstep/ledger"
	"lockstep/partition"
)

// Ledger is the run's record in the destination database (package ledger;
// see its doc). A run without one (--ledger none) records nothing, resumes
// nothing and claims nothing.
type Ledger interface {
	// Open sets the ledger up on conn, which it keeps for the run (and
	// replaces through reconnect if lost), and records the run.
	Open(ctx context.Context, conn *pgx.Conn, reconnect func(context.Context) (*pgx.Conn, error), info ledger.RunInfo) error
	RunID() string
	// Latest reads the latest attempt of each unit (nil: none).
	Latest(ctx context.Context, keys []string) ([]*ledger.Record, error)
	// Emptied reads, for each unit given by its destination tables' OIDs,
	// the id of the latest copy that emptied a partitioned table they
	// belong to (0: none).
	Emptied(ctx context.Context, tables [][]uint32) ([]int64, error)
	// Trusted tells whether a record lets this run skip its unit, and if
	// not, why.
	Trusted(rec *ledger.Record, want ledger.Want) (bool, string)
	RecordSkipped(ctx context.Context, skipped int) error
	// Claim claims a unit for this process (false: another live process
	// holds it) and then reads its latest attempt again.
	Claim(ctx context.Context, unitKey string) (bool, *ledger.Record, error)
	Release(ctx context.Context, unitKey string)
	// Success is the statement, returning the new row's id, that records a
	// successful attempt inside the unit's destination transaction; it is
	// always SuccessSQL, which workers prepare once per connection.
	Success(a *ledger.Attempt) (sql string, args []any)
	SuccessSQL() string
	// Failure records a failed attempt in its own transaction.
	Failure(ctx context.Context, a *ledger.Attempt) error
	// Recorded returns, read through q, the id of the success row of
	// destination transaction xid (0: it is not in the ledger).
	Recorded(ctx context.Context, q ledger.Querier, unitKey string, xid int64) (int64, error)
	Close(ctx context.Context, outcome string, skipped int) error
}

var _ Ledger = (*ledger.Ledger)(nil)

// noLedger is --ledger none.
type noLedger struct{}

var _ Ledger = noLedger{}

func (noLedger) Open(context.Context, *pgx.Conn, func(context.Context) (*pgx.Conn, error), ledger.RunInfo) error {
	return nil
}
func (noLedger) RunID() string { return "" }
func (noLedger) Latest(_ context.Context, keys []string) ([]*ledger.Record, error) {
	return make([]*ledger.Record, len(keys)), nil
}
func (noLedger) Emptied(_ context.Context, tables [][]uint32) ([]int64, error) {
	return make([]int64, len(tables)), nil
}
func (noLedger) Trusted(*ledger.Record, ledger.Want) (bool, string) { return false, "" }
func (noLedger) RecordSkipped(context.Context, int) error           { return nil }
func (noLedger) Claim(context.Context, string) (bool, *ledger.Record, error) {
	return true, nil, nil
}
func (noLedger) Release(context.Context, string)                {}
func (noLedger) Success(*ledger.Attempt) (string, []any)        { return "", nil }
func (noLedger) SuccessSQL() string                             { return "" }
func (noLedger) Failure(context.Context, *ledger.Attempt) error { return nil }
func (noLedger) Close(context.Context, string, int) error       { return nil }
func (noLedger) Recorded(context.Context, ledger.Querier, string, int64) (int64, error) {
	return 0, errors.New("no ledger")
}

// ledger is the run's ledger, or noLedger.
func (o *Options) ledger() Ledger {
	if o.Ledger == nil || o.VerifyOnly {
		return noLedger{}
	}
	return o.Ledger
}

// unitKey is a group's identity across runs: its members' names, sorted.
// A group whose membership changes is a new unit.
func unitKey(g *partition.Group) string {
	names := make([]string, len(g.Units))
	for i, u := range g.Units {
		names[i] = u.Name()
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// destTables are a group's destination tables' OIDs.
func destTables(g *partition.Group) []uint32 {
	out := make([]uint32, len(g.Units))
	for i, u := range g.Units {
		out[i] = u.Dest.OID
	}
	return out
}

// unitShape fingerprints a group's columns on both sides (see
// partition.Unit.Shape): a unit whose shape changed since its copy is
// copied again.
func unitShape(g *partition.Group) string {
	if len(g.Units) == 1 {
		return g.Units[0].Shape
	}
	h := sha256.New()
	for _, u := range g.Units {
		fmt.Fprintf(h, "%s\x00%s\x00", u.Name(), u.Shape)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// resume is what the ledger said about the plan's units when the run
// started.
type resume struct {
	keys    []string
	shapes  []string
	emptied []int64          // per group: the latest copy that emptied its partitioned tables
	skipped []*ledger.Record // per group: the earlier copy it is skipped for; nil: run it
	n       int
	bytes   int64
	since   time.Time // the oldest copy skipped for
}

// openLedger opens the run's ledger on a connection of its own and decides
// which units earlier runs already copied: a unit is skipped when its
// latest record is trusted (see ledger.Trusted) and every unit it must
// follow is skipped too (a copy of those would empty it again).
func (p *Plan) openLedger(ctx context.Context) error {
	led := p.opts.ledger()
	conn, err := p.ledgerSide.connect(ctx)
	if err != nil {
		return err
	}
	info := ledger.RunInfo{ID: p.opts.RunID, Units: len(p.groups), Verify: string(p.opts.Verify)}
	if err := led.Open(ctx, conn, p.ledgerSide.connect, info); err != nil {
		return err
	}
	r := &resume{keys: make([]string, len(p.groups)), shapes: make([]string, len(p.groups)), skipped: make([]*ledger.Record, len(p.groups))}
	for i := range p.groups {
		r.keys[i], r.shapes[i] = unitKey(&p.groups[i]), unitShape(&p.groups[i])
	}
	recs, err := led.Latest(ctx, r.keys)
	if err != nil {
		led.Close(ctx, "failed", 0)
		return err
	}
	tables := make([][]uint32, len(p.groups))
	for i := range p.groups {
		tables[i] = destTables(&p.groups[i])
	}
	if r.emptied, err = led.Emptied(ctx, tables); err != nil {
		led.Close(ctx, "failed", 0)
		return err
	}
	for i := range p.groups {
		want := ledger.Want{Shape: r.shapes[i], Emptied: r.emptied[i]}
		ok := true
		for _, a := range p.groups[i].After {
			if r.skipped[a] == nil {
				ok = false
				break
			}
			want.After = append(want.After, r.skipped[a].ID)
		}
		if !ok {
			continue
		}
		if ok, _ = led.Trusted(recs[i], want); !ok {
			continue
		}
		r.skipped[i] = recs[i]
		r.n++
		r.bytes += p.groups[i].Estimate().Bytes
		if r.since.IsZero() || recs[i].Finished.Before(r.since) {
			r.since = recs[i].Finished
		}
	}
	if r.n > 0 {
		if err := led.RecordSkipped(ctx, r.n); err != nil {
			led.Close(ctx, "failed", 0)
			return err
		}
	}
	p.resume = r
	return nil
}

// Resumed says how many units the run skips because earlier runs copied
// and verified them, their estimated bytes, and the time of the oldest of
// those copies.
func (p *Plan) Resumed() (units int, bytes int64, since time.Time) {
	if p.resume == nil {
		return 0, 0, time.Time{}
	}
	return p.resume.n, p.resume.bytes, p.resume.since
}

// attemptRecord is the ledger's row for a pass over group g as res
// stands: a group's figures are its members' sums.
func (w *worker) attemptRecord(g *partition.Group, res *Result, key, shape, outcome string, xid int64) *ledger.Attempt {
	r := *res
	r.Members = slices.Clone(res.Members)
	if outcome == ledger.OutcomeOK {
		r.Status = StatusOK // settle keeps the members' checksums
	}
	r.settle()
	a := &ledger.Attempt{Key: key, Unit: g.Name(), Source: g.Units[0].Source.String(), Dest: g.Units[0].Dest.String(),
		Outcome: outcome, Verify: string(w.opts.Verify), Attempt: res.Attempts, Rows: r.Rows, Bytes: r.Bytes,
		Checksum: r.Checksum, Format: r.Format, DestLockWait: r.DestLockWait, SourceLockWait: r.SourceLockWait,
		SourceLockHeld: r.SourceLockHeld, WritesBlocked: r.WritesBlocked, Copy: r.Copy, VerifyTime: r.Verify,
		Started: r.Started, DestXID: xid, Shape: shape}
	for _, m := range r.Members {
		a.Members = append(a.Members, m.Unit)
		a.MemberChecksums = append(a.MemberChecksums, m.Checksum)
	}
	return a
}

// recordFailure writes a failed pass to the ledger, after its rollback. A
// ledger that cannot be written is logged: the unit's own outcome stands.
func (w *worker) recordFailure(ctx context.Context, g *partition.Group, res *Result, err error, retried bool) {
	led := w.opts.ledger()
	if _, ok := led.(noLedger); ok {
		return
	}
	outcome := ledger.OutcomeFailed // as the unit's status says
	switch st := failureStatus(ctx, err); {
	case retried:
		outcome = ledger.OutcomeRetried
	case st == StatusMismatch:
		outcome = ledger.OutcomeMismatch
	case st == StatusInterrupted:
		outcome = ledger.OutcomeInterrupted
	}
	a := w.attemptRecord(g, res, unitKey(g), unitShape(g), outcome, 0)
	a.Error = err.Error()
	if lerr := led.Failure(ctx, a); lerr != nil {
		w.opts.Logger.Warn("the ledger did not record a failed unit", "unit", g.Name(), "error", lerr)
	}
}

// ledgerRow is a unit's success row: the statement the destination runs
// before its COMMIT (empty without a ledger), and the unit's key.
type ledgerRow struct {
	key  string
	sql  string
	args []any
}

// ledgerStmt is the name of the success row's statement, prepared on each
// destination connection when it opens: parsing and planning it inside
// every unit's locks cost about a quarter of a millisecond.
const ledgerStmt = "lockstep_ledger_success"

// preparedKey is where a connection keeps the text of the statement it
// prepared as ledgerStmt.
const preparedKey = "lockstep.ledger_stmt"

// prepareLedgerRow prepares the success row's statement on a new
// destination connection (one round trip, outside any transaction).
func (w *worker) prepareLedgerRow(ctx context.Context, conn *pgx.Conn) error {
	sql := w.opts.ledger().SuccessSQL()
	if sql == "" {
		return nil
	}
	sctx, cancel := bounded(ctx, w.dst.name, "to prepare the ledger's statement", w.opts.StallTimeout)
	defer cancel()
	if _, err := conn.PgConn().Prepare(sctx, ledgerStmt, sql, nil); err != nil {
		return fmt.Errorf("destination: ledger: %w", stalled(sctx, err))
	}
	conn.PgConn().CustomData()[preparedKey] = sql
	return nil
}

// successRow is the ledger row that records the pass in res as a success,
// its source lock held for held (of which wait was queueing) so far.
func (w *worker) successRow(g *partition.Group, res *Result, xid int64, held, wait time.Duration) ledgerRow {
	led := w.opts.ledger()
	if _, ok := led.(noLedger); ok {
		return ledgerRow{}
	}
	key := unitKey(g)
	a := w.attemptRecord(g, res, key, unitShape(g), ledger.OutcomeOK, xid)
	a.SourceLockHeld, a.WritesBlocked = held-wait, res.WritesBlocked+held
	for _, t := range g.Truncate {
		a.Emptied = append(a.Emptied, t.String())
	}
	sql, args := led.Success(a)
	return ledgerRow{key: key, sql: sql, args: args}
}

// LedgerUnits are the plan's units as the ledger knows them (for status).
func (p *Plan) LedgerUnits() []ledger.Unit {
	out := make([]ledger.Unit, len(p.groups))
	for i := range p.groups {
		g := &p.groups[i]
		out[i] = ledger.Unit{Key: unitKey(g), Name: g.Name(), Shape: unitShape(g), After: g.After, Tables: destTables(g)}
	}
	return out
}
