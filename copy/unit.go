package copy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"lockstep/lock"
	"lockstep/partition"
	"lockstep/throttle"
	"lockstep/verify"
)

// worker runs units one after another on its own pair of connections.
type worker struct {
	opts     *Options
	rate     *throttle.Rate // --max-rate, shared by every worker; nil without
	src, dst *side
	srcConn  *pgx.Conn
	dstConn  *pgx.Conn
}

func (w *worker) ensureConns(ctx context.Context) error {
	var err error
	if w.dstConn == nil {
		if w.dstConn, err = w.dst.connect(ctx); err != nil {
			return err
		}
		if err = w.prepareLedgerRow(ctx, w.dstConn); err != nil {
			closeConn(ctx, w.dstConn)
			w.dstConn = nil
			return err
		}
	}
	if w.srcConn == nil {
		if w.srcConn, err = w.src.connect(ctx); err != nil {
			return err
		}
	}
	return nil
}

// close discards both connections; the server ends whatever they held.
func (w *worker) close(ctx context.Context) {
	closeConn(ctx, w.srcConn)
	closeConn(ctx, w.dstConn)
	w.srcConn, w.dstConn = nil, nil
}

// abort rolls back both transactions. A connection that cannot roll back,
// or that saw a failed or cancelled COPY (poisoned), is discarded.
func (w *worker) abort(ctx context.Context, poisoned bool) {
	if poisoned || !rollback(ctx, w.dstConn) {
		closeConn(ctx, w.dstConn)
		w.dstConn = nil
	}
	if poisoned || !rollback(ctx, w.srcConn) {
		closeConn(ctx, w.srcConn)
		w.srcConn = nil
	}
}

// attemptFunc is one try at a group: a copy, or a comparison.
type attemptFunc func(w *worker, ctx context.Context, g *partition.Group, res *Result) error

// run does one group, retrying after lock timeouts with backoff.
func (w *worker) run(ctx context.Context, g *partition.Group, attempt attemptFunc) Result {
	res := newResult(g)
	res.Started = time.Now()
	defer func() { res.Finished = time.Now() }()
	log := w.opts.Logger.With("unit", g.Name())
	for {
		res.Attempts++
		err := attempt(w, ctx, g, &res)
		var te *lock.TimeoutError
		retry := errors.As(err, &te) && res.Attempts <= w.opts.LockRetries && ctx.Err() == nil
		if err != nil {
			w.recordFailure(ctx, g, &res, err, retry) // rolled back by now
		}
		if retry {
			pause := lock.Backoff(res.Attempts, w.opts.RetryBackoff, 30*time.Second)
			log.Warn("lock not granted; retrying", "side", te.Side, "attempt", res.Attempts, "pause", pause, "error", err)
			if lock.Sleep(ctx, pause) == nil {
				continue
			}
			err = fmt.Errorf("%w (interrupted while waiting to retry)", err)
		}
		res.Err = err
		res.Status = StatusOK
		if err != nil {
			res.Status = failureStatus(ctx, err)
			res.Error = err.Error()
		}
		res.Finished = time.Now()
		res.settle()
		return res
	}
}

// failureStatus is what a unit that ended with err is: a mismatch found
// before any stop stays a mismatch (it was rolled back); a COMMIT whose
// outcome nobody could decide is a failure, not an interruption (nothing
// says it was rolled back); otherwise a stop in progress interrupted it.
func failureStatus(ctx context.Context, err error) Status {
	switch {
	case errors.As(err, new(*verify.MismatchError)), errors.As(err, new(*SequenceBehindError)):
		return StatusMismatch
	case errors.As(err, new(*CommitUnknownError)):
		return StatusFailed
	case ctx.Err() != nil:
		return StatusInterrupted
	}
	return StatusFailed
}

// beginSnapshot opens a read-only transaction whose snapshot is taken at
// its first query, after the lock.
const beginSnapshot = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

// conn is the worker's connection to side.
func (w *worker) conn(sd *side) *pgx.Conn {
	if sd == w.dst {
		return w.dstConn
	}
	return w.srcConn
}

// targets are the tables a side locks, in the order given.
func targets(ts []partition.Table) []lock.Target {
	out := make([]lock.Target, len(ts))
	for i, t := range ts {
		out[i] = lock.Target{Table: t.Ident(), Only: !t.Partitioned()}
	}
	return out
}

// lockOrder is the order a group's tables are locked in on each side:
// the tables that reference others before the tables they reference (the
// reverse of the copy order), the partitioned tables the group truncates
// for later units, which reference its members, first of all. An
// application's statement locks the table it writes and then, for its
// foreign keys, the tables that table references: locking in the same
// direction, lockstep never holds a referenced table while it waits for a
// table whose writer will want that referenced one, so the two cannot
// deadlock over an acyclic schema. The order depends only on the group, so
// two runs lock shared tables alike. (Should a deadlock happen anyway, the
// server gives one side up; when it is lockstep's lock, the unit rolls
// back and retries as after a lock timeout.)
func lockOrder(g *partition.Group) (src, dst []partition.Table) {
	dst = append(dst, g.Truncate...)
	for i := len(g.Units) - 1; i >= 0; i-- {
		src, dst = append(src, g.Units[i].Source), append(dst, g.Units[i].Dest)
	}
	return src, dst
}

// begin opens the unit's transaction on one side with the statements in
// before and, unless mode is empty, locks tables there before anything
// else, then runs after: one round trip. The grant says when the LOCK was
// sent (from then on a queued EXCLUSIVE request already blocks new
// writers), how long it waited, and the rows of the last statement of
// after. timeout bounds the lock wait. A server silent for the stall
// timeout (beyond the lock timeout, for the lock) ends it with a
// *StallError.
func (w *worker) begin(ctx context.Context, sd *side, tables []partition.Table, before []string, mode lock.Mode, timeout time.Duration, after ...string) (lock.Grant, error) {
	conn := w.conn(sd)
	if mode == "" {
		return lock.Grant{}, w.step(ctx, sd, conn, "BEGIN", strings.Join(append(before, after...), "; "))
	}
	lctx, cancel := bounded(ctx, sd.name, "to LOCK TABLE (beyond --lock-timeout)", timeout+w.opts.StallTimeout)
	defer cancel()
	g, err := lock.Acquire(lctx, conn, lock.Request{Side: sd.name, Tables: targets(tables), Mode: mode,
		Timeout: timeout, Before: before, After: after, Watch: sd.connect})
	return g, stalled(lctx, err)
}

// sourceLockTimeout bounds the wait for the source lock: a queued
// EXCLUSIVE request blocks writers, so with --max-write-block the wait
// may not exceed it either.
func (o *Options) sourceLockTimeout() time.Duration {
	if o.MaxWriteBlock > 0 {
		return min(o.LockTimeout, o.MaxWriteBlock)
	}
	return o.LockTimeout
}

// step runs a short statement on one side; a server that does not answer
// within the stall timeout ends it with a *StallError.
func (w *worker) step(ctx context.Context, sd *side, conn *pgx.Conn, what, sql string) error {
	sctx, cancel := bounded(ctx, sd.name, "to "+what, w.opts.StallTimeout)
	defer cancel()
	err := exec(sctx, conn, sql)
	if se := stalled(sctx, err); se != err {
		return se
	}
	if err != nil {
		return fmt.Errorf("%s: %s: %w", sd.name, what, err)
	}
	return nil
}

// destBegin is what the destination runs in the round trip that takes its
// locks: the transaction's start and settings before the LOCK, the replace
// step and the transaction id (for a commit whose outcome is lost) after.
func (w *worker) destBegin(g *partition.Group) (before, after []string) {
	before = []string{"BEGIN"}
	if w.opts.FKMode == partition.FKReplica {
		// Foreign-key (and other ordinary) triggers do not fire.
		before = append(before, "SET LOCAL session_replication_role = replica")
	}
	after = append(leavesCheckSQL(g), replaceSQL(g))
	if w.opts.DisableTriggers {
		disable, _ := triggersSQL(g)
		after = append(after, disable...)
	}
	if g.Deferred {
		after = append(after, "SET CONSTRAINTS ALL DEFERRED")
	}
	return before, append(after, "SELECT pg_catalog.txid_current()")
}

// attempt is one pass of the unit protocol over a group: one table, or the
// tables that must be truncated together, copied in order and committed at
// one commit point.
func (w *worker) attempt(ctx context.Context, g *partition.Group, res *Result) (err error) {
	if g.Units[0].DestOnly {
		// Only verify plans hold these; a copy plan refuses them.
		return fmt.Errorf("destination: %s exists only on the destination: nothing to copy into it", g.Units[0].Dest)
	}
	if err := w.ensureConns(ctx); err != nil {
		return err
	}
	poisoned := false
	done := false
	// hb keeps the source's transaction alive while it idles; it owns the
	// source connection until stopped.
	var hb *heartbeat
	defer func() {
		hb.stop()
		if !done {
			w.abort(ctx, poisoned || ctx.Err() != nil)
		}
	}()
	log := w.opts.Logger.With("unit", g.Name())
	srcTables, dstTables := lockOrder(g)
	// 1. Destination first, in one round trip: lock every member (and
	// every table the group truncates), then empty them. The source is
	// never write-blocked while the destination lock is awaited.
	before, after := w.destBegin(g)
	dg, err := w.begin(ctx, w.dst, dstTables, before, lock.AccessExclusive, w.opts.LockTimeout, after...)
	res.DestLockWait += dg.Wait
	if err != nil {
		return err
	}
	var xid int64
	if len(dg.Rows) != 1 || len(dg.Rows[0]) != 1 {
		return errors.New("destination: txid_current() returned no row")
	}
	if xid, err = strconv.ParseInt(string(dg.Rows[0][0]), 10, 64); err != nil {
		return fmt.Errorf("destination: txid_current(): %w", err)
	}
	log.Debug("destination locked and emptied", "side", "destination", "mode", lock.AccessExclusive, "waited", dg.Wait,
		"replace", replaceSQL(g))
	// 2. Source: lock before any query, so the snapshot (taken by the first
	// query, the COPY) sees every write committed before the lock. Writes
	// are blocked from the moment the LOCK is sent: a queued EXCLUSIVE
	// request already holds up every later writer. The destination idles
	// meanwhile, up to --lock-timeout: its heartbeat gives up the wait as
	// soon as the destination is lost.
	lctx, lost := context.WithCancelCause(ctx)
	dhb := w.startHeartbeat(ctx, w.dst, w.dstConn, lost)
	sg, err := w.begin(lctx, w.src, srcTables, []string{beginSnapshot, qualifiedNamesSQL}, lock.Exclusive, w.opts.sourceLockTimeout(),
		w.sourceSequencesSQL(g)...) // the sequences' values, read right after the lock (sequences.go)
	herr := dhb.stop()
	lost(nil)
	res.SourceLockWait += sg.Wait
	if herr != nil {
		res.WritesBlocked += sg.Wait
		return herr
	}
	if err != nil {
		res.WritesBlocked += sg.Wait
		return err
	}
	log.Debug("source locked", "side", "source", "mode", lock.Exclusive, "waited", sg.Wait)
	defer func() {
		res.SourceLockHeld = time.Since(sg.Sent) - sg.Wait
		res.WritesBlocked += time.Since(sg.Sent)
	}()

	// From the LOCK on, writes to the source tables wait on us:
	// --max-write-block bounds this stretch, up to the commit point.
	bctx := ctx
	if w.opts.MaxWriteBlock > 0 {
		var cancel context.CancelFunc
		bctx, cancel = context.WithDeadlineCause(ctx, sg.Sent.Add(w.opts.MaxWriteBlock),
			&WriteBlockError{Unit: g.Name(), Limit: w.opts.MaxWriteBlock})
		defer cancel()
	}
	overrun := func(err error) error {
		if bctx.Err() != nil && ctx.Err() == nil {
			return context.Cause(bctx)
		}
		return err
	}

	// 3. Each member in order, referenced tables first, streamed; then,
	// once all are loaded, each verified inside both transactions. Loading
	// a member can change one loaded before it (a destination trigger that
	// writes to another member), and so can the deferred triggers the
	// loads queued, so none is verified before all are in and those have
	// run. The source idles from the end of its last COPY,
	// under a heartbeat that cancels vctx if it is lost.
	vctx, sourceLost := context.WithCancelCause(bctx)
	defer sourceLost(nil)
	loads := make([]memberLoad, len(g.Units))
	for i := range g.Units {
		if err := hb.stop(); err != nil {
			hb = nil
			poisoned = true
			return fmt.Errorf("%w; rolled back", err)
		}
		hb = nil
		if err := w.loadMember(bctx, &g.Units[i], res.member(i), &hb, sourceLost, &loads[i], log); err != nil {
			poisoned = true
			return overrun(err)
		}
		if err := overrun(nil); err != nil {
			return err
		}
	}
	if w.opts.Verify != verify.None && w.deferredTriggers(g) {
		if err := w.fireDeferred(bctx, vctx); err != nil {
			poisoned = true
			return overrun(err)
		}
	}
	for i := range g.Units {
		if err := w.verifyMember(bctx, vctx, &g.Units[i], res.member(i), loads[i], log); err != nil {
			poisoned = poisoned || !errors.As(err, new(*verify.MismatchError))
			return overrun(err)
		}
		if err := overrun(nil); err != nil {
			return err
		}
	}
	// The destination's sequences that feed the copied columns, from the
	// source's values read with its lock (sequences.go).
	if err := w.setGroupSequences(bctx, g, sg.Rows, res, log); err != nil {
		return overrun(err)
	}
	if w.opts.DisableTriggers {
		if _, enable := triggersSQL(g); len(enable) > 0 {
			if err := w.step(ctx, w.dst, w.dstConn, "re-enable triggers", strings.Join(enable, "; ")); err != nil {
				return err
			}
		}
	}
	// The source session must still hold its lock now: if it died after
	// the stream, writes to the source table may have resumed, and
	// committing the destination would publish a copy they are missing.
	// One round trip, right before the commit point, besides the
	// heartbeat's.
	err = hb.stop()
	hb = nil
	if err == nil {
		err = w.ping(ctx, w.src, w.srcConn)
	}
	if err != nil {
		poisoned = true
		return fmt.Errorf("%w: the source lock may have been released and writes resumed, so the destination was rolled back", err)
	}

	// 4. One commit point. The unit's ledger row is written in the
	// destination's transaction, in the COMMIT's round trip.
	row := w.successRow(g, res, xid, time.Since(sg.Sent), sg.Wait)
	if done, err = w.commitPoint(ctx, g, res, xid, row); err != nil {
		poisoned = true
		return err
	}
	return nil
}

// memberLoad is what streaming one member left to verify: the source's
// figures and the rows the destination loaded.
type memberLoad struct {
	src    verify.Sum
	loaded int64
}

// loadMember streams one member of a group into the destination. On success *hb
// holds the source's heartbeat, started when the source finished sending
// and reporting a loss to onLost.
func (w *worker) loadMember(ctx context.Context, u *partition.Unit, m *Result, hb **heartbeat, onLost func(error), out *memberLoad, log *slog.Logger) error {
	start := time.Now()
	srcSum, loaded, err := w.stream(ctx, u, m, hb, onLost)
	m.Copy = time.Since(start)
	if err != nil {
		return err
	}
	m.Rows = srcSum.Rows
	*out = memberLoad{src: srcSum, loaded: loaded}
	log.Debug("streamed", "table", u.Name(), "rows", srcSum.Rows, "loaded", loaded, "bytes", m.Bytes, "format", u.Format(), "took", m.Copy)
	return nil
}

// deferredTriggers reports whether the loads of g may have queued
// deferred user triggers: a member's destination table has a DEFERRABLE
// constraint trigger that fires. Foreign-key checks, deferred or not,
// change no rows.
func (w *worker) deferredTriggers(g *partition.Group) bool {
	if w.opts.DisableTriggers {
		return false // disabled while the members load
	}
	for _, u := range g.Units {
		for _, t := range u.DestTriggers {
			if t.Deferrable && t.Enabled != "D" {
				return true
			}
		}
	}
	return false
}

// fireDeferred runs, before the read-backs, the deferred constraint checks
// and triggers that the loads queued on the destination: left to the
// COMMIT, a trigger among them that changes the copied rows would commit
// rows nobody verified. They may take as long as they would in the COMMIT,
// so they get the COMMIT's time. vctx is ctx, cancelled when the source is
// lost.
func (w *worker) fireDeferred(ctx, vctx context.Context) error {
	sctx, cancel := bounded(vctx, w.dst.name, "to run the deferred constraints and triggers", w.opts.commitTimeout)
	defer cancel()
	err := exec(sctx, w.dstConn, "SET CONSTRAINTS ALL IMMEDIATE")
	switch {
	case err == nil:
		return nil
	case vctx.Err() != nil && ctx.Err() == nil:
		err = context.Cause(vctx)
	case stalled(sctx, err) != err:
		err = stalled(sctx, err)
	default:
		err = fmt.Errorf("destination: deferred constraints and triggers: %w", err)
	}
	return fmt.Errorf("%w; rolled back", err)
}

// verifyMember verifies one loaded member: the source's rows as hashed
// while they streamed out, against the destination's read back from what
// it stored. A mismatch comes back as a *verify.MismatchError; the caller
// rolls the group back. vctx is ctx, cancelled when the source is lost.
func (w *worker) verifyMember(ctx, vctx context.Context, u *partition.Unit, m *Result, l memberLoad, log *slog.Logger) error {
	srcSum, loaded := l.src, l.loaded
	start := time.Now()
	dstSum, err := w.readBack(vctx, w.dstConn, u, loaded)
	m.Verify = time.Since(start)
	if err != nil {
		if vctx.Err() != nil && ctx.Err() == nil {
			err = context.Cause(vctx)
		}
		return fmt.Errorf("%w; rolled back", err)
	}
	if err := verify.Compare(u.Name(), w.opts.Verify, srcSum, dstSum); err != nil {
		return fmt.Errorf("%w%s; rolled back", err, w.triggerHint(u))
	}
	if loaded != srcSum.Rows {
		return fmt.Errorf("%w%s; rolled back", &verify.MismatchError{Unit: u.Name(), Mode: verify.None, Source: srcSum, Dest: verify.Sum{Rows: loaded}}, w.triggerHint(u))
	}
	if w.opts.Verify == verify.Checksum {
		m.Checksum = srcSum.Checksum()
	}
	log.Debug("verified", "table", u.Name(), "mode", w.opts.Verify, "rows", dstSum.Rows, "checksum", m.Checksum, "took", m.Verify)
	return nil
}

// triggerHint explains a mismatch: what COPY stores can differ from what
// it was sent only through the destination's BEFORE INSERT row triggers
// (rules do not apply to COPY), so when the table has such triggers and
// they fired, they changed or dropped rows.
func (w *worker) triggerHint(u *partition.Unit) string {
	if w.opts.DisableTriggers {
		return ""
	}
	var names []string
	for _, t := range u.DestTriggers {
		if t.BeforeRow && t.Fires() {
			names = append(names, t.Name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return fmt.Sprintf(" (destination trigger %s changed or dropped rows as they were loaded; --disable-triggers copies without them)",
		strings.Join(names, ", "))
}

// triggersSQL is what --disable-triggers runs on the destination: before
// loading, the user triggers of the group's tables that the plan found
// enabled disabled by name; before the commit, exactly those enabled again
// in their own mode. A trigger created since the plan is left alone
// (DISABLE TRIGGER USER would leave it disabled for good). Both run inside
// the unit's transaction, so no other session ever sees them disabled (it
// could not touch the locked tables anyway).
func triggersSQL(g *partition.Group) (disable, enable []string) {
	for _, u := range g.Units {
		var off []string
		for _, t := range u.DestTriggers {
			var mode string
			switch t.Enabled {
			case "O":
				mode = "ENABLE"
			case "A":
				mode = "ENABLE ALWAYS"
			case "R":
				mode = "ENABLE REPLICA"
			default:
				continue
			}
			off = append(off, "DISABLE TRIGGER "+pgx.Identifier{t.Name}.Sanitize())
			enable = append(enable, fmt.Sprintf("ALTER TABLE %s %s TRIGGER %s", only(u.Dest), mode, pgx.Identifier{t.Name}.Sanitize()))
		}
		if len(off) > 0 {
			disable = append(disable, fmt.Sprintf("ALTER TABLE %s %s", only(u.Dest), strings.Join(off, ", ")))
		}
	}
	return disable, enable
}

// WriteBlockError says a unit would have blocked writes to its source
// table longer than --max-write-block; it was rolled back. Retrying it
// alone will not help: split it, or allow a longer block.
type WriteBlockError struct {
	Unit  string
	Limit time.Duration
}

func (e *WriteBlockError) Error() string {
	return fmt.Sprintf("%s: writes blocked longer than --max-write-block %s; rolled back", e.Unit, e.Limit)
}

// hashingWriter hashes the source stream on its way into the pipe buffer.
// pgx hands the stream over one row at a time, so this runs per row: keep
// it to the hash.
type hashingWriter struct {
	hash *verify.Stream
	out  io.Writer
}

func (h *hashingWriter) Write(p []byte) (int, error) {
	if _, err := h.hash.Write(p); err != nil {
		return 0, err
	}
	return h.out.Write(p)
}

// progressWriter reports bytes as the buffer flushes them into the pipe,
// once per buffer rather than once per row.
type progressWriter struct {
	out     io.Writer
	onBytes func(int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.out.Write(b)
	p.onBytes(int64(n))
	return n, err
}

// stream relays the source's COPY TO into the destination's COPY FROM and
// returns the source's figures and the rows the destination loaded. A
// stream that moves no bytes for the stall timeout is cancelled with a
// *StallError naming the side it waited on. When the source has sent
// everything, stream starts its heartbeat (*hb, reporting a loss to
// onLost): the source idles from then on, while the destination finishes
// (its foreign-key checks and deferred work may take long) and is read
// back. On failure the heartbeat is stopped again.
func (w *worker) stream(ctx context.Context, u *partition.Unit, res *Result, hb **heartbeat, onLost func(error)) (verify.Sum, int64, error) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	prog := &progress{}
	stopWatch := prog.watch(w.opts.StallTimeout, "streaming "+u.Name(), w.src.name, w.dst.name, cancel)
	var alg verify.Algorithm
	if w.opts.Verify == verify.Checksum {
		alg = w.opts.Checksum
	}
	hash := verify.NewStream(u.Binary, alg)
	pr, pw := io.Pipe()
	var sink io.Writer = &handoff{p: prog, out: pw}
	if w.rate != nil {
		sink = w.rate.Writer(sctx, sink)
	}
	if w.opts.OnBytes != nil {
		sink = &progressWriter{out: sink, onBytes: w.opts.OnBytes}
	}
	buf := bufio.NewWriterSize(sink, copyBuffer)
	out := &hashingWriter{hash: hash, out: &counter{p: prog, out: buf}}
	var started *heartbeat
	srcDone := make(chan error, 1)
	go func() {
		_, err := w.srcConn.PgConn().CopyTo(sctx, out, copyOutSQL(u.Source, u.Columns, u.Binary))
		if err == nil {
			err = buf.Flush()
		}
		if err == nil {
			prog.ended.Store(true)
			started = w.startHeartbeat(ctx, w.src, w.srcConn, onLost)
		}
		if err != nil && !errors.Is(err, io.ErrClosedPipe) {
			err = partition.RowSecurityRefusal("source", u.Source, fmt.Errorf("source: copy out of %s: %w", u.Source, err))
		}
		pw.CloseWithError(err) // nil: the reader sees EOF
		srcDone <- err
	}()
	tag, dstErr := w.dstConn.PgConn().CopyFrom(sctx, pr, copyInSQL(u.Dest, u.Columns, u.Binary, u.Freeze))
	pr.Close() // a writer still blocked in the pipe returns at once
	srcErr := <-srcDone
	stopWatch()
	res.Bytes = hash.Bytes()
	if srcErr != nil || dstErr != nil {
		started.stop()
		var se *StallError
		if errors.As(context.Cause(sctx), &se) && ctx.Err() == nil {
			return verify.Sum{}, 0, se
		}
	}
	switch {
	case srcErr != nil && !errors.Is(srcErr, io.ErrClosedPipe):
		return verify.Sum{}, 0, srcErr
	case dstErr != nil:
		return verify.Sum{}, 0, partition.RowSecurityRefusal("destination", u.Dest, fmt.Errorf("destination: copy into %s: %w", u.Dest, dstErr))
	case srcErr != nil:
		return verify.Sum{}, 0, srcErr
	}
	*hb = started
	sum, err := hash.Sum()
	if err != nil {
		return sum, 0, fmt.Errorf("source: copy out of %s: %w", u.Source, err)
	}
	return sum, tag.RowsAffected(), nil
}

// readBack computes the destination's figures from what it stored, inside
// conn's transaction, as figures does for either side of a verify.
func (w *worker) readBack(ctx context.Context, conn *pgx.Conn, u *partition.Unit, loaded int64) (verify.Sum, error) {
	if w.opts.Verify == verify.None {
		return verify.Sum{Rows: loaded}, nil
	}
	// Object names (regclass and the like, also inside domains, arrays
	// and composites) print relative to the search_path: it is pinned for
	// the read-back, in the read-back's own message, once every member is
	// loaded (see attempt), so that triggers and defaults ran under the
	// destination's own; SET LOCAL ends with the transaction.
	pre := ""
	if !u.Binary {
		pre = qualifiedNamesSQL + "; "
	}
	sum, err := figures(ctx, conn, w.dst.name, u.Dest, u, w.opts.Verify, w.opts.Checksum, w.opts.StallTimeout, pre)
	if err != nil && !errors.As(err, new(*StallError)) {
		err = partition.RowSecurityRefusal("destination", u.Dest, fmt.Errorf("destination: read back %s: %w", u.Dest, err))
	}
	return sum, err
}
