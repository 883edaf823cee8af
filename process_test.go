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

// startLockstep runs this test binary as lockstep (see TestMain).
func startLockstep(t *testing.T, args ...string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "LOCKSTEP_TEST_AS_MAIN=1")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, &out
}

// unlocked reports whether nobody holds a lock on table, waiting up to 10s
// for backends of a dead client to notice.
func unlocked(t *testing.T, dsn, table string) bool {
	t.Helper()
	conn := pgtest.Connect(t, dsn)
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, "SET LOCAL lock_timeout = '200ms'; LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE")
		tx.Rollback(ctx)
		if err == nil {
			return true
		}
	}
	return false
}

// SIGINT and SIGTERM roll back the unit in flight and exit 3; SIGKILL leaves
// the servers to roll back: either way the destination is as before and
// the source unlocked.
func TestSignalsAndKill(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			src, dst := pgtest.Get(t).NewDBs(t)
			pgtest.Exec(t, src, listTable+listRows)
			pgtest.Exec(t, dst, listTable+slowOn("m_a")+`INSERT INTO m VALUES ('a', 0, 'kept'), ('b', 0, 'kept')`)
			srcBefore, dstBefore := tableDigest(t, src, "m"), tableDigest(t, dst, "m")
			cmd, out := startLockstep(t, "copy", "--source", src, "--dest", dst, "--table", "m", "--order", "name", "--jobs", "1")
			waitUntil(t, "m_a in flight", func() bool {
				return pgtest.QueryString(t, dst, `SELECT count(*) FROM pg_stat_progress_copy
					WHERE datname = current_database() AND tuples_processed > 0`) != "0"
			})
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("lockstep ended with %v\n%s", err, out)
			}
			if sig != syscall.SIGKILL {
				if exit.ExitCode() != 3 || !strings.Contains(out.String(), `interrupted "public"."m_a"`) {
					t.Fatalf("exit %d, want 3\n%s", exit.ExitCode(), out)
				}
			}
			for _, p := range []string{"m_a", "m_b", "m_c"} {
				if !unlocked(t, src, p) || !unlocked(t, dst, p) {
					t.Fatalf("%s still locked after %s", p, sig)
				}
			}
			if got := tableDigest(t, dst, "m"); got != dstBefore {
				t.Errorf("destination changed after %s: %s, was %s", sig, got, dstBefore)
			}
			if got := tableDigest(t, src, "m"); got != srcBefore {
				t.Errorf("source changed: %s", got)
			}
		})
	}
}

// The first SIGTERM lets a unit in its commit point finish (it must not be
// cut in two); a second makes lockstep exit at once, and the servers roll
// back what it had open: nothing stays locked, the destination is as before.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			src, dst := pgtest.Get(t).NewDBs(t)
			pgtest.Exec(t, src, `CREATE TABLE seed (id int); CREATE TABLE c (id int PRIMARY KEY); INSERT INTO c SELECT generate_series(1, 1000);`)
			pgtest.Exec(t, dst, `CREATE TABLE seed (id int); CREATE TABLE c (id int PRIMARY KEY); INSERT INTO c VALUES (-1);
				CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$;`)
			if code, _, stderr := lockstep(t, context.Background(), "copy", "--source", src, "--dest", dst, "--table", "seed"); code != 0 {
				t.Fatalf("creating the ledger: exit %d: %s", code, stderr)
			}
			// The unit's ledger row travels with its COMMIT: held up there,
			// the unit is in its commit point.
			pgtest.Exec(t, dst, `CREATE TRIGGER slow_commit AFTER INSERT ON lockstep.units
				  FOR EACH ROW WHEN (NEW.outcome = 'ok') EXECUTE FUNCTION slow_commit();`)
			before := tableDigest(t, dst, "c")
			prom := filepath.Join(t.TempDir(), "lockstep.prom")
			cmd, out := startLockstep(t, "copy", "--source", src, "--dest", dst, "--table", "c", "--log-format", format, "--metrics-file", prom)
			waitUntil(t, "the destination COMMIT", func() bool {
				return pgtest.QueryString(t, dst, `SELECT count(*) FROM pg_stat_activity
					WHERE datname = current_database() AND application_name = 'lockstep' AND wait_event = 'PgSleep' AND state = 'active'`) != "0"
			})
			cmd.Process.Signal(syscall.SIGTERM)
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				t.Fatalf("lockstep exited during its commit point after one SIGTERM: %v\n%s", err, out)
			case <-time.After(time.Second):
			}
			sent := time.Now()
			cmd.Process.Signal(syscall.SIGTERM)
			var err error
			select {
			case err = <-exited:
			case <-time.After(5 * time.Second):
				t.Fatalf("lockstep still running 5s after a second SIGTERM\n%s", out)
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 3 || !strings.Contains(out.String(), "second signal") {
				t.Fatalf("exit %v after %s, want 3\n%s", err, time.Since(sent), out)
			}
			if format == "json" {
				// The last word is a record naming the run, like every other.
				recs := jsonRecords(t, out.String())
				if last := recs[len(recs)-1]; !strings.Contains(last["msg"].(string), "second signal") || last["exit_code"] != 3.0 || last["run"] == "" {
					t.Errorf("last record: %v", last)
				}
			}
			// The metrics file does not go on claiming a run in progress.
			fams := readProm(t, prom)
			if code, end := value(t, fams, "lockstep_run_exit_code"), value(t, fams, "lockstep_run_end_timestamp_seconds"); code != 3 || end == 0 {
				t.Errorf("metrics file after the second signal: exit code %v, end time %v; want 3 and the exit's time", code, end)
			}
			if inFlight := value(t, fams, "lockstep_units_in_flight"); inFlight != 0 {
				t.Errorf("metrics file after the second signal: %v units in flight", inFlight)
			}
			if !unlocked(t, src, "c") || !unlocked(t, dst, "c") {
				t.Fatal("c still locked after lockstep exited")
			}
			if got := tableDigest(t, dst, "c"); got != before {
				t.Errorf("destination changed: %s, was %s", got, before)
			}
		})
	}
}
