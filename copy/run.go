package copy

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"lockstep/partition"
	"lockstep/throttle"
	"lockstep/verify"
)

// Run plans the units and copies them. Everything it can find wrong before
// copying (connections, tables, schemas) comes back as a *BadInputError with
// nothing changed anywhere. After that, each unit ends on its own; the
// returned error joins the units' errors, plus ErrInterrupted when ctx ended
// with units not started. The report is complete in every case but bad input.
func Run(ctx context.Context, opts Options) (*Report, error) {
	p, err := MakePlan(ctx, opts)
	if err != nil {
		return nil, err
	}
	return p.Execute(ctx)
}

// plan connects to both sides, checks they are different databases, and
// reads both catalogs in read-only transactions that lock nothing beyond
// catalog reads.
func plan(ctx context.Context, src, dst *side, opts *Options) ([]partition.Group, error) {
	type opened struct {
		conn *pgx.Conn
		err  error
	}
	var sc, dc opened
	opts.planStage("connecting")
	g := errgroup.Group{}
	g.Go(func() error { sc.conn, sc.err = src.connect(ctx); return nil })
	g.Go(func() error { dc.conn, dc.err = dst.connect(ctx); return nil })
	g.Wait()
	defer closeConn(ctx, sc.conn)
	defer closeConn(ctx, dc.conn)
	if sc.err != nil {
		return nil, sc.err
	}
	if dc.err != nil {
		return nil, dc.err
	}
	if err := checkVersion(src.name, sc.conn); err != nil {
		return nil, err
	}
	if err := checkVersion(dst.name, dc.conn); err != nil {
		return nil, err
	}
	same, err := sameDatabase(ctx, sc.conn, dc.conn)
	if err != nil {
		return nil, err
	}
	if same {
		return nil, errors.New("source and destination are the same database: nothing to copy, and the TRUNCATE would empty it")
	}
	// md5 is missing on FIPS builds; the diff then hashes rows with sha256
	// on both sides.
	opts.hashFunc = "md5"
	for _, c := range []opened{sc, dc} {
		if _, err := c.conn.Exec(ctx, "SELECT pg_catalog.md5('')"); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			opts.hashFunc = "sha256"
		}
	}
	if opts.hashFunc != "md5" {
		opts.Logger.Warn("md5() is unavailable on a server (FIPS build?): row hashes for --diff use sha256")
	}
	sameMajor := serverVersion(sc.conn)/10000 == serverVersion(dc.conn)/10000
	for _, c := range []*pgx.Conn{sc.conn, dc.conn} {
		if err := exec(ctx, c, beginSnapshot); err != nil {
			return nil, err
		}
		defer rollback(ctx, c)
	}
	opts.planStage("self-test of both servers")
	if err := verify.SelfTest(ctx, sc.conn, dc.conn, sameMajor); err != nil {
		return nil, err
	}
	return partition.Plan(ctx, sc.conn, dc.conn, partition.Options{
		Selection:       opts.Selection,
		SameMajor:       sameMajor,
		ExactCounts:     opts.ExactCounts,
		Copy:            !opts.VerifyOnly,
		Lock:            !opts.VerifyOnly || opts.Lock || opts.RecheckLocked,
		WithKey:         opts.Diff,
		Key:             opts.DiffKey,
		FKMode:          opts.FKMode,
		DisableTriggers: opts.DisableTriggers,
		Progress:        opts.OnPlan,
		SkipMissing:     opts.skipMissing, // --create-missing: see create.go
	})
}

// sameDatabase tells whether two connections reach one database of one
// server: the same database name on a postmaster started at the same
// instant.
func sameDatabase(ctx context.Context, a, b *pgx.Conn) (bool, error) {
	const id = `SELECT pg_catalog.current_database() || ' ' || pg_catalog.pg_postmaster_start_time()::text`
	var x, y string
	if err := a.QueryRow(ctx, id).Scan(&x); err != nil {
		return false, fmt.Errorf("source: %w", err)
	}
	if err := b.QueryRow(ctx, id).Scan(&y); err != nil {
		return false, fmt.Errorf("destination: %w", err)
	}
	return x == y, nil
}

// execute runs the groups on opts.Jobs workers. A failing group does not
// stop the others (each is atomic on its own), but a group that must follow
// another (see partition.Group.After) starts only once that one committed.
func execute(ctx context.Context, opts *Options, src, dst *side, groups []partition.Group, attempt attemptFunc) (*Report, error) {
	rep := &Report{Started: time.Now(), Units: make([]Result, len(groups))}
	gate, rate, closeGate, err := newGate(ctx, opts, src, dst)
	if err != nil {
		return nil, err
	}
	defer closeGate()
	workers := make(chan *worker, opts.Jobs)
	for range opts.Jobs {
		workers <- &worker{opts: opts, src: src, dst: dst, rate: rate}
	}
	finished := make([]chan struct{}, len(groups)) // closed when the group ended
	committed := make([]atomic.Bool, len(groups))
	for i := range finished {
		finished[i] = make(chan struct{})
	}
	var g errgroup.Group
	g.SetLimit(opts.Jobs)
	var failed atomic.Bool // with FailFast: start nothing more
	for i := range groups {
		gr := &groups[i]
		rep.Units[i] = newResult(gr)
		if ctx.Err() != nil || failed.Load() {
			close(finished[i])
			continue
		}
		g.Go(func() error {
			defer close(finished[i])
			// Groups this one must follow were started before it, so
			// waiting here cannot keep them from a worker.
			for _, a := range gr.After {
				select {
				case <-ctx.Done():
					return nil
				case <-finished[a]:
				}
				if !committed[a].Load() {
					rep.Units[i].Error = fmt.Sprintf("not started: it must follow %s, which did not commit", groups[a].Name())
					return nil
				}
			}
			w := <-workers
			defer func() { workers <- w }()
			if ctx.Err() != nil || failed.Load() {
				return nil
			}
			if err := gate.Admit(ctx, throttle.Next{Unit: gr.Name(), EstBytes: gr.Estimate().Bytes}); err != nil {
				switch {
				case throttle.IsDeadline(err):
					rep.Units[i].Error = err.Error() // not started: left for the next window
				case ctx.Err() == nil:
					rep.Units[i].Status, rep.Units[i].Err, rep.Units[i].Error = StatusFailed, err, err.Error()
				}
				return nil
			}
			if opts.OnStart != nil {
				opts.OnStart(gr.Name())
			}
			r := w.run(ctx, gr, attempt)
			rep.Units[i] = r
			gate.done(r)
			committed[i].Store(r.Status == StatusOK)
			if r.Status != StatusOK && opts.FailFast {
				failed.Store(true)
			}
			if r.Status == StatusOK {
				opts.Logger.Debug("unit copied", "unit", r.Unit, "rows", r.Rows, "bytes", r.Bytes)
			}
			if opts.OnUnit != nil {
				opts.OnUnit(r)
			}
			return nil
		})
	}
	g.Wait()
	close(workers)
	for w := range workers {
		w.close(ctx)
	}
	rep.Elapsed = time.Since(rep.Started)
	rep.tally()
	if !opts.Deadline.IsZero() {
		rep.Deadline = opts.Deadline
		for i, r := range rep.Units {
			if r.Status == StatusNotStarted {
				rep.Remaining++
				rep.RemainingPredicted += gate.predict(groups[i].Estimate().Bytes)
			}
		}
	}
	var errs []error
	for _, r := range rep.Units {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	if rep.Left+rep.Interrupted > 0 && !failed.Load() {
		errs = append(errs, fmt.Errorf("%w: %d of %d units rolled back or not started", ErrInterrupted, rep.Left+rep.Interrupted, len(groups)))
	}
	return rep, errors.Join(errs...)
}
