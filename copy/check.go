package copy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"lockstep/lock"
	"lockstep/partition"
	"lockstep/verify"
)

// Verify compares the plan's units without copying: per unit, count and
// checksum on both servers concurrently, each in a REPEATABLE READ
// snapshot with the pinned settings and the same column list, the same
// figures a copy computes. With Options.Lock the units' locks are held
// while comparing (destination first), so the comparison is exact even
// under dual writes; without it, a mismatch on a table being written may be
// transient, and Options.RecheckLocked re-checks it once under the locks.
// Nothing is written anywhere.
func (p *Plan) Verify(ctx context.Context) (*Report, error) {
	return execute(ctx, p.opts, p.src, p.dst, p.groups, nil, (*worker).check)
}

// check compares a verify plan's unit (its groups hold one each).
func (w *worker) check(ctx context.Context, g *partition.Group, res *Result) error {
	u := &g.Units[0]
	res.Diff, res.Note, res.RepairSQL = nil, "", ""
	// A mismatch to be re-checked under locks is diffed there, not here.
	err := w.compare(ctx, u, res, w.opts.Lock, w.opts.Lock || !w.opts.RecheckLocked)
	if !w.opts.Lock && errors.As(err, new(*verify.MismatchError)) {
		if !w.opts.RecheckLocked {
			res.addNote("compared without locks: on a table written meanwhile the difference may be transient (--lock or --recheck-locked)")
			return err
		}
		w.opts.Logger.Info("mismatch without locks; re-checking under lock", "unit", u.Name())
		if err = w.compare(ctx, u, res, true, true); err == nil {
			res.addNote("differed without locks, matched under locks: the difference was transient")
		} else {
			res.addNote("re-checked under locks")
		}
	}
	return err
}

// compare is one comparison of a unit, in snapshots taken after the locks
// when locked.
func (w *worker) compare(ctx context.Context, u *partition.Unit, res *Result, locked, diff bool) error {
	res.Note = ""
	if err := w.ensureConns(ctx); err != nil {
		return err
	}
	poisoned := true // until both transactions end cleanly
	defer func() { w.abort(ctx, poisoned) }()
	log := w.opts.Logger.With("unit", u.Name())

	mode := lock.Mode("")
	if locked {
		mode = lock.Exclusive
	}
	var err error
	// A comparison waits on the slower server, and a diff goes back and
	// forth between them for as long as it takes: lockstep may leave either
	// transaction idle for long, so the session's idle timeout is lifted
	// for it (keepalives still end it if lockstep vanishes).
	begin := []string{beginSnapshot, "SET LOCAL idle_in_transaction_session_timeout = 0", qualifiedNamesSQL}
	dg, err := w.begin(ctx, w.dst, []partition.Table{u.Dest}, begin, mode, w.opts.LockTimeout)
	res.DestLockWait += dg.Wait
	if err != nil {
		poisoned = !errors.As(err, new(*lock.TimeoutError))
		return err
	}
	// A destination-only leaf has no source side: its source figures are
	// those of no rows, and no source writes wait on it.
	var sg lock.Grant
	if !u.DestOnly {
		// Writes to the source table are held up from the moment its LOCK
		// is sent, granted or not: --max-write-block bounds the wait, as
		// for a copy.
		sg, err = w.begin(ctx, w.src, []partition.Table{u.Source}, begin, mode, w.opts.sourceLockTimeout())
		res.SourceLockWait += sg.Wait
		if err != nil {
			res.WritesBlocked += sg.Wait
			poisoned = !errors.As(err, new(*lock.TimeoutError))
			return err
		}
	}
	log.Debug("snapshots taken", "locked", locked, "dest_lock_wait", res.DestLockWait, "source_lock_wait", sg.Wait)
	// From the LOCK on, writes to the source table wait on the
	// comparison, however it ends: --max-write-block bounds it as it
	// bounds a copy.
	if locked && !u.DestOnly {
		defer func() {
			res.SourceLockHeld = time.Since(sg.Sent) - sg.Wait
			res.WritesBlocked += time.Since(sg.Sent)
		}()
	}
	bctx := ctx
	overrun := func(err error) error { return err }
	if locked && !u.DestOnly && w.opts.MaxWriteBlock > 0 {
		var cancel context.CancelFunc
		bctx, cancel = context.WithDeadlineCause(ctx, sg.Sent.Add(w.opts.MaxWriteBlock),
			&WriteBlockError{Unit: u.Name(), Limit: w.opts.MaxWriteBlock})
		defer cancel()
		overrun = func(err error) error {
			if err != nil && bctx.Err() != nil && ctx.Err() == nil {
				return context.Cause(bctx)
			}
			return err
		}
	}

	start := time.Now()
	var srcSum, dstSum verify.Sum
	g, gctx := errgroup.WithContext(bctx)
	g.Go(func() (err error) {
		if u.DestOnly {
			return nil
		}
		srcSum, err = figures(gctx, w.srcConn, w.src.name, u.Source, u, w.opts.Verify, w.opts.Checksum, w.opts.StallTimeout, "")
		return wrapSide("source", u.Source, err)
	})
	g.Go(func() (err error) {
		dstSum, err = figures(gctx, w.dstConn, w.dst.name, u.Dest, u, w.opts.Verify, w.opts.Checksum, w.opts.StallTimeout, "")
		return wrapSide("destination", u.Dest, err)
	})
	if err := g.Wait(); err != nil {
		return overrun(err)
	}
	res.Verify = time.Since(start)
	res.Rows, res.Bytes = srcSum.Rows, 0
	if w.opts.Verify == verify.Checksum {
		res.Checksum = srcSum.Checksum()
	}
	log.Debug("compared", "mode", w.opts.Verify, "source_rows", srcSum.Rows, "dest_rows", dstSum.Rows, "took", res.Verify)
	cmpErr := verify.Compare(u.Name(), w.opts.Verify, srcSum, dstSum)
	// Under locks the destination may still lack dual writes whose source
	// half committed before the source lock: their destination half waits
	// on our destination lock. While the source stays locked (no new write
	// starts there), let them land and read the destination again, until
	// no writer waits on it or settleRounds have passed. A destination half
	// still on its way is given settleGrace, once, to arrive.
	graced := false
	for round := 0; cmpErr != nil && locked && !u.DestOnly && round < settleRounds; round++ {
		waiting, err := blocksWriters(bctx, w.dstConn)
		if err == nil && !waiting && !graced {
			graced = true
			select {
			case <-time.After(settleGrace):
			case <-bctx.Done():
			}
			waiting, err = blocksWriters(bctx, w.dstConn)
		}
		if err != nil {
			return overrun(wrapSide("destination", u.Dest, err))
		}
		if !waiting {
			break
		}
		log.Debug("writers wait on the destination lock; letting them land", "round", round+1)
		if err := exec(bctx, w.dstConn, "ROLLBACK"); err != nil {
			return overrun(fmt.Errorf("destination: roll back to let waiting writes land: %w", err))
		}
		dg, err := w.begin(bctx, w.dst, []partition.Table{u.Dest}, begin, mode, w.opts.LockTimeout)
		res.DestLockWait += dg.Wait
		if err != nil {
			poisoned = !errors.As(err, new(*lock.TimeoutError))
			return overrun(err)
		}
		if dstSum, err = figures(bctx, w.dstConn, w.dst.name, u.Dest, u, w.opts.Verify, w.opts.Checksum, w.opts.StallTimeout, ""); err != nil {
			return overrun(wrapSide("destination", u.Dest, err))
		}
		cmpErr = verify.Compare(u.Name(), w.opts.Verify, srcSum, dstSum)
	}
	if cmpErr != nil && u.DestOnly {
		res.addNote(fmt.Sprintf("the partition exists only on the destination and holds %d row(s) the source lacks: detach it or empty it on the destination", dstSum.Rows))
	}
	if cmpErr != nil && w.opts.Diff && diff {
		// The difference stands whatever becomes of the diff: a failed
		// diff is told with it, never in its place.
		if err := w.diff(bctx, u, res, srcSum, dstSum); err != nil {
			return fmt.Errorf("%w; %v", cmpErr, overrun(err))
		}
	}
	if w.opts.Sequences == SequencesCheck {
		// In the destination's snapshot: its sequences against its rows.
		if err := checkSequences(bctx, w.dstConn, u); err != nil {
			err = overrun(err)
			if cmpErr == nil {
				cmpErr = err
			} else {
				cmpErr = fmt.Errorf("%w; %w", cmpErr, err)
			}
		}
	}
	poisoned = false
	return cmpErr
}

// settleRounds bounds how often a locked comparison lets the writes
// waiting on its destination lock land before it trusts a difference.
const settleRounds = 5

// settleGrace is how long a locked comparison that differs with no writer
// waiting on its destination lock waits for one before trusting it.
const settleGrace = 50 * time.Millisecond

// blocksWriters tells whether another session waits on a lock conn's
// transaction holds (pg_locks is live state, not the snapshot's).
func blocksWriters(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var waiting bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_locks l WHERE NOT l.granted
		AND l.pid <> pg_catalog.pg_backend_pid() AND pg_catalog.pg_backend_pid() = ANY (pg_catalog.pg_blocking_pids(l.pid)))`).Scan(&waiting)
	return waiting, err
}

// addNote appends to the unit's note.
func (r *Result) addNote(note string) {
	if r.Note != "" {
		r.Note += "; "
	}
	r.Note += note
}

func wrapSide(side string, t partition.Table, err error) error {
	if err == nil || errors.As(err, new(*StallError)) {
		return err
	}
	return partition.RowSecurityRefusal(side, t, fmt.Errorf("%s: read %s: %w", side, t, err))
}

// figures is a side's count and checksum, computed the way a copy computes
// them: the table's COPY stream hashed row by row. A stream that moves no
// bytes for stall is cancelled with a *StallError naming side; a count,
// which sends nothing until it is done, is bounded by keepalives only.
func figures(ctx context.Context, conn *pgx.Conn, side string, t partition.Table, u *partition.Unit, mode verify.Mode, alg verify.Algorithm, stall time.Duration, prefix string) (verify.Sum, error) {
	if mode == verify.Count {
		var n int64
		err := conn.QueryRow(ctx, countSQL(t)).Scan(&n)
		return verify.Sum{Rows: n}, err
	}
	h := verify.NewStream(u.Binary, alg)
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p := &progress{}
	stop := p.watch(stall, "reading "+t.String(), side, "", cancel)
	// prefix: statements sent in the same message, before the COPY.
	_, err := conn.PgConn().CopyTo(sctx, &counter{p: p, out: h}, prefix+copyOutSQL(t, u.Columns, u.Binary))
	stop()
	if err != nil {
		return verify.Sum{}, stalled(sctx, err)
	}
	return h.Sum()
}

// selectFigures computes a side's count and checksum of the rows a query
// selects, the way figures computes a table's: the same COPY format and
// row hash.
func selectFigures(conn *pgx.Conn, binary bool, alg verify.Algorithm) func(context.Context, string) (verify.Sum, error) {
	return func(ctx context.Context, query string) (verify.Sum, error) {
		h := verify.NewStream(binary, alg)
		if _, err := conn.PgConn().CopyTo(ctx, h, "COPY ("+query+") TO STDOUT"+formatOption(binary)); err != nil {
			return verify.Sum{}, err
		}
		return h.Sum()
	}
}

// diff pinpoints the differing rows of a mismatching unit inside the open
// snapshots, whose figures were srcSum and dstSum.
func (w *worker) diff(ctx context.Context, u *partition.Unit, res *Result, srcSum, dstSum verify.Sum) error {
	if len(u.Key) == 0 {
		res.Diff = &verify.Diff{Unavailable: u.NoKey}
		return nil
	}
	spec := verify.Spec{Unit: u.Name(), Columns: u.Columns, Key: u.Key, LeafRows: w.opts.DiffRows, HashFunc: w.opts.hashFunc,
		SourceRows: srcSum.Rows, DestRows: dstSum.Rows}
	src := verify.Side{Q: w.srcConn, Table: only(u.Source)}
	dst := verify.Side{Q: w.dstConn, Table: only(u.Dest)}
	// Identical types on servers of one major version, built in, enums or
	// domains over built-in types (binary format), may be summed by
	// hash_record_extended: the checksums let the diff prove it missed
	// nothing.
	if w.opts.Verify == verify.Checksum && u.Binary {
		src.Sum, src.Figures = &srcSum, selectFigures(w.srcConn, u.Binary, w.opts.Checksum)
		dst.Sum, dst.Figures = &dstSum, selectFigures(w.dstConn, u.Binary, w.opts.Checksum)
	}
	d, err := verify.Bisect(ctx, src, dst, spec)
	if err != nil {
		return fmt.Errorf("the diff failed: %w", err)
	}
	res.Diff = d
	if w.opts.RepairSQL && !d.Empty() {
		if err := verify.FetchMissing(ctx, src, spec, d); err != nil {
			return fmt.Errorf("the diff failed: %w", err)
		}
		var b bytes.Buffer
		d.WriteRepairSQL(&b, u.Dest.String(), !u.Dest.Partitioned(), u.Columns, u.Key)
		res.RepairSQL = b.String()
	}
	return nil
}
