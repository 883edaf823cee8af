package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"lockstep/copy"
	"lockstep/metrics"
)

// runState is what one invocation keeps between urfave/cli's callbacks and
// the end of run, which writes the --report file last, with the final exit
// code, whichever way the command ended (flag errors included).
type runState struct {
	code      int
	started   time.Time
	runID     string   // copy.Options.RunID: in every log record, the report and the metrics
	secrets   []string // passwords to redact from everything printed or written
	logFormat string   // --log-format: how main's own closing lines are written too

	parsed  bool   // the command's flags parsed: report is its --report
	report  string // --report FILE, or "" for none
	opts    copy.Options
	rep     *copy.Report  // the units' outcomes, when units ran
	created *copy.Created // tables --create-missing created
	runErr  error         // the units' joined errors, when units ran
	metrics *metrics.Run  // --metrics-file, --metrics-listen: finished with the exit code

	ledgerOff   bool           // copy --ledger none
	ledgerFlags map[string]any // copy's ledger flags, for the report
}

// jsonReport is what --report writes.
type jsonReport struct {
	RunID    string         `json:"run_id"`
	Version  buildInfo      `json:"lockstep"`
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished"`
	ExitCode int            `json:"exit_code"`
	Error    string         `json:"error,omitempty"`
	Options  map[string]any `json:"options"`
	Created  *copy.Created  `json:"created_on_destination,omitempty"` // by --create-missing
	Run      *copy.Report   `json:"run,omitempty"`
}

// writeReport writes st's report, if one was asked for; err is what the
// command returned (nil when units ran, whatever their outcome).
// checkOutputFile refuses, before anything runs, a file lockstep would
// write only at the end (the report, the metrics): a directory, or a path
// whose directory does not exist. Empty: not asked for.
func checkOutputFile(flag, path string) error {
	if path == "" {
		return nil
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s %s: is a directory", flag, path)
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case err != nil:
		return fmt.Errorf("%s %s: %w", flag, path, err)
	case !fi.IsDir():
		return fmt.Errorf("%s %s: %s is not a directory", flag, path, dir)
	}
	return nil
}

func writeReport(st *runState, err error) error {
	if st.report == "" {
		return nil
	}
	secrets := st.secrets
	r := jsonReport{RunID: st.runID, Version: readBuildInfo(), Started: st.started, Finished: time.Now(), ExitCode: st.code, Run: st.rep, Created: st.created,
		Options: reportOptions(st)}
	if err == nil {
		err = st.runErr
	}
	if err != nil {
		r.Error = oneLine(copy.Redact(err.Error(), secrets...))
	}
	if st.rep != nil {
		for i := range st.rep.Units {
			st.rep.Units[i].Error = copy.Redact(st.rep.Units[i].Error, secrets...)
		}
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	if err := os.WriteFile(st.report, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	return nil
}

// reportOptions are the run's options as the report and the ledger keep
// them, passwords redacted.
func reportOptions(st *runState) map[string]any {
	opts, secrets := st.opts, st.secrets
	o := map[string]any{
		"source": copy.RedactDSN(opts.Source, secrets...), "dest": copy.RedactDSN(opts.Dest, secrets...),
		"tables": opts.Tables, "tables_matching": opts.Matching, "exclude": opts.Exclude, "order": opts.Order,
		"jobs": opts.Jobs, "fail_fast": opts.FailFast, "verify": opts.Verify,
		"lock_timeout": opts.LockTimeout.String(), "lock_timeout_s": opts.LockTimeout.Seconds(),
		"stall_timeout": opts.StallTimeout.String(), "stall_timeout_s": opts.StallTimeout.Seconds(),
		"max_write_block": opts.MaxWriteBlock.String(), "max_write_block_s": opts.MaxWriteBlock.Seconds(),
		"lock_retries": opts.LockRetries, "assume_mbps": opts.AssumeMBps,
		"lock": opts.Lock, "recheck_locked": opts.RecheckLocked, "diff": opts.Diff, "key": opts.DiffKey, "diff_rows": opts.DiffRows,
		"fk_mode": opts.FKMode, "check_fks": opts.CheckFKs, "disable_triggers": opts.DisableTriggers,
		"create_missing": opts.CreateMissing, "pg_dump": opts.PgDump,
		"sequences": opts.Sequences,
	}
	for k, v := range st.ledgerFlags {
		o[k] = v
	}
	return o
}

// reportArg finds --report FILE in the arguments of a copy or verify
// command whose flags did not parse.
func reportArg(args []string) string {
	if cmd, path := flagArg(args, "report"); cmd == "copy" || cmd == "verify" {
		return path
	}
	return ""
}

// flagArg finds the command and the value of its flag --name in arguments
// that did not parse (the last one wins, as in parsing).
func flagArg(args []string, name string) (cmd, value string) {
	cmd, values := flagArgs(args, name)
	if len(values) > 0 {
		value = values[len(values)-1]
	}
	return cmd, value
}

// flagArgs finds the command and every value of its flag --name in
// arguments that did not parse.
func flagArgs(args []string, name string) (cmd string, values []string) {
	var rest []string
	for i, a := range args {
		if i > 0 && !strings.HasPrefix(a, "-") {
			cmd, rest = a, args[i+1:]
			break
		}
	}
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "--":
			return cmd, values
		case a == "--"+name || a == "-"+name:
			if i+1 < len(rest) {
				values = append(values, rest[i+1])
				i++
			}
		case strings.HasPrefix(a, "--"+name+"="), strings.HasPrefix(a, "-"+name+"="):
			_, v, _ := strings.Cut(a, "=")
			values = append(values, v)
		}
	}
	return cmd, values
}

// argSecrets are the passwords known before any flag is parsed, so that
// even a flag error is printed without them: PGPASSWORD, and those of
// LOCKSTEP_SOURCE, LOCKSTEP_DEST and of every argument that reads as a
// connection string (also as the value of --flag=value).
func argSecrets(args []string) []string {
	cands := []string{os.Getenv("LOCKSTEP_SOURCE"), os.Getenv("LOCKSTEP_DEST")}
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			_, a, _ = strings.Cut(a, "=")
		}
		if strings.Contains(a, "=") || strings.Contains(a, "://") {
			cands = append(cands, a)
		}
	}
	return append([]string{os.Getenv("PGPASSWORD")}, dsnSecrets(cands...)...)
}

// dsnSecrets are the passwords connection strings carry (or get from
// PGPASSWORD or a password file).
func dsnSecrets(dsns ...string) []string {
	var out []string
	for _, dsn := range dsns {
		if dsn == "" {
			continue
		}
		if cfg, err := pgx.ParseConfig(dsn); err == nil && cfg.Password != "" {
			out = append(out, cfg.Password)
		}
	}
	return out
}
