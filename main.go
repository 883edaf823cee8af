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
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"

	"lockstep/copy"
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
   1  a unit failed at run time (it was rolled back; the others stand)
   2  bad usage or bad input, found before anything was copied
   3  stopped early (SIGINT/SIGTERM) with units rolled back or not started
   4  verification mismatch (the unit was rolled back)`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args, os.Stdout, os.Stderr))
}

// run is the whole program but for the process: tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	code := exitOK
	secrets := []string{os.Getenv("PGPASSWORD")}
	app := &cli.App{
		Name:  "lockstep",
		Usage: "move PostgreSQL tables between servers under locks, verified, with one commit point",
		Description: "Each unit (a table or a leaf partition) is locked on the destination, then on the source,\n" +
			"streamed from COPY TO into COPY FROM, verified by row count and checksum inside both\n" +
			"transactions, and committed on the destination before the source lock is released.",
		CustomAppHelpTemplate: cli.AppHelpTemplate + "\n" + exitCodesHelp + "\n",
		Writer:                stdout,
		ErrWriter:             stderr,
		ExitErrHandler:        func(*cli.Context, error) {},
		Commands:              []*cli.Command{copyCommand(&code, &secrets)},
	}
	if err := app.RunContext(ctx, args); err != nil {
		fmt.Fprintf(stderr, "lockstep: %s\n", oneLine(copy.Redact(err.Error(), secrets...)))
		if code == exitOK {
			code = exitBadInput // flag parsing and other usage errors
		}
	}
	return code
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func copyCommand(code *int, secrets *[]string) *cli.Command {
	return &cli.Command{
		Name:      "copy",
		Usage:     "copy tables (every leaf partition of a partitioned one) from source to destination",
		UsageText: "lockstep copy --source DSN --dest DSN --table NAME [--table NAME ...] [options]",
		Description: "Connection strings are libpq URLs or key=value strings; PGHOST, PGUSER, PGPASSWORD,\n" +
			"~/.pgpass, sslmode and connect_timeout work as in libpq. A table name is written as SQL\n" +
			"writes it: schema-qualified, double quotes where needed.\n\n" + exitCodesHelp,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "source", Usage: "source connection string", EnvVars: []string{"LOCKSTEP_SOURCE"}},
			&cli.StringFlag{Name: "dest", Usage: "destination connection string", EnvVars: []string{"LOCKSTEP_DEST"}},
			&cli.StringSliceFlag{Name: "table", Usage: "table to copy, as SQL writes it (repeatable)"},
			&cli.DurationFlag{Name: "lock-timeout", Value: copy.DefaultLockTimeout, Usage: "longest wait for each table lock, on each side"},
			&cli.IntFlag{Name: "lock-retries", Value: copy.DefaultLockRetries, Usage: "further attempts after a lock timeout, with backoff and jitter"},
			&cli.StringFlag{Name: "verify", Value: string(verify.Checksum), Usage: "checksum, count or none"},
			&cli.IntFlag{Name: "jobs", Value: copy.DefaultJobs, Usage: "units copied at once"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print failures and the total line only"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log each step"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return fmt.Errorf("unexpected argument %q (tables are given with --table)", c.Args().First())
			}
			opts := copyOptions(c)
			for _, dsn := range []string{opts.Source, opts.Dest} {
				if cfg, err := pgx.ParseConfig(dsn); err == nil {
					*secrets = append(*secrets, cfg.Password)
				}
			}
			var err error
			*code, err = runCopy(c.Context, opts, c.Bool("quiet"), c.App.Writer, *secrets)
			return err
		},
	}
}

func copyOptions(c *cli.Context) copy.Options {
	level := slog.LevelWarn
	if c.Bool("verbose") {
		level = slog.LevelDebug
	}
	return copy.Options{
		Source:      c.String("source"),
		Dest:        c.String("dest"),
		Tables:      c.StringSlice("table"),
		LockTimeout: c.Duration("lock-timeout"),
		LockRetries: c.Int("lock-retries"),
		Verify:      verify.Mode(c.String("verify")),
		Jobs:        c.Int("jobs"),
		Logger:      slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level})),
	}
}

// runCopy runs a copy, prints a line per unit and a total, and returns the
// exit code: the worst outcome wins (mismatch, then failure, then
// interruption). An error is returned only when nothing was copied.
func runCopy(ctx context.Context, opts copy.Options, quiet bool, out io.Writer, secrets []string) (int, error) {
	var mu sync.Mutex
	opts.OnUnit = func(r copy.Result) {
		if quiet && r.Status == copy.StatusOK {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(out, oneLine(copy.Redact(r.String(), secrets...)))
	}
	rep, err := copy.Run(ctx, opts)
	var bad *copy.BadInputError
	switch {
	case errors.As(err, &bad):
		return exitBadInput, err
	case rep == nil:
		return exitInterrupted, err
	}
	fmt.Fprintln(out, rep.Summary())
	switch {
	case rep.Mismatch > 0:
		return exitMismatch, nil
	case rep.Failed > 0:
		return exitFailed, nil
	case err != nil:
		return exitInterrupted, nil
	}
	return exitOK, nil
}
