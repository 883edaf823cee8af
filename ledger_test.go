package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"lockstep/internal/pgtest"
)

// advisoryLocks counts the advisory locks held in dsn's database: claims
// and runs' own locks.
func advisoryLocks(t *testing.T, dsn string) string {
	return pgtest.QueryString(t, dsn, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
}

// copies lists, per unit, how many success rows the ledger holds.
func copies(t *testing.T, dsn string) string {
	return pgtest.QueryString(t, dsn, `SELECT coalesce(string_agg(unit || ':' || n, ' ' ORDER BY unit), '')
		FROM (SELECT unit, count(*) n FROM lockstep.units WHERE outcome = 'ok' GROUP BY unit) x`)
}

// unitLine is the line of status's output about unit.
func unitLine(out, unit string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, unit+" ") {
			return l
		}
	}
	return ""
}

// A run killed with SIGKILL while a unit is in flight leaves that unit
// rolled back, nothing locked and no claim behind; the next run skips the
// unit the killed one verified, copies the others, and ends with every
// unit identical on both sides.
func TestKilledRunResumes(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, listTable+listRows)
	pgtest.Exec(t, dst, listTable+slowOn("m_b"))
	args := []string{"copy", "--source", src, "--dest", dst, "--table", "m", "--order", "name", "--jobs", "1", "--progress-interval", "0"}
	cmd, out := startLockstep(t, args...)
	waitUntil(t, "m_b in flight", func() bool {
		return pgtest.QueryString(t, dst, `SELECT count(*) FROM pg_stat_progress_copy
			WHERE datname = current_database() AND relid = 'm_b'::regclass AND tuples_processed > 0`) != "0"
	})
	if got := copies(t, dst); got != `"public"."m_a":1` {
		t.Fatalf("before the kill, the ledger holds %q", got)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	for _, p := range []string{"m_a", "m_b", "m_c"} {
		if !unlocked(t, src, p) || !unlocked(t, dst, p) {
			t.Fatalf("%s still locked after SIGKILL\n%s", p, out)
		}
	}
	waitUntil(t, "the killed run's claims to vanish", func() bool { return advisoryLocks(t, dst) == "0" })
	if got := tableDigest(t, dst, "m_b"); !strings.HasPrefix(got, "0:") {
		t.Errorf("m_b committed by a killed run: %s", got)
	}
	code, status, _ := lockstep(t, context.Background(), "status", "--source", src, "--dest", dst, "--table", "m")
	if code != 3 || !strings.Contains(status, "died") || !strings.Contains(unitLine(status, `"public"."m_b"`), "never copied") ||
		!strings.Contains(unitLine(status, `"public"."m_a"`), "verified") {
		t.Errorf("status after the kill: exit %d, want 3\n%s", code, status)
	}

	code, stdout, errOut := lockstep(t, context.Background(), args...)
	if code != 0 || !strings.Contains(stdout, "skipped 1 units verified by earlier runs (since ") ||
		!strings.Contains(stdout, `ok "public"."m_b"`) || !strings.Contains(stdout, `ok "public"."m_c"`) ||
		!strings.Contains(stdout, "total: 2 units ok, 0 failed, 0 mismatched, 0 interrupted, 0 not started, 1 skipped") {
		t.Fatalf("the run after the kill: exit %d\n%s\n%s", code, stdout, errOut)
	}
	for _, p := range []string{"m_a", "m_b", "m_c"} {
		if a, b := tableDigest(t, src, p), tableDigest(t, dst, p); a != b {
			t.Errorf("%s: source %s, destination %s", p, a, b)
		}
	}
	if got := copies(t, dst); got != `"public"."m_a":1 "public"."m_b":1 "public"."m_c":1` {
		t.Errorf("copies: %s", got)
	}
	if n := advisoryLocks(t, dst); n != "0" {
		t.Errorf("%s advisory locks left", n)
	}
	if code, status, _ := lockstep(t, context.Background(), "status", "--source", src, "--dest", dst, "--table", "m"); code != 0 {
		t.Errorf("status after the resumed run: exit %d\n%s", code, status)
	}
}

// Two, or five, processes started at once on one selection of 40 tables
// copy each table once between them and all exit 0.
func TestManyProcessesShareOneSelection(t *testing.T) {
	t.Parallel()
	const tables = 40
	for _, procs := range []int{2, 5} {
		t.Run(fmt.Sprint(procs), func(t *testing.T) {
			src, dst := pgtest.Get(t).NewDBs(t)
			var schema, rows, slow strings.Builder
			slow.WriteString(`CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.2); RETURN NULL; END $$;`)
			for i := range tables {
				fmt.Fprintf(&schema, "CREATE TABLE t%02d (id int PRIMARY KEY, v text);", i)
				fmt.Fprintf(&rows, "INSERT INTO t%02d SELECT g, md5(g::text) FROM generate_series(1, 500) g;", i)
				// Each unit takes a while, so that the processes overlap.
				fmt.Fprintf(&slow, "CREATE TRIGGER slow AFTER INSERT ON t%02d FOR EACH STATEMENT EXECUTE FUNCTION slow();", i)
			}
			pgtest.Exec(t, src, schema.String()+rows.String())
			pgtest.Exec(t, dst, schema.String()+slow.String())
			dir := t.TempDir()
			type proc struct {
				cmd    *exec.Cmd
				out    *strings.Builder
				report string
			}
			var ps []proc
			for i := range procs {
				report := filepath.Join(dir, fmt.Sprintf("report-%d.json", i))
				cmd, out := startLockstep(t, "copy", "--source", src, "--dest", dst, "--tables-matching", `^public\.t[0-9]+$`,
					"--jobs", "2", "--progress-interval", "0", "--report", report)
				ps = append(ps, proc{cmd, out, report})
			}
			ok, busy := 0, 0
			for i, p := range ps {
				err := p.cmd.Wait()
				var exit *exec.ExitError
				if errors.As(err, &exit) || err != nil {
					t.Errorf("process %d: %v\n%s", i, err, p.out)
					continue
				}
				b, err := os.ReadFile(p.report)
				if err != nil {
					t.Fatal(err)
				}
				var rep struct {
					Run struct {
						OK, Skipped int
						Failed      int `json:"failed"`
					} `json:"run"`
				}
				if err := json.Unmarshal(b, &rep); err != nil {
					t.Fatal(err)
				}
				if rep.Run.OK+rep.Run.Skipped != tables || rep.Run.Failed != 0 {
					t.Errorf("process %d: %d ok, %d skipped, %d failed\n%s", i, rep.Run.OK, rep.Run.Skipped, rep.Run.Failed, p.out)
				}
				ok += rep.Run.OK
				if rep.Run.OK > 0 {
					busy++
				}
			}
			if ok != tables {
				t.Errorf("%d processes copied %d units in all, want each of the %d once", procs, ok, tables)
			}
			if busy < 2 {
				t.Errorf("only %d of %d processes copied anything: they did not overlap", busy, procs)
			}
			if n := pgtest.QueryString(t, dst, "SELECT count(*) || '/' || count(DISTINCT unit_key) FROM lockstep.units WHERE outcome = 'ok'"); n != fmt.Sprintf("%d/%d", tables, tables) {
				t.Errorf("success rows / units: %s, want %d/%d", n, tables, tables)
			}
			if a, b := tableDigests(t, src), tableDigests(t, dst); a != b {
				t.Errorf("the destination differs:\n%s\nsource:\n%s", b, a)
			}
			if n := advisoryLocks(t, dst); n != "0" {
				t.Errorf("%s advisory locks left", n)
			}
		})
	}
}

// status exits 0 when every unit asked about has a verified copy, 3 when
// some have none yet, 1 when the latest attempt of some unit failed; on a
// fresh destination, after a partial run and after a full one.
func TestStatusExitCodes(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := "CREATE TABLE t1 (id int PRIMARY KEY); CREATE TABLE t2 (id int PRIMARY KEY); CREATE TABLE t3 (id int PRIMARY KEY);"
	pgtest.Exec(t, src, schema+"INSERT INTO t1 SELECT generate_series(1, 10); INSERT INTO t2 SELECT generate_series(1, 20);")
	pgtest.Exec(t, dst, schema+`CREATE FUNCTION no() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'not today'; END $$;
		CREATE TRIGGER no BEFORE INSERT ON t2 FOR EACH ROW EXECUTE FUNCTION no();`)
	before := snapshot(t, dst)
	sel := []string{"--source", src, "--dest", dst, "--table", "t1", "--table", "t2"}
	status := func(want int, args ...string) string {
		t.Helper()
		code, out, errOut := lockstep(t, context.Background(), append([]string{"status"}, args...)...)
		if code != want {
			t.Fatalf("status: exit %d, want %d\n%s%s", code, want, out, errOut)
		}
		return out
	}

	// A fresh destination: nothing recorded, nothing created.
	if out := status(3, "--dest", dst); !strings.Contains(out, `no ledger in schema lockstep on the destination yet`) {
		t.Errorf("fresh destination:\n%s", out)
	}
	out := status(3, sel...)
	if !strings.Contains(unitLine(out, `"public"."t2"`), "never copied") || !strings.Contains(out, "units: 0 verified, 0 failed, 2 never copied") {
		t.Errorf("fresh destination, a selection:\n%s", out)
	}
	if snapshot(t, dst) != before || pgtest.QueryString(t, dst, "SELECT count(*) FROM pg_namespace WHERE nspname = 'lockstep'") != "0" {
		t.Fatal("status changed the destination")
	}

	// A partial run: t1 copied, t2 failed.
	mustRun(t, 1, append([]string{"copy"}, sel...)...)
	first := pgtest.QueryString(t, dst, "SELECT id FROM lockstep.runs")
	out = status(1, sel...)
	if l := unitLine(out, `"public"."t1"`); !strings.Contains(l, " verified ") || !strings.Contains(l, "by run "+first+" checksum ") {
		t.Errorf("after a partial run, t1: %s\n%s", l, out)
	}
	if l := unitLine(out, `"public"."t2"`); !strings.Contains(l, " failed ") || !strings.Contains(l, "not today") {
		t.Errorf("after a partial run, t2: %s\n%s", l, out)
	}
	if !strings.Contains(out, "units: 1 verified, 1 failed, 0 never copied") {
		t.Errorf("after a partial run:\n%s", out)
	}
	status(1, "--dest", dst, "--run", first)
	var js struct {
		ExitCode int `json:"exit_code"`
		Runs     []struct {
			ID      string `json:"id"`
			OK      int    `json:"ok"`
			Failed  int    `json:"failed"`
			Outcome string `json:"outcome"`
		} `json:"runs"`
		Units []struct {
			Unit  string `json:"unit"`
			State string `json:"state"`
		} `json:"units"`
	}
	if err := json.Unmarshal([]byte(status(1, append(sel, "--format", "json")...)), &js); err != nil {
		t.Fatal(err)
	}
	if js.ExitCode != 1 || len(js.Runs) != 1 || js.Runs[0].ID != first || js.Runs[0].OK != 1 || js.Runs[0].Failed != 1 || js.Runs[0].Outcome != "failed" ||
		len(js.Units) != 2 || js.Units[1].State != "failed" {
		t.Errorf("json: %+v", js)
	}

	// A full run.
	pgtest.Exec(t, dst, "DROP TRIGGER no ON t2")
	out = mustRun(t, 0, append([]string{"copy"}, sel...)...)
	if !strings.Contains(out, "skipped 1 units verified by earlier runs") || !strings.Contains(out, `ok "public"."t2"`) {
		t.Errorf("the second run:\n%s", out)
	}
	status(0, sel...)
	status(0, "--dest", dst)
	status(0, "--dest", dst, "--run", first)
	status(3, append(sel, "--table", "t3")...)
	time.Sleep(50 * time.Millisecond)
	status(3, append(sel, "--since", "10ms")...)
	if code, _, errOut := lockstep(t, context.Background(), "status", "--dest", dst, "--run", "nope"); code != 2 || !strings.Contains(errOut, `has no run "nope"`) {
		t.Errorf("an unknown run: exit %d: %s", code, errOut)
	}
}

// --ledger none records nothing, resumes nothing and says so.
func TestLedgerNone(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 10);")
	pgtest.Exec(t, dst, "CREATE TABLE t (id int);")
	for range 2 {
		code, out, errOut := lockstep(t, context.Background(), "copy", "--source", src, "--dest", dst, "--table", "t", "--ledger", "none")
		if code != 0 || !strings.Contains(out, "total: 1 units ok") || !strings.Contains(errOut, "--ledger none: nothing is recorded, so resume is off") {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
	}
	if n := pgtest.QueryString(t, dst, "SELECT count(*) FROM pg_namespace WHERE nspname = 'lockstep'"); n != "0" {
		t.Error("--ledger none created the ledger")
	}
	code, _, errOut := lockstep(t, context.Background(), "copy", "--source", src, "--dest", dst, "--table", "t", "--ledger", "none", "--redo")
	if code != 2 || !strings.Contains(errOut, "--redo needs the ledger") {
		t.Errorf("--redo with --ledger none: exit %d: %s", code, errOut)
	}
}

// A role that may not create the ledger's schema gets exit 2 and one line
// naming the privilege, with nothing changed; --ledger none lets it copy.
func TestLedgerSchemaTheRoleCannotCreate(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	role, as := newRole(t, "noschema", dst)
	pgtest.Exec(t, src, "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 10);")
	pgtest.Exec(t, dst, "CREATE TABLE t (id int); INSERT INTO t VALUES (-1); GRANT SELECT, INSERT, TRUNCATE ON t TO "+role)
	before := snapshot(t, dst)
	code, out, errOut := lockstep(t, context.Background(), "copy", "--source", src, "--dest", as(dst), "--table", "t")
	want := `lockstep: destination: ledger schema "lockstep": it does not exist, and role "` + role + `" may not create it: ` +
		`that needs the CREATE privilege on database`
	if code != 2 || !strings.HasPrefix(errOut, want) || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "--ledger none") {
		t.Fatalf("exit %d, want 2 and one line starting\n%s\n%s%s", code, want, out, errOut)
	}
	if snapshot(t, dst) != before || pgtest.QueryString(t, dst, "SELECT count(*) FROM pg_namespace WHERE nspname = 'lockstep'") != "0" {
		t.Fatal("the destination changed")
	}
	mustRun(t, 0, "copy", "--source", src, "--dest", as(dst), "--table", "t", "--ledger", "none")
}

// A role that may not read the ledger gets from status exit 2 (bad input)
// and one line naming the side, the schema and the privilege: not 3, which
// says units remain to be copied and would have a cron job run copy again.
func TestStatusLedgerTheRoleCannotRead(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	role, as := newRole(t, "nostatus", dst)
	pgtest.Exec(t, src, "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 10);")
	pgtest.Exec(t, dst, "CREATE TABLE t (id int); GRANT SELECT, INSERT, TRUNCATE ON t TO "+role)
	mustRun(t, 0, "copy", "--source", src, "--dest", dst, "--table", "t")
	for _, args := range [][]string{{}, {"--source", src, "--table", "t"}} {
		code, out, errOut := lockstep(t, context.Background(), append([]string{"status", "--dest", as(dst)}, args...)...)
		if code != 2 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, `destination: ledger`) ||
			!strings.Contains(errOut, "permission denied for schema lockstep") || !strings.Contains(errOut, "GRANT USAGE ON SCHEMA") {
			t.Errorf("status %v: exit %d, want 2 and one line naming the privilege\n%s%s", args, code, out, errOut)
		}
	}
}

// A ledger schema may have any name.
func TestOddLedgerSchemaName(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 10);")
	pgtest.Exec(t, dst, "CREATE TABLE t (id int);")
	const schema = `run "ledger"; 1`
	args := []string{"--source", src, "--dest", dst, "--table", "t", "--ledger-schema", schema}
	mustRun(t, 0, append([]string{"copy"}, args...)...)
	if out := mustRun(t, 0, append([]string{"copy"}, args...)...); !strings.Contains(out, "skipped 1 units verified by earlier runs") {
		t.Errorf("the second run did not resume:\n%s", out)
	}
	if n := pgtest.QueryString(t, dst, "SELECT count(*) FROM pg_tables WHERE schemaname = $1", schema); n != "3" {
		t.Errorf("%s tables in the schema", n)
	}
	mustRun(t, 0, append([]string{"status"}, args...)...)
	mustRun(t, 3, "status", "--dest", dst) // the default schema holds nothing
}

// Asked about one run that stopped before it reached every unit it
// planned, status does not say "done": the ledger holds no row for the
// units it never reached, only their number, and status counts them.
func TestStatusOfARunStoppedEarly(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := "CREATE TABLE t1 (id int PRIMARY KEY); CREATE TABLE t2 (id int PRIMARY KEY);"
	pgtest.Exec(t, src, schema+"INSERT INTO t1 SELECT generate_series(1, 10); INSERT INTO t2 SELECT generate_series(1, 20);")
	pgtest.Exec(t, dst, schema)
	// The deadline has passed before the first unit: none starts.
	mustRun(t, 3, "copy", "--source", src, "--dest", dst, "--table", "t1", "--table", "t2", "--max-duration", "1ns")
	run := pgtest.QueryString(t, dst, "SELECT id FROM lockstep.runs")
	code, out, errOut := lockstep(t, context.Background(), "status", "--dest", dst, "--run", run)
	if code != 3 || !strings.Contains(out, "2 more units of the run were never reached") {
		t.Fatalf("status --run of a run that reached no unit: exit %d, want 3\n%s%s", code, out, errOut)
	}
	var js struct {
		ExitCode  int `json:"exit_code"`
		Unreached int `json:"unreached"`
	}
	_, out, _ = lockstep(t, context.Background(), "status", "--dest", dst, "--run", run, "--format", "json")
	if err := json.Unmarshal([]byte(out), &js); err != nil || js.ExitCode != 3 || js.Unreached != 2 {
		t.Errorf("json: %+v (%v)\n%s", js, err, out)
	}
	// A later run that copies them does not change what the stopped run
	// reached: asked about it, status still counts them unreached.
	mustRun(t, 0, "copy", "--source", src, "--dest", dst, "--table", "t1", "--table", "t2")
	if code, out, _ := lockstep(t, context.Background(), "status", "--dest", dst, "--run", run); code != 3 {
		t.Errorf("status --run of the stopped run after a full one: exit %d, want 3\n%s", code, out)
	}
}

// status with a selection plans the units a copy would, but reads only:
// a monitoring role with SELECT on the tables and the ledger, and no
// privilege to write or lock, may ask it.
func TestStatusOfASelectionNeedsOnlySelect(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	role, as := newRole(t, "monitor", src, dst)
	schema := "CREATE TABLE t1 (id int PRIMARY KEY); CREATE TABLE t2 (id int PRIMARY KEY);"
	pgtest.Exec(t, src, schema+"INSERT INTO t1 SELECT generate_series(1, 10); INSERT INTO t2 SELECT generate_series(1, 20);"+
		"GRANT SELECT ON t1, t2 TO "+role)
	pgtest.Exec(t, dst, schema+"GRANT SELECT ON t1, t2 TO "+role)
	sel := []string{"--table", "t1", "--table", "t2"}
	mustRun(t, 0, append([]string{"copy", "--source", src, "--dest", dst}, sel...)...)
	pgtest.Exec(t, dst, "GRANT USAGE ON SCHEMA lockstep TO "+role+"; GRANT SELECT ON ALL TABLES IN SCHEMA lockstep TO "+role)
	code, out, errOut := lockstep(t, context.Background(), append([]string{"status", "--source", as(src), "--dest", as(dst)}, sel...)...)
	if code != 0 || !strings.Contains(out, "units: 2 verified") {
		t.Fatalf("status as a role with SELECT only: exit %d, want 0\n%s%s", code, out, errOut)
	}
	// Without SELECT on a table it still says what is missing.
	pgtest.Exec(t, dst, "REVOKE SELECT ON t2 FROM "+role)
	if code, _, errOut := lockstep(t, context.Background(), append([]string{"status", "--source", as(src), "--dest", as(dst)}, sel...)...); code != 2 ||
		!strings.Contains(errOut, "the SELECT privilege") {
		t.Errorf("status without SELECT on t2: exit %d, want 2 naming SELECT\n%s", code, errOut)
	}
}
