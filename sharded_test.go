package main

import (
	"context"
	"crypto/md5"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lockstep/internal/pgtest"
)

// tableDigest is a count and md5 of a table's rows in key order.
func tableDigest(t *testing.T, dsn, table string) string {
	t.Helper()
	return pgtest.QueryString(t, dsn, fmt.Sprintf(
		"SELECT count(*) || ':' || md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM %s x", table))
}

func pgbench(t *testing.T, dsn string, args ...string) {
	t.Helper()
	out, err := exec.Command("pgbench", append(args, dsn)...).CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench %v: %v\n%s", args, err, out)
	}
}

// Real partitioned data that no one here wrote: pgbench's own, hash and
// range partitioned, copied leaf by leaf on two jobs.
func TestPgbenchPartitions(t *testing.T) {
	t.Parallel()
	for _, method := range []string{"hash", "range"} {
		t.Run(method, func(t *testing.T) {
			src, dst := pgtest.Get(t).NewDBs(t)
			pgbench(t, src, "-i", "-q", "-s", "2", "--partitions=7", "--partition-method="+method)
			pgbench(t, dst, "-i", "-q", "-I", "dtp", "-s", "2", "--partitions=7", "--partition-method="+method)
			code, out, errOut := lockstep(t, context.Background(), "copy", "--source", src, "--dest", dst,
				"--table", "pgbench_accounts", "--jobs", "2", "--progress-interval", "0")
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
			}
			if !strings.Contains(out, "total: 7 units ok, 0 failed") {
				t.Errorf("summary: %s", out)
			}
			for i := 1; i <= 7; i++ {
				p := fmt.Sprintf("pgbench_accounts_%d", i)
				if a, b := tableDigest(t, src, p), tableDigest(t, dst, p); a != b || strings.HasPrefix(a, "0:") {
					t.Errorf("%s: source %s, destination %s", p, a, b)
				}
			}
		})
	}
}

// shards creates n hand-made shard tables orders_0000... with rows.
func shards(n int, rows bool) string {
	body := "EXECUTE format('CREATE TABLE %I (id int PRIMARY KEY, v text)', name);"
	if rows {
		body += "EXECUTE format('INSERT INTO %I SELECT g, %L || g FROM generate_series(1, 1 + %s) g', name, name, mod(i, 50));"
	}
	return fmt.Sprintf(`DO $$ DECLARE name text; BEGIN FOR i IN 0..%d LOOP name := format('orders_%%s', lpad(i::text, 4, '0')); %s END LOOP; END $$;`, n-1, body)
}

func TestHandMadeShardsByRegexFileAndExclude(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, shards(200, true)+"CREATE TABLE orders_archive (id int);")
	pgtest.Exec(t, dst, shards(200, false)+"DROP TABLE orders_0007, orders_0150, orders_0199;")
	ctx := context.Background()
	match := `^public\.orders_[0-9]{4}$`

	// Three shards missing on the destination: one error lists them all.
	code, _, errOut := lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--tables-matching", match)
	if code != 2 || !strings.Contains(errOut, `"public"."orders_0007", "public"."orders_0150", "public"."orders_0199"`) {
		t.Fatalf("missing shards: exit %d: %s", code, errOut)
	}
	// An empty selection and a bad regex are bad input.
	if code, _, errOut := lockstep(t, ctx, "plan", "--source", src, "--dest", dst, "--tables-matching", `^nothing$`); code != 2 || !strings.Contains(errOut, "matches no table") {
		t.Fatalf("empty selection: exit %d: %s", code, errOut)
	}
	if code, _, errOut := lockstep(t, ctx, "plan", "--source", src, "--dest", dst, "--tables-matching", `(`); code != 2 || !strings.Contains(errOut, "--tables-matching") {
		t.Fatalf("bad regex: exit %d: %s", code, errOut)
	}

	// Regex minus exclusions: orders_0000..0099 except 0007.
	report := filepath.Join(t.TempDir(), "report.json")
	code, out, errOut := lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--tables-matching", match,
		"--exclude", `_01[0-9]{2}$`, "--exclude", `orders_0007`, "--jobs", "3", "--report", report, "--quiet")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "total: 99 units ok") || strings.Contains(out, "orders_0001") {
		t.Errorf("quiet output should be the total only: %s", out)
	}
	var rep jsonReport
	b, err := os.ReadFile(report)
	if err != nil || json.Unmarshal(b, &rep) != nil || rep.Run == nil || len(rep.Run.Units) != 99 || rep.ExitCode != 0 {
		t.Fatalf("report: %v %s", err, b)
	}
	// Largest first: shard sizes grow with i % 50, so the first unit is one of the biggest.
	if first := rep.Run.Units[0].Unit; !strings.Contains(first, "orders_00") {
		t.Errorf("first unit %s", first)
	}
	if tableDigest(t, src, "orders_0049") != tableDigest(t, dst, "orders_0049") || pgtest.QueryString(t, dst, "SELECT count(*) FROM orders_0120") != "0" {
		t.Error("regex/exclude copied the wrong set")
	}

	// --tables-from: names, comments, blanks, a duplicate; from stdin.
	list := "# shards to redo\norders_0120\n\n  public.orders_0121  # trailing comment\norders_0120\n"
	var stdout, stderr strings.Builder
	code = run(ctx, []string{"lockstep", "copy", "--source", src, "--dest", dst, "--tables-from", "-"}, strings.NewReader(list), &stdout, &stderr)
	if code != 0 || !strings.Contains(stdout.String(), "total: 2 units ok") {
		t.Fatalf("tables-from: exit %d: %s %s", code, stdout.String(), stderr.String())
	}
}

// listTable is a list-partitioned table m with partitions m_a, m_b, m_c.
const listTable = `CREATE TABLE m (k text, id int, v text) PARTITION BY LIST (k);
CREATE TABLE m_a PARTITION OF m FOR VALUES IN ('a');
CREATE TABLE m_b PARTITION OF m FOR VALUES IN ('b');
CREATE TABLE m_c PARTITION OF m FOR VALUES IN ('c');`

const listRows = `INSERT INTO m SELECT k, g, repeat('x', 100) FROM unnest(ARRAY['a','b','c']) k, generate_series(1, 20000) g;`

// slowOn makes the destination's copy into one partition take a couple of seconds.
func slowOn(part string) string {
	return fmt.Sprintf(`CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.id %% 1000 = 0 THEN PERFORM pg_sleep(0.1); END IF; RETURN NEW; END $$;
CREATE TRIGGER slow BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION slow();`, part)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tryInsert reports whether an insert into part commits without waiting
// more than 300ms for a lock.
func tryInsert(t *testing.T, dsn, k string) error {
	conn := pgtest.Connect(t, dsn)
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, "SET LOCAL lock_timeout = '300ms'")
	if err == nil {
		_, err = tx.Exec(ctx, "INSERT INTO m VALUES ($1, -1, 'during')", k)
	}
	return err
}

// While one partition is in flight, its writers wait and the others'
// proceed; a failure injected into it rolls it back alone.
func TestPartitionInFlightBlocksOnlyItselfAndFailsAlone(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, listTable+listRows)
	pgtest.Exec(t, dst, listTable+slowOn("m_a")+`INSERT INTO m VALUES ('a', 0, 'kept')`)
	before := tableDigest(t, dst, "m_a")
	ctx := context.Background()
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		c, o, e := lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--table", "m", "--order", "name", "--jobs", "1", "--progress-interval", "100ms")
		done <- result{c, o, e}
	}()
	var pid int
	waitUntil(t, "m_a in flight", func() bool {
		s := pgtest.QueryString(t, dst, `SELECT coalesce(max(pid), 0) FROM pg_stat_activity a JOIN pg_stat_progress_copy p USING (pid)
			WHERE a.application_name = 'lockstep' AND a.datname = current_database() AND p.tuples_processed > 0`)
		fmt.Sscan(s, &pid)
		return pid != 0
	})
	if err := tryInsert(t, src, "b"); err != nil {
		t.Errorf("write to a partition not in flight blocked: %v", err)
	}
	if err := tryInsert(t, src, "a"); err == nil || !strings.Contains(err.Error(), "lock timeout") {
		t.Errorf("write to the partition in flight was not blocked: %v", err)
	}
	pgtest.Exec(t, dst, "SELECT pg_terminate_backend($1)", pid)
	r := <-done
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", r.code, r.out, r.err)
	}
	if !strings.Contains(r.out, `failed "public"."m_a"`) || !strings.Contains(r.out, "total: 2 units ok, 1 failed") {
		t.Errorf("output: %s", r.out)
	}
	if !strings.Contains(r.err, "progress: ") || !strings.Contains(r.err, `in flight: "public"."m_a"`) {
		t.Errorf("no periodic status lines on a non-terminal: %s", r.err)
	}
	if tableDigest(t, dst, "m_a") != before {
		t.Error("the failed partition changed on the destination")
	}
	for _, p := range []string{"m_b", "m_c"} {
		if tableDigest(t, src, p) != tableDigest(t, dst, p) {
			t.Errorf("%s not committed", p)
		}
	}
}

func TestFailFastStartsNothingMore(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, listTable+listRows)
	pgtest.Exec(t, dst, listTable+`CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no'; END $$;
		CREATE TRIGGER boom BEFORE INSERT ON m_a FOR EACH ROW EXECUTE FUNCTION boom();`)
	code, out, _ := lockstep(t, context.Background(), "copy", "--source", src, "--dest", dst, "--table", "m",
		"--order", "name", "--jobs", "1", "--fail-fast")
	if code != 1 || !strings.Contains(out, "0 units ok, 1 failed, 0 mismatched, 0 interrupted, 2 not started") {
		t.Fatalf("exit %d: %s", code, out)
	}
	if pgtest.QueryString(t, dst, "SELECT count(*) FROM m") != "0" {
		t.Error("units ran after the first failure")
	}
}

func TestPlanChangesNothingAndExplains(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, listTable+listRows+`CREATE TYPE mood AS (x int); ALTER TABLE m ADD COLUMN mood mood;
		ALTER TABLE m ADD COLUMN total int GENERATED ALWAYS AS (id * 2) STORED; ANALYZE m;`)
	pgtest.Exec(t, dst, listTable+`CREATE TYPE mood AS (x int); ALTER TABLE m ADD COLUMN mood mood;
		ALTER TABLE m ADD COLUMN total int GENERATED ALWAYS AS (id * 2) STORED;
		CREATE TABLE r (k text PRIMARY KEY); INSERT INTO r VALUES ('a'), ('b'), ('c');
		ALTER TABLE m_b ADD CONSTRAINT m_b_k_fk FOREIGN KEY (k) REFERENCES r;
		CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
		CREATE TRIGGER audit BEFORE INSERT ON m_c FOR EACH ROW EXECUTE FUNCTION audit();
		INSERT INTO m VALUES ('a', 1, 'kept');`)
	ctx := context.Background()
	code, out, errOut := lockstep(t, ctx, "plan", "--source", src, "--dest", dst, "--table", "m", "--assume-mbps", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	for _, w := range []string{`"public"."m_a"`, "20000", "text", `column "mood" has type public.mood, which is not built in`,
		"columns skipped: total (generated on the source)", "destination triggers (they fire for every row copied): audit",
		"m_b_k_fk -> public.r", "locks: destination: ACCESS EXCLUSIVE on \"public\".\"m_a\"; source: EXCLUSIVE on \"public\".\"m_a\"",
		"total: 3 units, ~60000 rows"} {
		if !strings.Contains(out, w) {
			t.Errorf("plan lacks %q:\n%s", w, out)
		}
	}
	if code, out, _ := lockstep(t, ctx, "copy", "--dry-run", "--source", src, "--dest", dst, "--table", "m"); code != 0 || !strings.Contains(out, "total: 3 units") {
		t.Errorf("--dry-run: exit %d: %s", code, out)
	}
	code, out, _ = lockstep(t, ctx, "plan", "--format", "json", "--exact-counts", "--source", src, "--dest", dst, "--table", "m")
	var p struct {
		Units []struct {
			Unit        string `json:"unit"`
			EstRows     int64  `json:"estimated_rows"`
			RowsCounted bool   `json:"rows_counted"`
			Format      string `json:"format"`
			Freeze      bool   `json:"freeze"`
		} `json:"units"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil || code != 0 || len(p.Units) != 3 {
		t.Fatalf("json plan: exit %d, %v: %s", code, err, out)
	}
	if u := p.Units[0]; u.EstRows != 20000 || !u.RowsCounted || u.Format != "text" || !u.Freeze {
		t.Errorf("json unit: %+v", u)
	}
	// At 1 MB/s each 2+ MB partition is predicted to block writes for seconds.
	code, _, errOut = lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--table", "m", "--assume-mbps", "1", "--max-write-block", "500ms")
	if code != 2 || !strings.Contains(errOut, "3 unit(s) predicted to block writes longer than --max-write-block 500ms") {
		t.Errorf("max-write-block refusal: exit %d: %s", code, errOut)
	}
	if pgtest.QueryString(t, dst, "SELECT count(*) FROM m") != "1" {
		t.Error("plan or a refused copy changed the destination")
	}
}

// A unit that overruns --max-write-block while running is rolled back.
func TestMaxWriteBlockOverrunRollsBack(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	// m_a takes over 2s on the destination; m_b and m_c a few milliseconds.
	pgtest.Exec(t, src, listTable+`INSERT INTO m SELECT k, g, 'x' FROM unnest(ARRAY['a','b','c']) k, generate_series(1, 20000) g
		WHERE k = 'a' OR g <= 1000;`)
	pgtest.Exec(t, dst, listTable+slowOn("m_a")+`INSERT INTO m VALUES ('a', 0, 'kept')`)
	report := filepath.Join(t.TempDir(), "r.json")
	code, out, _ := lockstep(t, context.Background(), "copy", "--source", src, "--dest", dst, "--table", "m",
		"--max-write-block", "1200ms", "--assume-mbps", "100000", "--report", report)
	if code != 1 || !strings.Contains(out, "writes blocked longer than --max-write-block 1.2s; rolled back") {
		t.Fatalf("exit %d: %s", code, out)
	}
	if pgtest.QueryString(t, dst, "SELECT string_agg(v, ',') FROM m_a") != "kept" {
		t.Error("overrunning unit not rolled back")
	}
	var rep jsonReport
	b, _ := os.ReadFile(report)
	if err := json.Unmarshal(b, &rep); err != nil || rep.ExitCode != 1 || rep.Run.Failed != 1 || rep.Run.OK != 2 {
		t.Fatalf("report on failure: %v %s", err, b)
	}
	if strings.Contains(string(b), pgtest.TestPassword) {
		t.Error("report holds a password")
	}
}

func TestReportWrittenOnBadInput(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	report := filepath.Join(t.TempDir(), "r.json")
	code, _, _ := lockstep(t, context.Background(), "copy", "--source", src, "--dest", dst, "--table", "nope", "--report", report)
	var rep jsonReport
	b, _ := os.ReadFile(report)
	if code != 2 || json.Unmarshal(b, &rep) != nil || rep.ExitCode != 2 || !strings.Contains(rep.Error, "nope") {
		t.Fatalf("exit %d, report %s", code, b)
	}
}

// Partitions of one name with other bounds would fail mid-copy; the plan
// refuses them up front.
func TestPartitionBoundsMustMatch(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgbench(t, src, "-i", "-q", "-I", "dt", "-s", "2", "--partitions=3", "--partition-method=range")
	pgbench(t, dst, "-i", "-q", "-I", "dt", "-s", "1", "--partitions=3", "--partition-method=range")
	code, _, errOut := lockstep(t, context.Background(), "plan", "--source", src, "--dest", dst, "--table", "pgbench_accounts")
	if code != 2 || !strings.Contains(errOut, `partition bounds differ: "public"."pgbench_accounts_1" is RANGE (aid) FOR VALUES FROM (MINVALUE) TO (66668) on the source but RANGE (aid) FOR VALUES FROM (MINVALUE) TO (33335) on the destination`) {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// pgtestUUID is md5(g::text)::uuid, as the diff test's generator makes it.
func pgtestUUID(g int) string {
	sum := fmt.Sprintf("%x", md5.Sum([]byte(fmt.Sprint(g))))
	return sum[0:8] + "-" + sum[8:12] + "-" + sum[12:16] + "-" + sum[16:20] + "-" + sum[20:32]
}

// A LATIN1 source and a UTF8 destination: rows travel as UTF8, the servers
// convert, and the destination stores the same characters.
func TestEncodingsDiffer(t *testing.T) {
	t.Parallel()
	env := pgtest.Get(t)
	_, dst := env.NewDBs(t)
	name := fmt.Sprintf("latin1_%d", time.Now().UnixNano())
	admin := env.Source.DSN("postgres")
	pgtest.Exec(t, admin, "CREATE DATABASE "+name+" ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
	t.Cleanup(func() { pgtest.Exec(t, admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") })
	src := env.Source.DSN(name)
	// This session says it speaks UTF8; the server stores LATIN1.
	pgtest.Exec(t, src+"&client_encoding=UTF8", "CREATE TABLE e (id int PRIMARY KEY, t text); INSERT INTO e VALUES (1, 'café déjà vu ñ')")
	if got := pgtest.QueryString(t, src+"&client_encoding=UTF8", "SELECT octet_length(t) FROM e"); got != "14" {
		t.Fatalf("source stores %s bytes, want 14 LATIN1 bytes", got)
	}
	pgtest.Exec(t, dst, "CREATE TABLE e (id int PRIMARY KEY, t text)")
	mustRun(t, 0, "copy", "--source", src, "--dest", dst, "--table", "e")
	if got := pgtest.QueryString(t, dst, "SELECT t = 'café déjà vu ñ' AND octet_length(t) = 18 FROM e"); got != "t" && got != "true" {
		t.Fatalf("destination holds %q", pgtest.QueryString(t, dst, "SELECT t FROM e"))
	}
	mustRun(t, 0, "verify", "--source", src, "--dest", dst, "--table", "e")
	pgtest.Exec(t, dst, "UPDATE e SET t = 'cafe deja vu n'")
	if out := mustRun(t, 4, "verify", "--source", src, "--dest", dst, "--table", "e", "--diff"); !strings.Contains(out, "changed: (1) columns t") {
		t.Fatalf("diff across encodings: %s", out)
	}
}
