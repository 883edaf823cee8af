package copy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"lockstep/lock"
	"lockstep/partition"
)

// Timeouts of the commit point, which runs to its end even after a
// cancellation. The re-check has its own: a COMMIT that used all of its
// time must still leave time to decide its outcome.
const (
	commitTimeout  = time.Minute
	recheckTimeout = time.Minute
)

// commitPoint commits the destination, then the source. From here a
// cancellation must not cut the commit point in two: both commits and any
// re-check run to their end under their own timeouts, and the source's
// heartbeat with them, so that the source lock holds until the
// destination's outcome is known. It reports whether the destination
// committed; if it did not, the caller rolls both back.
//
// xid is the destination transaction's id (read in the round trip that
// took its locks), by which a commit whose outcome was lost is re-checked.
//
// row, when there is a ledger, records the unit: it is inserted in the
// destination's transaction, in the same round trip as its COMMIT, so that
// the data and its record commit together or not at all.
func (w *worker) commitPoint(ctx context.Context, u *partition.Group, res *Result, xid int64, row ledgerRow) (bool, error) {
	wctx := context.WithoutCancel(ctx)
	hctx, cancel := context.WithTimeout(wctx, w.opts.commitTimeout+w.opts.recheckTimeout)
	defer cancel()
	hb := w.startHeartbeat(hctx, w.src, w.srcConn, nil)
	stopped := false
	defer func() {
		if !stopped {
			hb.stop()
		}
	}()

	cctx, cancel := context.WithTimeout(wctx, w.opts.commitTimeout)
	defer cancel()
	id, err := commitWith(cctx, w.dstConn, row.sql, row.args)
	res.ledgerID = id
	if err != nil {
		if !uncertain(err) {
			return false, fmt.Errorf("destination: commit: %w", err)
		}
		res.Uncertain = true
		pid := w.dstConn.PgConn().PID()
		closeConn(ctx, w.dstConn)
		w.dstConn = nil
		rctx, cancel := context.WithTimeout(wctx, w.opts.recheckTimeout)
		defer cancel()
		committed, terminated, rowID, rerr := w.recheck(rctx, xid, pid, row.key)
		switch {
		case rerr != nil:
			return false, &CommitUnknownError{Commit: err, Recheck: rerr}
		case !committed && terminated:
			return false, fmt.Errorf("destination: commit outcome unknown (%v); re-check: transaction %d was still open in its session, which lockstep terminated: aborted, the destination is as before", err, xid)
		case !committed:
			return false, fmt.Errorf("destination: commit failed (%v); re-check: transaction %d aborted, the destination is as before", err, xid)
		}
		res.Note = fmt.Sprintf("the connection was lost during the destination's COMMIT (%v); re-check: transaction %d committed", err, xid)
		if rowID != 0 {
			// The id of the copy, which the units that must follow this
			// one compare their records with.
			res.ledgerID = rowID
			res.Note += ", and the ledger holds its row"
		}
		w.opts.Logger.Warn("destination commit outcome was unknown; re-check shows it committed",
			"unit", u.Name(), "xid", xid, "error", err)
	}
	w.opts.Logger.Debug("destination committed", "unit", u.Name(), "side", "destination", "xid", xid)
	stopped = true
	herr := hb.stop()
	sctx, cancel := bounded(wctx, w.src.name, "to COMMIT", w.opts.StallTimeout)
	defer cancel()
	if err := errors.Join(herr, commit(sctx, w.srcConn)); err != nil {
		// The source transaction was read-only: nothing to lose. The
		// server releases the lock when the session ends.
		w.opts.Logger.Warn("source commit failed after the destination committed; discarding the connection",
			"unit", u.Name(), "error", err)
		closeConn(ctx, w.srcConn)
		w.srcConn = nil
	} else {
		w.opts.Logger.Debug("source committed; lock released", "unit", u.Name(), "side", "source")
	}
	return true, nil
}

// recheck decides an unknown destination commit exactly, from a new
// connection, by the transaction's status. A session still holding the
// transaction open (the COMMIT never reached it) is terminated, which
// aborts the transaction, so the answer is final. It reports whether the
// transaction committed and whether a session had to be terminated.
//
// pg_terminate_backend only waits for the session to end on PostgreSQL
// 14+ (its timeout argument); polling pg_stat_activity works on every
// version, so every version takes the same path.
//
// With a ledger, the unit's success row (unitKey) is looked up too: it is
// there exactly when the transaction committed. The two must agree;
// rowID is the row's id (0: not found).
func (w *worker) recheck(ctx context.Context, xid int64, pid uint32, unitKey string) (committed, terminated bool, rowID int64, err error) {
	conn, err := w.dst.connect(ctx)
	if err != nil {
		return false, false, 0, err
	}
	defer closeConn(ctx, conn)
	led := w.opts.ledger()
	_, none := led.(noLedger)
	for {
		var status *string
		if err := conn.QueryRow(ctx, "SELECT pg_catalog.txid_status($1)", xid).Scan(&status); err != nil {
			return false, terminated, 0, err
		}
		if status == nil || *status != "in progress" {
			if none {
				if status == nil {
					return false, terminated, 0, fmt.Errorf("txid_status(%d) is unknown (too old)", xid)
				}
				return *status == "committed", terminated, 0, nil
			}
			id, err := led.Recorded(ctx, conn, unitKey, xid)
			recorded := id != 0
			switch {
			case err != nil:
				return false, terminated, 0, err
			case status == nil:
				return recorded, terminated, id, nil
			case (*status == "committed") != recorded:
				return false, terminated, id, fmt.Errorf("transaction %d %s, but the ledger %s its success row", xid, *status,
					map[bool]string{true: "holds", false: "lacks"}[recorded])
			}
			return recorded, terminated, id, nil
		}
		// In progress: the old session still has it open.
		if _, err := conn.Exec(ctx, "SELECT pg_catalog.pg_terminate_backend($1)", int64(pid)); err != nil {
			return false, terminated, 0, err
		}
		terminated = true
		for {
			var alive bool
			if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_catalog.pg_stat_activity WHERE pid = $1)", int64(pid)).Scan(&alive); err != nil {
				return false, terminated, 0, err
			}
			if !alive {
				break
			}
			if err := lock.Sleep(ctx, 20*time.Millisecond); err != nil {
				return false, terminated, 0, err
			}
		}
	}
}
