// Command lockstep moves PostgreSQL tables from a source server to a
// destination server one unit at a time, under locks on both sides, streamed
// in one process, verified inside both transactions and committed at one
// commit point. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"lockstep/copy"
	"lockstep/internal/redact"
	"lockstep/metrics"
	"lockstep/partition"
	"lockstep/throttle"
	"lockstep/verify"
)

// Exit codes; README.md and --help list them.
const (
	exitOK          = 0
	exitFailed      = 1
	exitBadInput    = 2
	exitInterrupted = 3
	exitMismatch    = 4
)

const exitCodesHelp = `EXIT CODES:
   0  every unit copied and verified
   1  a unit failed at run time (it was rolled back; units that committed stand)
   2  bad usage or bad input, found before anything was copied
   3  stopped early (SIGINT/SIGTERM) with units rolled back or not started
   4  verification mismatch (the unit was rolled back)
   When units end differently, the worst wins: 4, then 1, then 3.`

const defaultProgressInterval = 30 * time.Second

// memoryLimit is the heap size lockstep asks Go's garbage collector to stay
// under (a soft limit, GOMEMLIMIT overrides it): at tens of thousands of
// units the collector then works a little harder instead of letting the
// heap double, and the process stays under 64 MB.
const memoryLimit = 40 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	processRunID = copy.NewRunID()
	go abortOnSecondSignal(ctx, processRunID, logFormatArg(os.Args))
	os.Exit(run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr))
}

// processRunID is the run id of the process's run, set by main before run
// starts (so that the second signal's record names it too); tests calling
// run leave it empty and get an id per call.
var processRunID string

// processMetrics is the process's run's metrics, once made, for the second
// signal to record the exit in (see abortOnSecondSignal); tests calling run
// leave it unset.
var processMetrics atomic.Pointer[metrics.Run]

// run is the whole program but for the process: tests call it directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	st := &runState{started: time.Now(), secrets: argSecrets(args), runID: processRunID, logFormat: logText}
	if st.runID == "" {
		st.runID = copy.NewRunID()
	}
	app := &cli.App{
		Name:  "lockstep",
		Usage: "move PostgreSQL tables between servers under locks, verified, with one commit point",
		Description: "Each unit (a table or a leaf partition) is locked on the destination, then on the source,\n" +
			"streamed from COPY TO into COPY FROM, verified by row count and checksum inside both\n" +
			"transactions, and committed on the destination before the source lock is released.",
		CustomAppHelpTemplate: cli.AppHelpTemplate + "\n" + exitCodesHelp + "\n",
		Reader:                stdin,
		Writer:                stdout,
		ErrWriter:             stderr,
		ExitErrHandler:        func(*cli.Context, error) {},
		Commands:              []*cli.Command{copyCommand(st), planCommand(st), verifyCommand(st), syncSequencesCommand(st), statusCommand(st)},
		// cli's own help flag is one package-global value that every parse
		// writes to; each app and command gets its own instead.
		HideHelp: true,
		Flags:    []cli.Flag{helpFlag(), &cli.BoolFlag{Name: "version", Usage: "print the version and VCS revision lockstep was built from"}},
		Action: func(c *cli.Context) error {
			if c.Bool("version") {
				_, err := fmt.Fprintln(c.App.Writer, readBuildInfo())
				return err
			}
			if c.Args().Present() {
				return fmt.Errorf("unknown command %q (want copy, plan, verify, sync-sequences or status)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
	}
	// A flag error is one line on stderr through the redaction, like every
	// other error: cli's own usage message would print the flag's value
	// (perhaps a connection string with its password) unredacted.
	app.OnUsageError = usageError
	for _, cmd := range app.Commands {
		cmd.OnUsageError = usageError
		cmd.HideHelp = true
		cmd.Flags = append(cmd.Flags, logFormatFlag(), helpFlag())
		action := cmd.Action
		cmd.Action = func(c *cli.Context) error {
			st.parsed, st.report = true, c.String("report")
			if err := checkOutputFile("--report", st.report); err != nil {
				st.report = "" // nowhere to write it
				return err
			}
			if err := checkLogFormat(c.String("log-format")); err != nil {
				return err
			}
			st.logFormat = c.String("log-format")
			if c.Bool("help") {
				return cli.ShowCommandHelp(c, c.Command.Name)
			}
			return action(c)
		}
	}
	err := app.RunContext(ctx, args)
	if !st.parsed {
		st.report, st.logFormat = reportArg(args), logFormatArg(args)
	}
	if err != nil {
		if st.code == exitOK {
			st.code = exitBadInput // flag parsing and other usage errors
		}
		st.closing(stderr, redact.Control(oneLine(copy.Redact(err.Error(), st.secrets...))))
	}
	// The report and the metrics are written for every exit, flag errors
	// included.
	if werr := writeReport(st, err); werr != nil {
		st.closing(stderr, redact.Control(oneLine(werr.Error())))
	}
	if st.metrics == nil {
		st.metricsArgs(args, stderr)
	}
	if st.metrics != nil {
		if werr := st.metrics.Finish(st.rep, st.code); werr != nil {
			st.closing(stderr, redact.Control(oneLine(werr.Error())))
		}
	}
	return st.code
}

func usageError(_ *cli.Context, err error, _ bool) error {
	return fmt.Errorf("%w (see --help)", err)
}

func helpFlag() cli.Flag {
	return &cli.BoolFlag{Name: "help", Aliases: []string{"h"}, Usage: "show help"}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

const connHelp = "Connection strings are libpq URLs or key=value strings; PGHOST, PGUSER, PGPASSWORD,\n" +
	"~/.pgpass, sslmode and connect_timeout work as in libpq. A table name is written as SQL\n" +
	"writes it: schema-qualified, double quotes where needed. A partitioned table is one unit\n" +
	"per leaf partition; regexes are POSIX, matched by the source server against schema.table.\n" +
	"Both servers must run PostgreSQL 12 or later."

// copySequencesFlag is --sequences of copy and plan.
func copySequencesFlag() cli.Flag {
	return &cli.StringFlag{Name: "sequences", Value: string(copy.SequencesCopy),
		Usage: "copy (set each destination sequence that feeds a copied column from the source's, never backwards) or none"}
}

// selectionFlags choose the units and describe the plan; copy and plan share them.
func selectionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "source", Usage: "source connection string", EnvVars: []string{"LOCKSTEP_SOURCE"}},
		&cli.StringFlag{Name: "dest", Usage: "destination connection string", EnvVars: []string{"LOCKSTEP_DEST"}},
		&cli.StringSliceFlag{Name: "table", Usage: "table to copy, as SQL writes it (repeatable)"},
		&cli.StringSliceFlag{Name: "tables-matching", Usage: "every table or leaf partition whose schema.table matches this POSIX regex (repeatable)"},
		&cli.StringFlag{Name: "tables-from", Usage: "read table names from this file, one per line, # comments (- for stdin)"},
		&cli.StringSliceFlag{Name: "exclude", Usage: "drop units whose schema.table matches this POSIX regex (repeatable)"},
		&cli.StringFlag{Name: "order", Value: string(partition.BySize), Usage: "size (largest first) or name"},
		&cli.BoolFlag{Name: "exact-counts", Usage: "plan with count(*) of each unit instead of catalog estimates"},
		&cli.StringFlag{Name: "fk-mode", Value: string(partition.FKGroup), Usage: "tables that foreign keys tie together: group (copied as one unit; " +
			"partitions of a referencing partitioned table follow one by one), group-strict (partitions stay in the group), " +
			"or replica (each table alone, foreign keys unchecked; superuser)"},
		&cli.DurationFlag{Name: "max-write-block", Usage: "refuse units predicted to block source writes longer; roll back a unit that does"},
		&cli.Float64Flag{Name: "assume-mbps", Value: copy.DefaultAssumeMBps, Usage: "copy rate (MB of table per second) for predicted write-block times"},
	}
}

// createFlags are copy's and plan's flags for creating missing tables.
func createFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "create-missing", Usage: "create the selected tables the destination lacks (whole partition trees, with the types, sequences, " +
			"constraints and indexes they need) from the source's definitions, by pg_dump --schema-only, in one transaction, before copying; " +
			"a plan only lists them. Never alters an existing table"},
		&cli.StringFlag{Name: "pg-dump", Value: "pg_dump", Usage: "the pg_dump --create-missing runs (major version at least the source's; pg_restore is taken from beside it)"},
	}
}

func planCommand(st *runState) *cli.Command {
	return &cli.Command{
		Name:        "plan",
		Usage:       "print the units a copy would run, locking and changing nothing",
		UsageText:   "lockstep plan --source DSN --dest DSN (--table NAME | --tables-matching RE | --tables-from FILE) [options]",
		Description: connHelp + "\n\n" + exitCodesHelp,
		Flags: append(append(selectionFlags(), createFlags()...),
			&cli.StringFlag{Name: "format", Value: "text", Usage: "text or json"}, copySequencesFlag()),
		Action: func(c *cli.Context) error {
			opts, err := options(c, st)
			if err != nil {
				return err
			}
			st.code, err = runPlan(c.Context, opts, c.String("format"), c.App.Writer, c.App.ErrWriter, st.terminal(c.App.ErrWriter))
			return err
		},
	}
}

// runFlags are the flags of commands that run units: copy and verify.
func runFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.DurationFlag{Name: "lock-timeout", Value: copy.DefaultLockTimeout, Usage: "longest wait for a unit's locks on each side, all its tables together"},
		&cli.StringFlag{Name: "checksum", Value: string(verify.XXH3), Usage: "per-row hash of the checksums: xxh3 (fast, 128 bits) or sha256"},
		&cli.StringFlag{Name: "deadline", Usage: "start no unit after this time, nor one predicted to end after it: HH:MM (local, next occurrence) or RFC 3339; exit 3 when units remain"},
		&cli.DurationFlag{Name: "max-duration", Usage: "like --deadline, this long after the start"},
		&cli.StringFlag{Name: "max-rate", Usage: "cap the bytes streamed per second across all units, e.g. 50MB/s (copy only; lengthens writes-blocked time)"},
		&cli.DurationFlag{Name: "max-replica-lag", Usage: "before each unit, wait while a standby of the destination replays further behind (pg_stat_replication.replay_lag)"},
		&cli.BoolFlag{Name: "source-replicas", Usage: "with --max-replica-lag: watch the source's standbys too"},
		&cli.DurationFlag{Name: "pause-between", Usage: "rest this long between units"},
		&cli.IntFlag{Name: "lock-retries", Value: copy.DefaultLockRetries, Usage: "further attempts after a lock timeout, with backoff and jitter"},
		&cli.DurationFlag{Name: "stall-timeout", Value: copy.DefaultStallTimeout,
			Usage: "roll back a unit whose server stays silent this long (a COPY moving no bytes, a statement unanswered); a dead lockstep's locks are freed within about this, a silent one's within 4 times this"},
		&cli.IntFlag{Name: "jobs", Value: copy.DefaultJobs, Usage: "units run at once, each on its own pair of connections; more than the busiest server's spare cores only blocks writes longer"},
		&cli.BoolFlag{Name: "fail-fast", Usage: "start no new unit after one failed"},
		&cli.StringFlag{Name: "report", Usage: "write a JSON report of the run to this file, whatever the outcome"},
		&cli.DurationFlag{Name: "progress-interval", Value: defaultProgressInterval, Usage: "when not on a terminal, print a status line this often"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print failures and the total line only"},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log each step (at level debug)"},
	}, metricsFlags()...)
}

func newOutput(c *cli.Context, st *runState, line func(copy.Result) string) *output {
	return &output{out: c.App.Writer, errOut: c.App.ErrWriter, quiet: c.Bool("quiet"), line: line,
		interval: c.Duration("progress-interval"), secrets: st.secrets, tty: st.terminal(c.App.ErrWriter),
		log: st.opts.Logger, json: st.logFormat == logJSON}
}

func verifyCommand(st *runState) *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "compare tables on source and destination (count and checksum), optionally pinpointing differing rows",
		UsageText: "lockstep verify --source DSN --dest DSN (--table NAME | --tables-matching RE | --tables-from FILE) " +
			"[--lock | --recheck-locked] [--diff [--key COLS] [--diff-sql FILE]] [options]",
		Description: connHelp + "\n\n" +
			"Each unit is read on both servers at once, each in a REPEATABLE READ snapshot with pinned settings,\n" +
			"and hashed exactly as lockstep copy hashes it, so a copy's checksum and a later verify's agree.\n" +
			"It also checks that no destination sequence feeding a copied column would hand out a value the column\n" +
			"already holds (--sequences none skips this).\n" +
			"Exit 0 when every unit matches, 4 when any differs (never 0 on a difference), 1 on run-time errors,\n" +
			"2 on bad input.\n\n" + exitCodesHelp,
		Flags: append(append(selectionFlags(), runFlags()...),
			&cli.StringFlag{Name: "mode", Value: string(verify.Checksum), Usage: "checksum or count"},
			&cli.BoolFlag{Name: "lock", Usage: "hold each unit's locks (destination first) while comparing, so the result is exact under dual writes"},
			&cli.BoolFlag{Name: "recheck-locked", Usage: "without --lock, re-check a mismatching unit once under its locks before reporting it"},
			&cli.BoolFlag{Name: "diff", Usage: "for a mismatching unit, find the rows that differ by bisecting its key"},
			&cli.StringSliceFlag{Name: "key", Usage: "unique not-null key columns for --diff (default: the primary key)"},
			&cli.IntFlag{Name: "diff-rows", Value: copy.DefaultDiffRows, Usage: "compare rows once a key segment holds at most this many"},
			&cli.StringFlag{Name: "diff-sql", Usage: "write statements that would repair the destination to this file (not executed)"},
			&cli.StringFlag{Name: "sequences", Value: string(copy.SequencesCheck),
				Usage: "check (a destination sequence that would hand out a value its column holds is a difference) or none"},
		),
		Action: func(c *cli.Context) error {
			opts, err := options(c, st)
			if err != nil {
				return err
			}
			opts.Verify = verify.Mode(c.String("mode"))
			opts.VerifyOnly, opts.Lock, opts.RecheckLocked = true, c.Bool("lock"), c.Bool("recheck-locked")
			opts.Diff, opts.DiffKey, opts.DiffRows = c.Bool("diff"), c.StringSlice("key"), c.Int("diff-rows")
			opts.RepairSQL = c.String("diff-sql") != ""
			st.opts = opts
			if opts.Verify == verify.None {
				return fmt.Errorf("--mode none verifies nothing (want checksum or count)")
			}
			if (len(opts.DiffKey) > 0 || opts.RepairSQL) && !opts.Diff {
				return fmt.Errorf("--key and --diff-sql go with --diff")
			}
			ui := newOutput(c, st, copy.Result.CheckString)
			st.code, err = runUnits(c.Context, st, ui, (*copy.Plan).Verify)
			if err == nil && opts.RepairSQL {
				err = writeRepairSQL(c.String("diff-sql"), ui.results)
			}
			return err
		},
	}
}

func writeRepairSQL(path string, results []copy.Result) error {
	var b strings.Builder
	b.WriteString("-- written by lockstep verify --diff; review before running on the destination\nSET standard_conforming_strings = on;\n-- money values are written as they print under lc_monetary C\nSET lc_monetary = 'C';\n-- and parsed as lockstep's sessions parse values\nSET xmloption = content;\nSET array_nulls = on;\nBEGIN;\n")
	for _, r := range results {
		b.WriteString(r.RepairSQL)
	}
	b.WriteString("COMMIT;\n")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("--diff-sql: %w", err)
	}
	return nil
}

func copyCommand(st *runState) *cli.Command {
	return &cli.Command{
		Name:        "copy",
		Usage:       "copy tables (every leaf partition of a partitioned one) from source to destination",
		UsageText:   "lockstep copy --source DSN --dest DSN (--table NAME | --tables-matching RE | --tables-from FILE) [options]",
		Description: connHelp + "\n\n" + ledgerHelp + "\n\n" + exitCodesHelp,
		Flags: append(append(append(selectionFlags(), runFlags()...), createFlags()...),
			&cli.StringFlag{Name: "verify", Value: string(verify.Checksum), Usage: "checksum, count or none"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan and stop (same as lockstep plan)"},
			&cli.BoolFlag{Name: "disable-triggers", Usage: "disable the destination tables' user triggers while loading them, inside the unit's transaction (table owner or superuser)"},
			&cli.BoolFlag{Name: "check-fks", Usage: "with --fk-mode replica: afterwards, count the orphans of the foreign keys the copy did not check (exit 4 if any)"},
			copySequencesFlag(),
			// The run ledger: resume, claims (see cmd_status.go's ledgerOptions).
			&cli.StringFlag{Name: "ledger", Value: "destination", Usage: "where the run record is kept: destination (in --ledger-schema), or none " +
				"(nothing recorded: no resume, no claims)"},
			ledgerSchemaFlag(),
			&cli.BoolFlag{Name: "redo", Usage: "copy every unit again, even those earlier runs verified"},
			&cli.DurationFlag{Name: "since", Usage: "skip only units verified by runs this recent (e.g. 24h); older copies are made again"},
		),
		Action: func(c *cli.Context) error {
			opts, err := options(c, st)
			if err != nil {
				return err
			}
			if c.Bool("dry-run") {
				st.code, err = runPlan(c.Context, opts, "text", c.App.Writer, c.App.ErrWriter, st.terminal(c.App.ErrWriter))
				return err
			}
			if st.opts.Ledger, err = ledgerOptions(c, st); err != nil {
				return err
			}
			ui := newOutput(c, st, func(r copy.Result) string { return oneLine(r.String()) })
			st.code, err = runUnits(c.Context, st, ui, (*copy.Plan).Execute)
			return err
		},
	}
}

// options turns flags into copy.Options and records them and the
// passwords to redact in st.
func options(c *cli.Context, st *runState) (copy.Options, error) {
	if c.Args().Present() {
		return copy.Options{}, fmt.Errorf("unexpected argument %q (tables are given with --table)", c.Args().First())
	}
	opts := copy.Options{
		RunID:  st.runID,
		Source: c.String("source"),
		Dest:   c.String("dest"),
		Selection: partition.Selection{
			Tables:   c.StringSlice("table"),
			Matching: c.StringSlice("tables-matching"),
			Exclude:  c.StringSlice("exclude"),
			Order:    partition.Order(c.String("order")),
		},
		ExactCounts:     c.Bool("exact-counts"),
		FKMode:          partition.FKMode(c.String("fk-mode")),
		Sequences:       copy.SequencesMode(c.String("sequences")),
		CheckFKs:        c.Bool("check-fks"),
		DisableTriggers: c.Bool("disable-triggers"),
		MaxWriteBlock:   c.Duration("max-write-block"),
		AssumeMBps:      c.Float64("assume-mbps"),
		LockTimeout:     c.Duration("lock-timeout"),
		StallTimeout:    c.Duration("stall-timeout"),
		LockRetries:     c.Int("lock-retries"),
		Verify:          verify.Mode(c.String("verify")),
		Checksum:        verify.Algorithm(c.String("checksum")),
		MaxReplicaLag:   c.Duration("max-replica-lag"),
		SourceReplicas:  c.Bool("source-replicas"),
		PauseBetween:    c.Duration("pause-between"),
		Jobs:            c.Int("jobs"),
		FailFast:        c.Bool("fail-fast"),
		CreateMissing:   c.Bool("create-missing"),
		PgDump:          c.String("pg-dump"),
	}
	st.secrets = append(st.secrets, dsnSecrets(opts.Source, opts.Dest)...)
	if err := windowOptions(c, &opts, st.started); err != nil {
		return opts, err
	}
	// Every log record passes through the redaction: no code path can log
	// a password.
	opts.Logger = newLogger(c.App.ErrWriter, st.logFormat, c.Bool("verbose"), st.runID, st.secrets)
	st.opts = opts
	if err := st.newMetrics(c.Command.Name, c.String("metrics-file"), c.String("metrics-listen"), c.StringSlice("metrics-label")); err != nil {
		return opts, err
	}
	if f := c.String("tables-from"); f != "" {
		names, err := readNames(f, c.App.Reader)
		if err != nil {
			return opts, err
		}
		if len(names) == 0 {
			return opts, fmt.Errorf("--tables-from %s: no table names in it", f)
		}
		opts.Tables = append(opts.Tables, names...)
		st.opts = opts
	}
	return opts, nil
}

func readNames(path string, stdin io.Reader) ([]string, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("--tables-from: %w", err)
		}
		defer f.Close()
		r = f
	}
	names, err := partition.ReadNames(r)
	if err != nil {
		return nil, fmt.Errorf("--tables-from %s: %w", path, err)
	}
	return names, nil
}

// runPlan prints the plan; units refused by --max-write-block are printed
// and make it exit 2.
func runPlan(ctx context.Context, opts copy.Options, format string, out, errOut io.Writer, tty bool) (int, error) {
	if format != "text" && format != "json" {
		return exitBadInput, fmt.Errorf("unknown --format %q (want text or json)", format)
	}
	meter := startPlanMeter(errOut, tty, planQuiet)
	opts.OnPlan, opts.PlanOnly = meter.set, true
	p, err := copy.MakePlan(ctx, opts)
	meter.end()
	if p != nil {
		if format == "json" {
			p.WriteJSON(out)
		} else {
			p.WriteText(out)
		}
	}
	return exitCode(nil, err), err
}

// runUnits plans, runs the units (a copy or a verify), records the
// outcome for the report, and returns the exit code. An error is returned
// only when nothing ran.
func runUnits(ctx context.Context, st *runState, ui *output,
	runPlan func(*copy.Plan, context.Context) (*copy.Report, error)) (int, error) {
	opts := st.opts
	if st.metrics != nil {
		if err := st.metrics.Open(); err != nil {
			return exitBadInput, err
		}
	}
	meter := startPlanMeter(ui.errOut, ui.tty && !ui.quiet, planQuiet)
	opts.OnPlan, opts.OnCreate = meter.set, func(c copy.Created) { st.created = &c }
	p, err := copy.MakePlan(ctx, opts)
	meter.end()
	if st.created != nil {
		fmt.Fprintf(ui.out, "created on the destination (--create-missing, %s): %s\n", st.created.PgDump, redact.Control(st.created.String()))
	}
	if err != nil {
		return exitCode(nil, err), err
	}
	st.resumeNote(ui, p)
	if st.metrics != nil {
		st.metrics.Planned(p.Len(), p.Totals.EstBytes)
		if n, bytes, _ := p.Resumed(); n > 0 {
			st.metrics.Resumed(n, bytes)
		}
	}
	ui.begin(ctx, p)
	rep, err := runPlan(p.WithCallbacks(st.callbacks(ui)), ctx)
	ui.end(rep)
	st.rep, st.runErr = rep, err
	return exitCode(rep, err), nil
}

// exitCode maps an outcome to the documented codes; the worst wins.
func exitCode(rep *copy.Report, err error) int {
	var bad *copy.BadInputError
	switch {
	case errors.As(err, &bad):
		return exitBadInput
	case rep == nil && err != nil:
		return exitInterrupted
	case rep == nil:
		return exitOK
	case rep.Mismatch > 0 || rep.Orphans > 0:
		return exitMismatch
	case rep.Failed > 0:
		return exitFailed
	case err != nil:
		return exitInterrupted
	}
	return exitOK
}

// windowOptions reads --deadline, --max-duration and --max-rate.
func windowOptions(c *cli.Context, opts *copy.Options, started time.Time) error {
	if d := c.String("deadline"); d != "" {
		t, err := throttle.ParseDeadline(d, started)
		if err != nil {
			return err
		}
		opts.Deadline = t
	}
	if d := c.Duration("max-duration"); d != 0 {
		if d < 0 {
			return fmt.Errorf("--max-duration %s: must be positive", d)
		}
		if t := started.Add(d); opts.Deadline.IsZero() || t.Before(opts.Deadline) {
			opts.Deadline = t
		}
	}
	if r := c.String("max-rate"); r != "" {
		bps, err := throttle.ParseRate(r)
		if err != nil {
			return err
		}
		opts.MaxRate = bps
	}
	return nil
}

// abortOnSecondSignal exits at once on a signal that follows the one that
// cancelled ctx: the first stops starting units and rolls back those in
// flight (a commit point still runs to its end, up to two minutes); a
// second gives up waiting. The servers then roll back whatever lockstep
// had open when its connections close. With --log-format json (as the
// arguments or LOCKSTEP_LOG_FORMAT give it) the last word is a record.
func abortOnSecondSignal(ctx context.Context, runID, logFormat string) {
	<-ctx.Done()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	const msg = "second signal: exiting at once; the servers roll back what was in flight"
	if m := processMetrics.Load(); m != nil {
		m.Abort(exitInterrupted) // exiting at once: a file that cannot be written stays as it was
	}
	if logFormat == logJSON {
		newLogger(os.Stderr, logJSON, false, runID, nil).Error(msg, "exit_code", exitInterrupted)
	} else {
		fmt.Fprintln(os.Stderr, "lockstep: "+msg)
	}
	os.Exit(exitInterrupted)
}
