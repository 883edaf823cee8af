package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"

	"lockstep/internal/redact"
)

// Log formats (--log-format).
const (
	logText = "text"
	logJSON = "json"
)

func logFormatFlag() cli.Flag {
	return &cli.StringFlag{Name: "log-format", Value: logText, EnvVars: []string{"LOCKSTEP_LOG_FORMAT"},
		Usage: "text (key=value lines: warnings and errors, every step with --verbose) or json (one object per line on stderr, " +
			"nothing else there: progress, each unit's outcome and the closing error too; info and above, every step with --verbose)"}
}

func checkLogFormat(f string) error {
	if f != logText && f != logJSON {
		return fmt.Errorf("unknown --log-format %q (want text or json)", f)
	}
	return nil
}

// newLogger is the run's logger: records on w in format, each carrying the
// run id, with every password removed (redact.NewHandler). Text shows
// warnings and errors, JSON info too (the progress and unit records that
// stand in for the lines a person reads); verbose adds every step.
func newLogger(w io.Writer, format string, verbose bool, runID string, secrets []string) *slog.Logger {
	level := slog.LevelWarn
	if format == logJSON {
		level = slog.LevelInfo
	}
	if verbose {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if format == logJSON {
		// Durations in seconds, named _s, as in the JSON report (text
		// shows them as 1.5s).
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				return slog.Float64(a.Key+"_s", a.Value.Duration().Seconds())
			}
			return a
		}
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(redact.NewHandler(h, secrets...)).With("run", runID)
}

// logFormatArg is the --log-format of arguments whose flags did not parse,
// or of LOCKSTEP_LOG_FORMAT, if it is a valid one: the flag error is then
// logged in it.
func logFormatArg(args []string) string {
	f := os.Getenv("LOCKSTEP_LOG_FORMAT")
	if _, v := flagArg(args, "log-format"); v != "" {
		f = v
	}
	if checkLogFormat(f) != nil {
		return logText
	}
	return f
}

// closing prints an error that ends the run: "lockstep: MSG" on one line,
// or with --log-format json one record at level ERROR with the exit code.
func (st *runState) closing(w io.Writer, msg string) {
	if st.logFormat != logJSON {
		fmt.Fprintf(w, "lockstep: %s\n", msg)
		return
	}
	log := st.opts.Logger
	if log == nil {
		log = newLogger(w, logJSON, false, st.runID, st.secrets)
	}
	log.Error(msg, "exit_code", st.code)
}
