package copy

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
	if !opts.syncOnly { // sync-sequences compares no rows
		opts.planStage("self-test of both servers")
		if err := verify.SelfTest(ctx, sc.conn, dc.conn, sameMajor); err != nil {
			return nil, err
		}
	}
	copying := !opts.VerifyOnly && !opts.syncOnly
	return partition.Plan(ctx, sc.conn, dc.conn, partition.Options{
		Selection:       opts.Selection,
		SameMajor:       sameMajor,
		ExactCounts:     opts.ExactCounts,
		Copy:            copying,
		Lock:            copying || opts.Lock || opts.RecheckLocked,
		ReadOnly:        opts.statusOnly,
		WithKey:         opts.Diff,
		Key:             opts.DiffKey,
		FKMode:          opts.FKMode,
		DisableTriggers: opts.DisableTriggers,
		Sequences:       opts.sequenceMode(),
		Progress:        opts.OnPlan,
		Warn:            func(msg string) { opts.Logger.Warn(msg) },
		SkipMissing:     opts.skipMissing, // --create-missing: see create.go
	})
}

// sequenceMode is which sequences the plan reads.
func (o *Options) sequenceMode() partition.SequenceMode {
	switch o.Sequences {
	case SequencesCopy:
		return partition.SequencesFromSource
	case SequencesCheck:
		return partition.SequencesOnDest
	}
	return partition.SequencesNone
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
// r (nil for a verify) is what the ledger said when the run started:
// groups it trusts are skipped, and the others are claimed before they
// start (see scheduler).
func execute(ctx context.Context, opts *Options, src, dst *side, groups []partition.Group, r *resume, attempt attemptFunc) (*Report, error) {
	rep := &Report{Started: time.Now(), Units: make([]Result, len(groups))}
	s := newScheduler(opts, groups, rep, r)
	gate, rate, closeGate, err := newGate(ctx, opts, src, dst)
	if err != nil {
		// No unit started: the report says so (a stop that came now, or a
		// replica-lag connection that failed, leaves every unit to a
		// later run).
		rep.Elapsed = time.Since(rep.Started)
		rep.tally()
		if ctx.Err() != nil {
			return rep, fmt.Errorf("%w before the first unit: %v", ErrInterrupted, err)
		}
		return rep, errors.Join(err, fmt.Errorf("%w: %d of %d units not started", ErrInterrupted, rep.Left, len(groups)))
	}
	defer closeGate()
	var wg sync.WaitGroup
	for range opts.Jobs {
		wg.Go(func() {
			w := &worker{opts: opts, src: src, dst: dst, rate: rate}
			defer w.close(ctx)
			for {
				i, ok := s.next(ctx)
				if !ok {
					return
				}
				gr := &groups[i]
				if err := gate.Admit(ctx, throttle.Next{Unit: gr.Name(), EstBytes: gr.Estimate().Bytes}); err != nil {
					s.led.Release(ctx, s.keys[i])
					s.refused(ctx, i, err)
					continue
				}
				if opts.OnStart != nil {
					opts.OnStart(gr.Name())
				}
				res := w.run(ctx, gr, attempt)
				// After the unit's record, so that the next claimant
				// reads it.
				s.led.Release(ctx, s.keys[i])
				s.done(i, res)
				gate.done(res)
				if res.Status == StatusOK {
					opts.Logger.Debug("unit copied", "unit", res.Unit, "rows", res.Rows, "bytes", res.Bytes)
				}
				if opts.OnUnit != nil {
					opts.OnUnit(res)
				}
			}
		})
	}
	wg.Wait()
	s.close()
	failed := s.failedFast()
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
	if rep.Left+rep.Interrupted > 0 && !failed {
		errs = append(errs, fmt.Errorf("%w: %d of %d units rolled back or not started", ErrInterrupted, rep.Left+rep.Interrupted, len(groups)))
	}
	return rep, errors.Join(errs...)
}
