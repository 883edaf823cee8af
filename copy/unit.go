package copy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"lockstep/lock"
	"lockstep/partition"
	"lockstep/verify"
)

// worker runs units one after another on its own pair of connections.
type worker struct {
	opts     *Options
	src, dst *side
	srcConn  *pgx.Conn
	dstConn  *pgx.Conn
	srcVer   int
	dstVer   int
}

func (w *worker) ensureConns(ctx context.Context) error {
	var err error
	if w.dstConn == nil {
		if w.dstConn, err = w.dst.connect(ctx); err != nil {
			return err
		}
		w.dstVer = serverVersion(w.dstConn)
	}
	if w.srcConn == nil {
		if w.srcConn, err = w.src.connect(ctx); err != nil {
			return err
		}
		w.srcVer = serverVersion(w.srcConn)
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

// attemptFunc is one try at a unit: a copy, or a comparison.
type attemptFunc func(w *worker, ctx context.Context, u partition.Unit, res *Result) error

// run does one unit, retrying after lock timeouts with backoff.
func (w *worker) run(ctx context.Context, u partition.Unit, attempt attemptFunc) Result {
	res := Result{Unit: u.Name(), Format: u.Format(), Freeze: u.Freeze, EstBytes: u.Estimate.Bytes}
	log := w.opts.Logger.With("unit", u.Name())
	for {
		res.Attempts++
		err := attempt(w, ctx, u, &res)
		var te *lock.TimeoutError
		if errors.As(err, &te) && res.Attempts <= w.opts.LockRetries && ctx.Err() == nil {
			pause := lock.Backoff(res.Attempts, w.opts.RetryBackoff, 30*time.Second)
			log.Warn("lock not granted; retrying", "side", te.Side, "attempt", res.Attempts, "pause", pause, "error", err)
			if lock.Sleep(ctx, pause) == nil {
				continue
			}
			err = fmt.Errorf("%w (interrupted while waiting to retry)", err)
		}
		res.Err = err
		switch {
		case err == nil:
			res.Status = StatusOK
		case ctx.Err() != nil:
			res.Status = StatusInterrupted
		case errors.As(err, new(*verify.MismatchError)):
			res.Status = StatusMismatch
		default:
			res.Status = StatusFailed
		}
		if err != nil {
			res.Error = err.Error()
		}
		return res
	}
}

// beginSnapshot opens a read-only transaction whose snapshot is taken at
// its first query, after the lock.
const beginSnapshot = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

// conn is the worker's connection to side.
func (w *worker) conn(sd *side) (*pgx.Conn, int) {
	if sd == w.dst {
		return w.dstConn, w.dstVer
	}
	return w.srcConn, w.srcVer
}

// begin opens the unit's transaction on one side with the pinned session
// settings and, unless mode is empty, locks t there before anything else.
// It returns when the LOCK statement was sent (from then on a queued
// EXCLUSIVE request already blocks new writers) and how long it waited;
// timeout bounds the lock wait. A server silent for the stall timeout
// (beyond the lock timeout, for the lock) ends it with a *StallError.
func (w *worker) begin(ctx context.Context, sd *side, t partition.Table, begin string, mode lock.Mode, timeout time.Duration) (time.Time, time.Duration, error) {
	conn, ver := w.conn(sd)
	sql := begin + "; " + sessionSQL(ver)
	if strings.HasPrefix(begin, beginSnapshot) {
		sql += "; " + qualifiedNamesSQL
	}
	if err := w.step(ctx, sd, conn, "BEGIN", sql); err != nil {
		return time.Time{}, 0, err
	}
	if mode == "" {
		return time.Time{}, 0, nil
	}
	lctx, cancel := bounded(ctx, sd.name, "to LOCK TABLE "+t.String()+" (beyond --lock-timeout)", timeout+w.opts.StallTimeout)
	defer cancel()
	sent := time.Now()
	wait, err := lock.Acquire(lctx, conn, lock.Request{Side: sd.name, Table: t.Ident(), Only: !t.Partitioned(), Mode: mode,
		Timeout: timeout, Watch: sd.connect})
	return sent, wait, stalled(lctx, err)
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

// attempt is one pass of the unit protocol.
func (w *worker) attempt(ctx context.Context, u partition.Unit, res *Result) (err error) {
	if u.DestOnly {
		// Only verify plans hold these; a copy plan refuses them.
		return fmt.Errorf("destination: %s exists only on the destination: nothing to copy into it", u.Dest)
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
	log := w.opts.Logger.With("unit", u.Name())
	// 1. Destination first: the source is never write-blocked while the
	// destination lock is awaited.
	if _, res.DestLockWait, err = w.begin(ctx, w.dst, u.Dest, "BEGIN", lock.AccessExclusive, w.opts.LockTimeout); err != nil {
		return err
	}
	log.Debug("destination locked", "side", "destination", "mode", lock.AccessExclusive, "waited", res.DestLockWait)
	// 2. Source: lock before any query, so the snapshot (taken by the first
	// query, the COPY) sees every write committed before the lock. Writes
	// are blocked from the moment the LOCK is sent: a queued EXCLUSIVE
	// request already holds up every later writer. The destination idles
	// meanwhile, up to --lock-timeout: its heartbeat gives up the wait as
	// soon as the destination is lost.
	lctx, lost := context.WithCancelCause(ctx)
	dhb := w.startHeartbeat(ctx, w.dst, w.dstConn, lost)
	sent, wait, err := w.begin(lctx, w.src, u.Source, beginSnapshot, lock.Exclusive, w.opts.sourceLockTimeout())
	herr := dhb.stop()
	lost(nil)
	res.SourceLockWait += wait
	if herr != nil {
		res.WritesBlocked += wait
		return herr
	}
	if err != nil {
		res.WritesBlocked += wait
		return err
	}
	log.Debug("source locked", "side", "source", "mode", lock.Exclusive, "waited", wait)
	defer func() {
		res.SourceLockHeld = time.Since(sent) - wait
		res.WritesBlocked += time.Since(sent)
	}()

	// From the LOCK on, writes to the source table wait on us:
	// --max-write-block bounds this stretch, up to the commit point.
	bctx := ctx
	if w.opts.MaxWriteBlock > 0 {
		var cancel context.CancelFunc
		bctx, cancel = context.WithDeadlineCause(ctx, sent.Add(w.opts.MaxWriteBlock),
			&WriteBlockError{Unit: u.Name(), Limit: w.opts.MaxWriteBlock})
		defer cancel()
	}
	overrun := func(err error) error {
		if bctx.Err() != nil && ctx.Err() == nil {
			return context.Cause(bctx)
		}
		return err
	}

	// 3. Replace.
	if err := w.step(bctx, w.dst, w.dstConn, "TRUNCATE "+u.Dest.String(), truncateSQL(u.Dest)); err != nil {
		return overrun(err)
	}
	log.Debug("destination truncated", "side", "destination")

	// 4. Stream. Once the source has sent everything it idles until its
	// commit, under a heartbeat that cancels vctx if the source is lost.
	vctx, sourceLost := context.WithCancelCause(bctx)
	defer sourceLost(nil)
	start := time.Now()
	srcSum, loaded, err := w.stream(bctx, u, res, &hb, sourceLost)
	res.Copy = time.Since(start)
	if err != nil {
		poisoned = true
		return overrun(err)
	}
	res.Rows = srcSum.Rows
	log.Debug("streamed", "rows", srcSum.Rows, "loaded", loaded, "bytes", res.Bytes, "format", u.Format(), "took", res.Copy)

	// 5. Verify inside both transactions.
	start = time.Now()
	dstSum, err := w.readBack(vctx, w.dstConn, u, loaded)
	res.Verify = time.Since(start)
	if err != nil {
		poisoned = true
		if vctx.Err() != nil && bctx.Err() == nil {
			err = context.Cause(vctx)
		}
		return fmt.Errorf("%w; rolled back", overrun(err))
	}
	if err := overrun(nil); err != nil {
		return err
	}
	if err := verify.Compare(u.Name(), w.opts.Verify, srcSum, dstSum); err != nil {
		return fmt.Errorf("%w; rolled back", err)
	}
	if loaded != srcSum.Rows {
		return fmt.Errorf("%w; rolled back", &verify.MismatchError{Unit: u.Name(), Mode: verify.None, Source: srcSum, Dest: verify.Sum{Rows: loaded}})
	}
	if w.opts.Verify == verify.Checksum {
		res.Checksum = srcSum.Checksum()
	}
	log.Debug("verified", "mode", w.opts.Verify, "rows", dstSum.Rows, "checksum", res.Checksum, "took", res.Verify)
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

	// 6. One commit point.
	if done, err = w.commitPoint(ctx, u, res); err != nil {
		poisoned = true
		return err
	}
	return nil
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
func (w *worker) stream(ctx context.Context, u partition.Unit, res *Result, hb **heartbeat, onLost func(error)) (verify.Sum, int64, error) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	prog := &progress{}
	stopWatch := prog.watch(w.opts.StallTimeout, "streaming "+u.Name(), w.src.name, w.dst.name, cancel)
	hash := verify.NewStream(u.Binary, w.opts.Verify == verify.Checksum)
	pr, pw := io.Pipe()
	var sink io.Writer = &handoff{p: prog, out: pw}
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
func (w *worker) readBack(ctx context.Context, conn *pgx.Conn, u partition.Unit, loaded int64) (verify.Sum, error) {
	if w.opts.Verify == verify.None {
		return verify.Sum{Rows: loaded}, nil
	}
	if !u.Binary {
		if err := w.step(ctx, w.dst, conn, "SET search_path", qualifiedNamesSQL); err != nil {
			return verify.Sum{}, err
		}
	}
	sum, err := figures(ctx, conn, w.dst.name, u.Dest, u, w.opts.Verify, w.opts.StallTimeout)
	if err == nil && !u.Binary {
		err = w.step(ctx, w.dst, conn, "SET search_path", defaultNamesSQL)
	}
	if err != nil && !errors.As(err, new(*StallError)) {
		err = partition.RowSecurityRefusal("destination", u.Dest, fmt.Errorf("destination: read back %s: %w", u.Dest, err))
	}
	return sum, err
}
