package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lockstep/internal/pgtest"
)

// jsonRecords parses stderr as --log-format json writes it: every line one
// object.
func jsonRecords(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for line := range strings.Lines(stderr) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("stderr line is not a JSON object (%v): %q\nall of stderr:\n%s", err, line, stderr)
		}
		recs = append(recs, r)
	}
	return recs
}

func reportRunID(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep jsonReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.RunID) < 20 {
		t.Fatalf("report run_id %q", rep.RunID)
	}
	return rep.RunID
}

// With --log-format json, stderr holds JSON records only, each naming the
// run (the report's run_id) and, for a unit's steps, the unit; progress,
// each unit's outcome and the totals are records too, and the unit lines
// stay on stdout.
func TestLogFormatJSON(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, `CREATE TABLE orders (id int PRIMARY KEY, note text);
	                     INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 2000) g;`)
	pgtest.Exec(t, dst, `CREATE TABLE orders (id int PRIMARY KEY, note text);`)
	report := filepath.Join(t.TempDir(), "run.json")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A conflicting lock holds the unit in flight long enough for
	// progress records.
	blocker := pgtest.Connect(t, src)
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE orders IN SHARE ROW EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--table", "orders", "--log-format", "json",
			"--verbose", "--progress-interval", "50ms", "--lock-timeout", "20s", "--report", report)
		done <- result{code, out, errOut}
	}()
	waitForLockQueue(t, ctx, src, "orders")
	time.Sleep(400 * time.Millisecond)
	tx.Rollback(ctx)
	r := <-done
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.out, r.err)
	}
	if !strings.HasPrefix(r.out, `ok "public"."orders" rows=2000`) {
		t.Errorf("stdout lost its unit line:\n%s", r.out)
	}
	id := reportRunID(t, report)
	recs := jsonRecords(t, r.err)
	msgs := map[string]map[string]any{}
	inFlight := false // a progress record listed the unit in flight
	for _, rec := range recs {
		if rec["run"] != id {
			t.Errorf("record without the run id %s: %v", id, rec)
		}
		msg, _ := rec["msg"].(string)
		msg, _, _ = strings.Cut(msg, ";")
		msgs[msg] = rec
		if msg == "progress" && rec["in_flight"] == `"public"."orders"` && rec["units_in_flight"] == 1.0 {
			inFlight = true
		}
		switch msg {
		case "progress", "run finished":
		default:
			if rec["unit"] != `"public"."orders"` {
				t.Errorf("a unit's record does not name it: %v", rec)
			}
		}
	}
	for _, step := range []string{"destination locked and emptied", "source locked", "streamed", "verified",
		"destination committed", "source committed", "progress", "unit finished", "run finished"} {
		if msgs[step] == nil {
			t.Errorf("no %q record in:\n%s", step, r.err)
		}
	}
	if !inFlight {
		t.Errorf("no progress record lists the unit in flight:\n%s", r.err)
	}
	if w, _ := msgs["source locked"]["waited_s"].(float64); w < 0.3 {
		t.Errorf("durations in JSON records are seconds named _s: %v", msgs["source locked"])
	}
	if u := msgs["unit finished"]; u != nil {
		if u["status"] != "ok" || u["rows"] != 2000.0 || u["level"] != "INFO" || u["writes_blocked_s"].(float64) <= 0 ||
			u["source_lock_wait_s"].(float64) < 0.3 {
			t.Errorf("unit record: %v", u)
		}
	}
	if f := msgs["run finished"]; f != nil && (f["ok"] != 1.0 || f["rows"] != 2000.0) {
		t.Errorf("run record: %v", f)
	}

	// Bad input and a flag error: one ERROR record with the exit code.
	for _, args := range [][]string{
		{"copy", "--log-format", "json", "--source", src, "--dest", dst, "--table", "nope"},
		{"verify", "--log-format=json", "--frobnicate"},
	} {
		code, out, errOut := lockstep(t, ctx, args...)
		recs := jsonRecords(t, errOut)
		if code != 2 || len(recs) != 1 || recs[0]["level"] != "ERROR" || recs[0]["exit_code"] != 2.0 || recs[0]["run"] == nil {
			t.Errorf("%v: exit %d, want 2 and one ERROR record with the exit code:\n%s%s", args, code, out, errOut)
		}
	}
	if code, _, errOut := lockstep(t, ctx, "copy", "--log-format", "xml", "--source", src, "--dest", dst, "--table", "orders"); code != 2 ||
		!strings.Contains(errOut, `lockstep: unknown --log-format "xml"`) {
		t.Errorf("--log-format xml: exit %d: %s", code, errOut)
	}
}

// In text, every log line carries the run id (run=...) too.
func TestLogTextCarriesRunID(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, `CREATE TABLE v (id int PRIMARY KEY); INSERT INTO v SELECT generate_series(1, 10);`)
	pgtest.Exec(t, dst, `CREATE TABLE v (id int PRIMARY KEY);`)
	report := filepath.Join(t.TempDir(), "run.json")
	code, out, errOut := lockstep(t, context.Background(), "copy", "--source", src, "--dest", dst, "--table", "v", "--verbose", "--report", report)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	id := reportRunID(t, report)
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if len(lines) < 6 {
		t.Fatalf("--verbose logged %d lines:\n%s", len(lines), errOut)
	}
	for _, l := range lines {
		if !strings.Contains(l, " run="+id) {
			t.Errorf("log line without run=%s: %s", id, l)
		}
	}
}

// waitForLockQueue returns once a lock request on table waits on the
// server of dsn.
func waitForLockQueue(t *testing.T, ctx context.Context, dsn, table string) {
	t.Helper()
	for ctx.Err() == nil {
		if pgtest.QueryString(t, dsn, "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::regclass", table) != "0" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no lock request on %s queued", table)
}
