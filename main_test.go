package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"lockstep/internal/pgtest"
)

// TestMain doubles as the lockstep binary: with LOCKSTEP_TEST_AS_MAIN set,
// the test executable runs main() instead of the tests, so that tests can
// signal and kill a real lockstep process.
func TestMain(m *testing.M) {
	if os.Getenv("LOCKSTEP_TEST_AS_MAIN") == "1" {
		main()
		return
	}
	pgtest.Main(m)
}

func sqlExec(t *testing.T, dsn, sql string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// snapshot counts the rows of every table but the ledger's.
func snapshot(t *testing.T, dsn string) string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var s string
	q := `SELECT coalesce(string_agg(format('%s:%s', c.relname, (xpath('/row/c/text()',
	        query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text), ' ' ORDER BY c.relname), '')
	      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	      WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'lockstep')`
	if err := conn.QueryRow(context.Background(), q).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func lockstep(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(ctx, append([]string{"lockstep"}, args...), strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func withPassword(t *testing.T, dsn, pw string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), pw)
	return u.String()
}

// Each bad input exits 2 within seconds with one line naming the side and
// the object, never a password, and leaves the destination as it was.
func TestBadInput(t *testing.T) {
	t.Parallel()
	env := pgtest.Get(t)
	src, dst := env.NewDBs(t)
	schema := `CREATE TABLE orders (id int PRIMARY KEY, note text, qty int);
	           CREATE TABLE only_src (id int); CREATE TABLE parent (id int PRIMARY KEY);`
	sqlExec(t, src, schema+`INSERT INTO orders VALUES (1, 'a', 1); INSERT INTO parent VALUES (1);`)
	sqlExec(t, dst, `CREATE TABLE orders (id int PRIMARY KEY, note text, qty int);
	                 CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (pid int CONSTRAINT child_parent_fk REFERENCES parent);
	                 CREATE TABLE nocol (id int); CREATE TABLE badtype (id int, note int, qty int);
	                 INSERT INTO orders VALUES (7, 'kept', 7); INSERT INTO parent VALUES (7);`)
	sqlExec(t, src, `CREATE TABLE nocol (id int, extra text); CREATE TABLE badtype (id int, note text, qty int);`)
	srcPW := env.Source.Password()
	dstPW := env.Dest.Password()
	before := snapshot(t, dst)

	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"no table", []string{"--source", src, "--dest", dst}, []string{"no table selected"}},
		{"no source", []string{"--dest", dst, "--table", "orders"}, []string{"source", "no connection string"}},
		{"unparsable url", []string{"--source", "postgres://bob:" + srcPW + "@127.0.0.1:notaport/x", "--dest", dst, "--table", "orders"},
			[]string{"source: invalid connection string"}},
		{"unreachable", []string{"--source", src, "--dest", "postgres://bob:" + dstPW + "@127.0.0.1:1/x?connect_timeout=3", "--table", "orders"},
			[]string{"destination: cannot connect to 127.0.0.1:1", "refused"}},
		{"failed auth", []string{"--source", withPassword(t, src, "wrong-"+srcPW), "--dest", dst, "--table", "orders"},
			[]string{"source: cannot connect", "password authentication failed"}},
		{"missing on source", []string{"--source", src, "--dest", dst, "--table", "public.nope"}, []string{"source: table public.nope does not exist"}},
		{"missing on destination", []string{"--source", src, "--dest", dst, "--table", "only_src"}, []string{"destination: table only_src does not exist"}},
		{"bad name", []string{"--source", src, "--dest", dst, "--table", "a b c"}, []string{"source: table a b c", "invalid name syntax"}},
		{"missing column", []string{"--source", src, "--dest", dst, "--table", "nocol"}, []string{"destination", "nocol", `no column "extra"`}},
		{"unsafe type", []string{"--source", src, "--dest", dst, "--table", "badtype"}, []string{"destination", "badtype", `column "note" is text on the source but integer on the destination`}},
		{"referenced by fk", []string{"--source", src, "--dest", dst, "--table", "parent"}, []string{"destination", "parent", "child_parent_fk", "foreign key"}},
		{"same database", []string{"--source", src, "--dest", src, "--table", "orders"}, []string{"same database"}},
		{"bad verify", []string{"--source", src, "--dest", dst, "--table", "orders", "--verify", "maybe"}, []string{"unknown verify mode"}},
		{"unknown flag", []string{"--source", src, "--dest", dst, "--table", "orders", "--frobnicate"}, []string{"frobnicate"}},
		// Files written at the end are checked at the start: a copy must
		// not run (and commit) only to fail writing its report.
		{"report into a directory", []string{"--source", src, "--dest", dst, "--table", "orders", "--report", t.TempDir()}, []string{"--report", "is a directory"}},
		{"report in no directory", []string{"--source", src, "--dest", dst, "--table", "orders", "--report", "/nonexistent-dir/r.json"}, []string{"--report /nonexistent-dir/r.json", "no such file"}},
		{"metrics file in no directory", []string{"--source", src, "--dest", dst, "--table", "orders", "--metrics-file", "/nonexistent-dir/m.prom"}, []string{"--metrics-file /nonexistent-dir/m.prom", "no such file"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			began := time.Now()
			code, out, errOut := lockstep(t, ctx, append([]string{"copy"}, c.args...)...)
			if code != 2 {
				t.Fatalf("exit %d, want 2\nstdout: %s\nstderr: %s", code, out, errOut)
			}
			if d := time.Since(began); d > 10*time.Second {
				t.Errorf("took %s", d)
			}
			if lines := strings.Count(strings.TrimSpace(errOut), "\n"); lines != 0 || errOut == "" {
				t.Errorf("want one line on stderr, got %q", errOut)
			}
			for _, w := range c.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
			for _, pw := range []string{srcPW, dstPW} {
				if strings.Contains(out+errOut, pw) {
					t.Errorf("password printed: %q", out+errOut)
				}
			}
			if got := snapshot(t, dst); got != before {
				t.Errorf("destination changed: %s, was %s", got, before)
			}
		})
	}
}

func TestCLICopyAndExitCodes(t *testing.T) {
	src, dst := pgtest.Get(t).NewDBs(t)
	sqlExec(t, src, `CREATE TABLE orders (id int PRIMARY KEY, note text);
	                 INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 5000) g;`)
	sqlExec(t, dst, `CREATE TABLE orders (id int PRIMARY KEY, note text);`)
	ctx := context.Background()

	t.Setenv("LOCKSTEP_SOURCE", src)
	t.Setenv("LOCKSTEP_DEST", dst)
	code, out, errOut := lockstep(t, ctx, "copy", "--table", "orders")
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	for _, w := range []string{`ok "public"."orders" rows=5000`, "format=binary", "lock-wait=dst:", "writes-blocked=", "copy=", "verify=", "MB/s", "checksum=", "total: 1 units ok"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if snapshot(t, dst) != "orders:5000" {
		t.Fatalf("destination: %s", snapshot(t, dst))
	}

	// Mismatch: exit 4 (--redo: the ledger holds the copy above).
	sqlExec(t, dst, `CREATE FUNCTION t() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.note := upper(NEW.note); RETURN NEW; END $$;
	                 CREATE TRIGGER t BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION t();`)
	if code, out, _ := lockstep(t, ctx, "copy", "--table", "orders", "--redo"); code != 4 || !strings.Contains(out, "mismatch") {
		t.Fatalf("mismatch: exit %d, want 4: %s", code, out)
	}
	sqlExec(t, dst, `DROP TRIGGER t ON orders`)

	// Lock timeout: exit 1, naming the blocker.
	blocker, err := pgx.Connect(ctx, src+"&application_name=report-job")
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close(ctx)
	tx, _ := blocker.Begin(ctx)
	tx.Exec(ctx, "LOCK TABLE orders IN SHARE ROW EXCLUSIVE MODE")
	code, out, _ = lockstep(t, ctx, "copy", "--table", "orders", "--lock-timeout", "300ms", "--lock-retries", "0", "--redo")
	if code != 1 || !strings.Contains(out, "report-job") || !strings.Contains(out, "source: EXCLUSIVE lock on") {
		t.Fatalf("lock timeout: exit %d, want 1 naming the blocker: %s", code, out)
	}
	tx.Rollback(ctx)

	// Interrupted before or while copying: exit 3.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if code, out, errOut := lockstep(t, cctx, "copy", "--table", "orders"); code != 3 {
		t.Fatalf("interrupted: exit %d, want 3: %s %s", code, out, errOut)
	}
	if snapshot(t, dst) != "orders:5000" {
		t.Fatalf("destination after failures: %s", snapshot(t, dst))
	}
}

// A role that may read but not lock or load gets exit 2 before anything is
// locked, naming the side, the role and the privilege.
func TestPrivilegesCheckedBeforeLocking(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	role := fmt.Sprintf("reader_%d", time.Now().UnixNano())
	pgtest.Exec(t, src, "CREATE TABLE t (id int); INSERT INTO t VALUES (1); CREATE ROLE "+role+" LOGIN PASSWORD 'pw'; GRANT SELECT ON t TO "+role)
	pgtest.Exec(t, dst, "CREATE TABLE t (id int); CREATE ROLE "+role+" LOGIN PASSWORD 'pw'; GRANT SELECT, INSERT ON t TO "+role)
	t.Cleanup(func() {
		pgtest.Exec(t, src, "DROP OWNED BY "+role+"; DROP ROLE "+role)
		pgtest.Exec(t, dst, "DROP OWNED BY "+role+"; DROP ROLE "+role)
	})
	as := func(dsn string) string {
		u, _ := url.Parse(dsn)
		u.User = url.UserPassword(role, "pw")
		return u.String()
	}
	ctx := context.Background()
	code, _, errOut := lockstep(t, ctx, "copy", "--source", as(src), "--dest", dst, "--table", "t")
	if code != 2 || !strings.Contains(errOut, `source: "public"."t": role `+role+` lacks the UPDATE, DELETE or TRUNCATE privilege, which PostgreSQL requires for an EXCLUSIVE lock`) {
		t.Errorf("read-only source role: exit %d: %s", code, errOut)
	}
	code, _, errOut = lockstep(t, ctx, "copy", "--source", src, "--dest", as(dst), "--table", "t")
	if code != 2 || !strings.Contains(errOut, `destination: "public"."t": role `+role+` lacks the INSERT and TRUNCATE`) {
		t.Errorf("destination role without TRUNCATE: exit %d: %s", code, errOut)
	}
	// Reading is all a verify without locks needs.
	if code, out, errOut := lockstep(t, ctx, "verify", "--source", as(src), "--dest", as(dst), "--table", "t"); code != 4 {
		t.Errorf("verify as reader: exit %d: %s %s", code, out, errOut)
	}
	if code, _, errOut := lockstep(t, ctx, "verify", "--lock", "--source", as(src), "--dest", dst, "--table", "t"); code != 2 || !strings.Contains(errOut, "EXCLUSIVE lock") {
		t.Errorf("verify --lock as reader: exit %d: %s", code, errOut)
	}
}

// --verbose logs every step of the unit protocol, each line naming the unit.
func TestVerboseLogsEachStep(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	sqlExec(t, src, `CREATE TABLE v (id int PRIMARY KEY); INSERT INTO v SELECT generate_series(1, 10);`)
	sqlExec(t, dst, `CREATE TABLE v (id int PRIMARY KEY);`)
	code, out, errOut := lockstep(t, context.Background(), "copy", "--source", src, "--dest", dst, "--table", "v", "--verbose")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	steps := []string{"destination locked and emptied", "source locked", "streamed", "verified",
		"destination committed", "source committed"}
	lines := strings.Split(errOut, "\n")
	at := 0
	for _, step := range steps {
		for at < len(lines) && !strings.Contains(lines[at], `msg="`+step) && !strings.Contains(lines[at], "msg="+step) {
			at++
		}
		if at == len(lines) {
			t.Fatalf("--verbose log lacks %q (in order):\n%s", step, errOut)
		}
		if !strings.Contains(lines[at], `unit="\"public\".\"v\""`) {
			t.Errorf("log line does not name the unit: %s", lines[at])
		}
	}
	code, out, errOut = lockstep(t, context.Background(), "verify", "--source", src, "--dest", dst, "--table", "v", "--verbose", "--lock")
	if code != 0 || !strings.Contains(errOut, "snapshots taken") || !strings.Contains(errOut, "compared") {
		t.Fatalf("verify --verbose: exit %d\n%s\n%s", code, out, errOut)
	}
}
