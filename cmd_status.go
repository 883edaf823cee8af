package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"lockstep/copy"
	"lockstep/internal/redact"
	"lockstep/ledger"
)

// Exit codes of lockstep status.
const (
	statusDone       = 0 // every unit has a verified copy
	statusFailed     = 1 // the latest attempt of some unit failed
	statusIncomplete = 3 // some units have no verified copy yet
)

const statusExitHelp = `EXIT CODES (status):
   0  every unit asked about has a verified copy
   1  the latest attempt of some unit failed (or mismatched)
   2  bad usage or bad input (a newer ledger, an unknown run, a role that may not read it, ...)
   3  some units have no verified copy yet (never copied, interrupted, unverified,
      older than --since, their columns changed since, or emptied since by a unit
      that truncates their partitioned table), or no run is recorded; with --run,
      also when the run stopped before it reached all the units it planned`

const ledgerHelp = "Each run is recorded in a ledger in the destination (schema lockstep; --ledger-schema), each\n" +
	"unit's success row committing in the unit's own transaction: a run skips the units earlier runs\n" +
	"verified (--redo, --since), and processes started on one selection claim units there and share\n" +
	"them, so the same command can be run again, on one host or many, until lockstep status exits 0.\n" +
	"Creating the ledger needs CREATE on the destination database; --ledger none records nothing."

const defaultStatusRuns = 10

func ledgerSchemaFlag() cli.Flag {
	return &cli.StringFlag{Name: "ledger-schema", Value: ledger.DefaultSchema,
		Usage: "the destination schema that holds the run ledger (created on first use, which needs CREATE on the database)"}
}

// ledgerOptions turns copy's ledger flags into its ledger (nil: --ledger
// none).
func ledgerOptions(c *cli.Context, st *runState) (copy.Ledger, error) {
	schema := c.String("ledger-schema")
	st.ledgerFlags = map[string]any{"ledger": c.String("ledger"), "ledger_schema": schema, "redo": c.Bool("redo"), "since": c.Duration("since").String()}
	switch c.String("ledger") {
	case "destination":
	case "none":
		for _, f := range []string{"ledger-schema", "redo", "since"} {
			if c.IsSet(f) {
				return nil, fmt.Errorf("--%s needs the ledger (it goes against --ledger none)", f)
			}
		}
		st.ledgerOff = true
		return nil, nil
	default:
		return nil, fmt.Errorf("unknown --ledger %q (want destination or none)", c.String("ledger"))
	}
	if schema == "" {
		return nil, errors.New("--ledger-schema: empty")
	}
	if c.Bool("redo") && c.IsSet("since") {
		return nil, errors.New("--redo copies every unit again; --since keeps the recent ones: give one")
	}
	if c.Duration("since") < 0 {
		return nil, errors.New("--since must not be negative")
	}
	return ledger.New(ledger.Config{Schema: schema, Redo: c.Bool("redo"), Since: c.Duration("since"),
		Options: reportOptions(st), Secrets: st.secrets, Logger: st.opts.Logger}), nil
}

// resumeNote says, before units run, what the ledger changes about them.
func (st *runState) resumeNote(ui *output, p *copy.Plan) {
	if st.ledgerOff {
		fmt.Fprintln(ui.errOut, "lockstep: --ledger none: nothing is recorded, so resume is off (every unit is copied) "+
			"and so are claims (two runs on one selection would copy the same units)")
		return
	}
	if n, _, since := p.Resumed(); n > 0 && !ui.quiet {
		fmt.Fprintf(ui.out, "skipped %d units verified by earlier runs (since %s); --redo copies them again\n",
			n, since.UTC().Format(time.RFC3339))
	}
}

func statusCommand(st *runState) *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "list recent runs, and the state of each unit, from the ledger in the destination",
		UsageText: "lockstep status --dest DSN [--run ID | --source DSN (--table NAME | --tables-matching RE | --tables-from FILE)] " +
			"[--format json] [options]",
		Description: "Reads the run ledger that lockstep copy keeps in the destination and changes nothing.\n" +
			"With --run, the units that run attempted; with a selection (planned as copy plans it, so the\n" +
			"source is read too), every unit of it: its last verified copy (when, by which run, checksum),\n" +
			"its last failure, or that it was never copied. Without either, recent runs and counts over\n" +
			"every unit the ledger knows.\n\n" + connHelp + "\n\n" + statusExitHelp,
		Flags: append(selectionFlags(),
			ledgerSchemaFlag(),
			&cli.StringFlag{Name: "run", Usage: "the units of this run (its id, as in the report, the log and status's list of runs)"},
			&cli.IntFlag{Name: "runs", Value: defaultStatusRuns, Usage: "how many recent runs to list"},
			&cli.DurationFlag{Name: "since", Usage: "count only copies this recent as verified (as copy --since does)"},
			&cli.StringFlag{Name: "format", Value: "text", Usage: "text or json"},
		),
		Action: func(c *cli.Context) error {
			opts, err := options(c, st)
			if err != nil {
				return err
			}
			format := c.String("format")
			if format != "text" && format != "json" {
				return fmt.Errorf("unknown --format %q (want text or json)", format)
			}
			q := ledger.StatusQuery{Run: c.String("run"), Runs: c.Int("runs"), Since: c.Duration("since")}
			switch {
			case q.Run != "" && !opts.Selection.Empty():
				return errors.New("--run or a selection (--table, --tables-matching, --tables-from), not both")
			case q.Runs < 1 || q.Since < 0:
				return errors.New("--runs must be positive and --since not negative")
			}
			st.code, err = runStatus(c.Context, opts, c.String("ledger-schema"), q, format, c.App.Writer)
			return err
		},
	}
}

// runStatus prints the ledger's status and returns status's exit code.
func runStatus(ctx context.Context, opts copy.Options, schema string, q ledger.StatusQuery, format string, out io.Writer) (int, error) {
	s, err := copy.ReadStatus(ctx, opts, schema, q)
	if err != nil {
		return exitCode(nil, err), err
	}
	code := statusDone
	switch {
	case s.Failed > 0:
		code = statusFailed
	case s.Never+s.Incomplete+s.Unreached > 0, len(s.Runs) == 0 && opts.Selection.Empty():
		code = statusIncomplete
	}
	if format == "json" {
		b, err := json.MarshalIndent(struct {
			*ledger.Status
			ExitCode int `json:"exit_code"`
		}{s, code}, "", "  ")
		if err != nil {
			return exitFailed, err
		}
		fmt.Fprintln(out, string(b))
		return code, nil
	}
	writeStatus(out, s)
	return code, nil
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }

// writeStatus prints runs, units and counts as tables; names and server
// texts have their control characters escaped.
func writeStatus(w io.Writer, s *ledger.Status) {
	if s.Version == 0 {
		fmt.Fprintf(w, "no ledger in schema %s on the destination yet: no run recorded\n", redact.Control(s.Schema))
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RUN\tSTARTED\tFINISHED\tHOST\tPID\tUNITS\tOK\tFAILED\tSKIPPED\tROWS\tMB\tOUTCOME\t")
		for _, r := range s.Runs {
			fin := "-"
			if r.Finished != nil {
				fin = stamp(*r.Finished)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t%s\t\n", redact.Control(r.ID), stamp(r.Started), fin, redact.Control(r.Host), r.PID,
				r.Units, r.OK, r.Failed, r.Skipped, r.Rows, float64(r.Bytes)/1e6, r.Outcome)
		}
		tw.Flush()
	}
	if len(s.Units) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "UNIT\tSTATE\tLAST VERIFIED COPY\tLAST FAILURE\t")
		for _, u := range s.Units {
			state := u.State
			if u.Why != "" && u.State != ledger.StateNever {
				state += " (" + u.Why + ")"
			}
			if u.InFlight != "" {
				state += ", in flight in run " + u.InFlight
			}
			verified, failure := "-", "-"
			if v := u.Verified; v != nil {
				verified = fmt.Sprintf("%s by run %s", stamp(v.Finished), v.Run)
				if v.Checksum != "" {
					verified += " checksum " + v.Checksum
				}
			}
			if f := u.LastFailure; f != nil {
				failure = fmt.Sprintf("%s by run %s: %s", stamp(f.Finished), f.Run, f.Outcome)
				if f.Error != "" {
					failure += ": " + cut(oneLine(f.Error), 160)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", redact.Control(u.Unit), redact.Control(state), redact.Control(verified), redact.Control(failure))
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\nunits: %d verified, %d failed, %d never copied, %d incomplete\n", s.Verified, s.Failed, s.Never, s.Incomplete)
	if s.Unreached > 0 {
		fmt.Fprintf(w, "%d more units of the run were never reached (it stopped first); ask about its selection to see them\n", s.Unreached)
	}
}

func cut(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
