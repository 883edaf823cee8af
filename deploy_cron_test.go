package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"lockstep/internal/pgtest"
)

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// deploy/cron/lockstep-cron.sh, run as cron would run it against real
// servers with this test binary as lockstep: each exit code of lockstep
// becomes what the script promises (silence for done and for resume next
// window, one line otherwise), SIGTERM reaches lockstep and rolls the unit
// back, and the log, report, metrics and done files are where it says.
func TestCronWrapper(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	for _, n := range []string{"c_1", "c_2"} {
		pgtest.Exec(t, src, "CREATE TABLE "+n+" (id int PRIMARY KEY); INSERT INTO "+n+" SELECT generate_series(1, 500)")
		pgtest.Exec(t, dst, "CREATE TABLE "+n+" (id int PRIMARY KEY)")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "c.conf")
	logDir, stateDir, metricsDir := filepath.Join(dir, "log"), filepath.Join(dir, "state"), filepath.Join(dir, "metrics")
	configure := func(args string) {
		t.Helper()
		c := "NAME=c\nexport LOCKSTEP_SOURCE=" + shellQuote(src) + "\nexport LOCKSTEP_DEST=" + shellQuote(dst) + "\n" +
			"ARGS=(--tables-matching '^public\\.c_[0-9]$' --jobs 1 --order name " + args + ")\n" +
			"LOG_DIR=" + shellQuote(logDir) + " STATE_DIR=" + shellQuote(stateDir) + " METRICS_DIR=" + shellQuote(metricsDir) +
			" LOCKSTEP=" + shellQuote(exe) + "\n"
		if err := os.WriteFile(conf, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	start := func() (*exec.Cmd, *strings.Builder) {
		cmd := exec.Command("deploy/cron/lockstep-cron.sh", conf)
		cmd.Env = append(os.Environ(), "LOCKSTEP_TEST_AS_MAIN=1")
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &out
	}
	wait := func(cmd *exec.Cmd) int {
		err := cmd.Wait()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	}
	runWrapper := func() (int, string) {
		cmd, out := start()
		return wait(cmd), out.String()
	}
	reportCode := func() float64 { return readReport(t, filepath.Join(stateDir, "c.report.json"))["exit_code"].(float64) }
	metricsCode := func() float64 {
		return value(t, readProm(t, filepath.Join(metricsDir, "c.prom")), "lockstep_run_exit_code", "command", "copy", "move", "c")
	}
	done := filepath.Join(stateDir, "c.done")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Done: silent, exit 0; the log is JSON, the unit lines go to c.out.
	configure("")
	if code, out := runWrapper(); code != 0 || out != "" {
		t.Fatalf("done: exit %d, printed %q", code, out)
	}
	if _, err := os.Stat(done); err != nil || reportCode() != 0 || metricsCode() != 0 {
		t.Fatalf("done: marker %v, report exit %v, metrics exit %v", err, reportCode(), metricsCode())
	}
	logText, _ := os.ReadFile(filepath.Join(logDir, "c.log"))
	if len(jsonRecords(t, string(logText))) == 0 || !strings.Contains(string(logText), `"msg":"unit finished"`) {
		t.Errorf("c.log: %s", logText)
	}
	if b, _ := os.ReadFile(filepath.Join(logDir, "c.out")); !strings.Contains(string(b), "total: 2 units ok") {
		t.Errorf("c.out: %s", b)
	}
	// Once done, later nights do nothing.
	before, _ := os.ReadFile(filepath.Join(stateDir, "c.report.json"))
	if code, out := runWrapper(); code != 0 || out != "" {
		t.Fatalf("after done: exit %d, printed %q", code, out)
	}
	if after, _ := os.ReadFile(filepath.Join(stateDir, "c.report.json")); string(after) != string(before) {
		t.Errorf("lockstep ran again after the move was done")
	}
	os.Remove(done)

	// SIGTERM while a unit waits for its lock: lockstep rolls back and
	// exits 3, which is "resume next window": silent, exit 0, not done.
	pgtest.Exec(t, dst, "TRUNCATE c_1, c_2")
	blocker := pgtest.Connect(t, src)
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE c_1 IN SHARE ROW EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	configure("--lock-timeout 60s --redo") // the run ledger holds the first night's copies
	cmd, out := start()
	waitForLockQueue(t, ctx, src, "c_1")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := wait(cmd); code != 0 || out.String() != "" {
		t.Fatalf("SIGTERM: exit %d, printed %q", code, out)
	}
	if _, err := os.Stat(done); err == nil || reportCode() != 3 || metricsCode() != 3 {
		t.Errorf("SIGTERM: done marker written (%v), report exit %v, metrics exit %v", err, reportCode(), metricsCode())
	}
	if got := pgtest.QueryString(t, dst, "SELECT count(*) FROM c_1"); got != "0" {
		t.Errorf("SIGTERM: destination c_1 has %s rows", got)
	}

	// A unit fails (its lock is not granted): one line, exit 1.
	configure("--lock-timeout 200ms --lock-retries 0")
	if code, out := runWrapper(); code != 1 || !strings.Contains(out, "lockstep c: a unit failed") || !strings.Contains(out, "c.report.json") {
		t.Errorf("failed unit: exit %d, printed %q", code, out)
	}
	tx.Rollback(ctx)

	// A mismatch: exit 4.
	pgtest.Exec(t, dst, `CREATE FUNCTION neg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.id := -NEW.id; RETURN NEW; END $$;
	                     CREATE TRIGGER neg BEFORE INSERT ON c_2 FOR EACH ROW EXECUTE FUNCTION neg();`)
	configure("--redo")
	if code, out := runWrapper(); code != 4 || !strings.Contains(out, "verification mismatch") {
		t.Errorf("mismatch: exit %d, printed %q", code, out)
	}
	pgtest.Exec(t, dst, "DROP TRIGGER neg ON c_2")

	// Bad input: exit 2 with lockstep's error.
	configure("--table nope")
	if code, out := runWrapper(); code != 2 || !strings.Contains(out, "bad input") || !strings.Contains(out, "nope does not exist") {
		t.Errorf("bad input: exit %d, printed %q", code, out)
	}
	if _, err := os.Stat(done); err == nil {
		t.Errorf("a failed night wrote the done marker")
	}
}

// The crontab line runs the wrapper under flock -n with the example
// configuration, whose ARGS are flags lockstep copy accepts.
func TestCronExample(t *testing.T) {
	b, err := os.ReadFile("deploy/cron/lockstep.cron")
	if err != nil {
		t.Fatal(err)
	}
	var entry []string
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") || strings.Contains(f[0], "=") {
			continue
		}
		if entry != nil {
			t.Fatalf("more than one cron entry: %q", line)
		}
		entry = f
	}
	if len(entry) != 11 || entry[6] != "flock" || entry[7] != "-n" || filepath.Base(entry[9]) != "lockstep-cron.sh" ||
		filepath.Base(entry[10]) != "orders.conf" {
		t.Fatalf("cron entry (m h dom mon dow user flock -n LOCK SCRIPT CONFIG): %q", entry)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// No connection strings: the flags parse, and the error is the
	// missing source, not a flag error.
	cmd := exec.Command("bash", "-c", `source deploy/cron/orders.conf && unset LOCKSTEP_SOURCE LOCKSTEP_DEST && exec "$0" copy "${ARGS[@]}"`, exe)
	cmd.Env = append(os.Environ(), "LOCKSTEP_TEST_AS_MAIN=1")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "source: no connection string") || strings.Contains(string(out), "see --help") {
		t.Errorf("orders.conf's ARGS: %s", out)
	}
}
