package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"lockstep/copy"
	"lockstep/internal/redact"
)

func syncSequencesCommand(st *runState) *cli.Command {
	// Of the selection flags, those that choose tables: nothing is copied
	// or locked.
	chosen := []string{"source", "dest", "table", "tables-matching", "tables-from", "exclude"}
	flags := slices.DeleteFunc(selectionFlags(), func(f cli.Flag) bool { return !slices.Contains(chosen, f.Names()[0]) })
	return &cli.Command{
		Name:  "sync-sequences",
		Usage: "at switch-over, move the destination's sequences that feed the selected tables up to the source's",
		UsageText: "lockstep sync-sequences --source DSN --dest DSN (--table NAME | --tables-matching RE | --tables-from FILE) " +
			"[--margin N] [--dry-run]",
		Description: connHelp + "\n\n" +
			"While the application dual-writes, the source's sequences move on and the destination's (fed explicit\n" +
			"values) do not. Right before the application moves to the destination, this sets every destination\n" +
			"sequence that feeds a selected table (owned by a column: serial, identity; or named in a column's DEFAULT)\n" +
			"to the current value of the source's sequence of the same name plus --margin, in the sequence's\n" +
			"direction, never moving one backwards, within its MINVALUE and MAXVALUE, in one destination\n" +
			"transaction, and prints each one's source value and the destination's before and after.\n" +
			"No table is locked, no rows are read. Exit 0 when done, 2 on bad input (nothing changed), 1 on a\n" +
			"failure while setting, 3 when interrupted.",
		Flags: append(flags,
			&cli.Int64Flag{Name: "margin", Usage: "set each sequence this much further than the source's value (in its direction), for writes still in flight"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be set and change nothing"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log each step"},
		),
		Action: func(c *cli.Context) error {
			opts, err := options(c, st)
			if err != nil {
				return err
			}
			var rep *copy.SyncReport
			st.code, rep, err = runSyncSequences(c.Context, opts, c.Int64("margin"), c.Bool("dry-run"))
			if rep != nil {
				writeSyncReport(c.App.Writer, rep)
			}
			return err
		},
	}
}

// runSyncSequences runs sync-sequences and maps its outcome to an exit code.
func runSyncSequences(ctx context.Context, opts copy.Options, margin int64, dryRun bool) (int, *copy.SyncReport, error) {
	rep, err := copy.SyncSequences(ctx, opts, margin, dryRun)
	var bad *copy.BadInputError
	switch {
	case err == nil:
		return exitOK, rep, nil
	case errors.As(err, &bad):
		return exitBadInput, nil, err
	case ctx.Err() != nil:
		return exitInterrupted, nil, err
	}
	return exitFailed, nil, err
}

// writeSyncReport prints one line per sequence, names escaped.
func writeSyncReport(w io.Writer, rep *copy.SyncReport) {
	set, ahead := 0, 0
	if len(rep.Sequences) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQUENCE\tSOURCE\tDESTINATION BEFORE\tDESTINATION AFTER\t")
		for _, s := range rep.Sequences {
			what := "set"
			switch {
			case !s.Set:
				what, ahead = "already as far along: left alone", ahead+1
			case rep.DryRun:
				what, set = "would be set", set+1
			default:
				set++
			}
			if s.Clamped {
				what += " (clamped to the sequence's bound)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", redact.Control(s.Sequence), s.Source, s.Before, s.After, what)
		}
		tw.Flush()
	}
	for _, u := range rep.Unmatched {
		fmt.Fprintf(w, "left alone: %s (the source has no sequence of that name feeding the tables)\n", redact.Control(u))
	}
	verb := "set"
	if rep.DryRun {
		verb = "would be set (dry run: nothing changed)"
	}
	margin := ""
	if rep.Margin != 0 {
		margin = fmt.Sprintf(" with a margin of %d", rep.Margin)
	}
	fmt.Fprintf(w, "sync-sequences: %d sequence(s) %s%s, %d already as far along, %d without a source sequence\n",
		set, verb, margin, ahead, len(rep.Unmatched))
}
