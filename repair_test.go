package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lockstep/internal/pgtest"
)

// tableDigests is every ordinary table's row count and the md5 of its rows
// (its own rows only, not inheritance children), by name.
func tableDigests(t *testing.T, dsn string) string {
	t.Helper()
	return pgtest.QueryString(t, dsn, `
		SELECT string_agg(format('%s=%s', c.oid::regclass, (xpath('/row/d/text()', query_to_xml(
		         format('SELECT count(*) || '':'' || md5(coalesce(string_agg(x::text, '','' ORDER BY x::text), '''')) AS d FROM ONLY %s x',
		                c.oid::regclass), false, true, '')))[1]::text), E'\n' ORDER BY c.oid::regclass::text)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND n.nspname = 'public'`)
}

// A repair file applied with psql makes the destination equal the source
// and changes nothing else, whatever the table, column and key names and
// values hold: a name with a newline cannot end a comment and run SQL, and
// an inheritance child of the table is not touched.
func TestRepairSQLCannotInject(t *testing.T) {
	t.Parallel()
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Fatalf("psql is needed to apply the repair file as an operator would: %v", err)
	}
	src, dst := pgtest.Get(t).NewDBs(t)
	const table = "\"evil\nDROP TABLE victim;--\""
	schema := `CREATE TABLE victim (id int); INSERT INTO victim VALUES (1), (2), (3);
		CREATE TABLE "evil
DROP TABLE victim;--" (k text PRIMARY KEY, "v
DROP TABLE victim;--" text, n int);
		CREATE TABLE evil_child (extra int) INHERITS ("evil
DROP TABLE victim;--");
		INSERT INTO "evil
DROP TABLE victim;--" SELECT 'k' || lpad(g::text, 4, '0'), 'v' || g, g FROM generate_series(1, 400) g;
		INSERT INTO evil_child SELECT k, 'child', n, 0 FROM ONLY "evil
DROP TABLE victim;--";`
	// Keys and values that a naive literal would end early: quotes,
	// backslashes (as if standard_conforming_strings were off), newlines.
	special := `INSERT INTO "evil
DROP TABLE victim;--" VALUES (E'q''uote\\back\nslash', E'it''s \\'' ); DROP TABLE victim; --', 1000);`
	pgtest.Exec(t, src, schema+special)
	pgtest.Exec(t, dst, schema)
	// Differences spread across the key range: missing (the special row
	// among them), extra, and changed rows on the destination.
	pgtest.Exec(t, dst, `
		DELETE FROM ONLY "evil
DROP TABLE victim;--" WHERE n IN (7, 150, 399);
		INSERT INTO "evil
DROP TABLE victim;--" VALUES (E'extra\n''; DROP TABLE victim; --', 'x', 0), (E'k0200x\x1b]52;c;cm0gLXJmIH4K\x07\u202e', 'x', 0);
		INSERT INTO evil_child VALUES (E'extra\n''; DROP TABLE victim; --', 'child of an extra key', 0, 0);
		UPDATE ONLY "evil
DROP TABLE victim;--" SET "v
DROP TABLE victim;--" = E'changed \\ '' value' WHERE n IN (3, 222, 350);
		UPDATE ONLY "evil
DROP TABLE victim;--" SET n = -n WHERE n = 100;`)
	before := tableDigests(t, dst)

	repair := filepath.Join(t.TempDir(), "repair.sql")
	out := mustRun(t, 4, "verify", "--source", src, "--dest", dst, "--table", table, "--diff", "--diff-rows", "20", "--diff-sql", repair)
	if !strings.Contains(out, "4 missing on the destination, 2 extra on the destination, 4 changed") {
		t.Fatalf("diff:\n%s", out)
	}
	// On screen, names and keys cannot break lines or drive the terminal
	// (an OSC 52 sequence would fill the clipboard with a command).
	for _, w := range []string{`mismatch "public"."evil\nDROP TABLE victim;--" rows=401`, `extra: (k0200x\x1b]52;c;cm0gLXJmIH4K\x07\u202e)`,
		`extra: (extra\n'; DROP TABLE victim; --)`, `columns v\nDROP TABLE victim;--`} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	_, plan, planErr := lockstep(t, context.Background(), "plan", "--source", src, "--dest", dst, "--table", table)
	for _, text := range []string{out, plan, planErr} {
		if i := strings.IndexFunc(text, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' || r == 0x7f || r == '\u202e' }); i >= 0 {
			t.Errorf("control character %q printed at %d:\n%s", text[i], i, text)
		}
	}
	if !strings.Contains(plan, `"public"."evil\nDROP TABLE victim;--"`) {
		t.Errorf("plan:\n%s", plan)
	}
	sql, err := os.ReadFile(repair)
	if err != nil {
		t.Fatal(err)
	}
	apply := func(file string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dst, "-f", file)
		cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("psql -f %s: %v\n%s\nrepair.sql:\n%s", filepath.Base(file), err, b, sql)
		}
	}
	// A statement pasted on its own into a session with
	// standard_conforming_strings off (where a backslash escapes a quote)
	// must mean the same: try the whole file that way, and roll it back.
	off := strings.Replace(string(sql), "SET standard_conforming_strings = on;", "SET standard_conforming_strings = off;", 1)
	off = strings.Replace(off, "\nCOMMIT;\n", "\nSELECT 1 FROM victim LIMIT 1;\nROLLBACK;\n", 1)
	if off == string(sql) {
		t.Fatalf("repair.sql has no SET and COMMIT lines to vary:\n%s", sql)
	}
	offFile := filepath.Join(t.TempDir(), "repair-scs-off.sql")
	if err := os.WriteFile(offFile, []byte(off), 0o644); err != nil {
		t.Fatal(err)
	}
	apply(offFile)
	if got := tableDigests(t, dst); got != before {
		t.Fatalf("a rolled-back repair changed the destination:\n%s\nwas:\n%s", got, before)
	}
	apply(repair)

	mustRun(t, 0, "verify", "--source", src, "--dest", dst, "--table", table)
	after := tableDigests(t, dst)
	want := map[string]bool{`evil_child`: true, `victim`: true}
	b, a := strings.Split(before, "\n"), strings.Split(after, "\n")
	if len(a) != len(b) {
		t.Fatalf("tables before the repair:\n%s\nafter:\n%s\nrepair.sql:\n%s", before, after, sql)
	}
	for i := range b {
		name, _, _ := strings.Cut(b[i], "=")
		if want[name] && a[i] != b[i] {
			t.Errorf("the repair changed %s: %s, was %s\nrepair.sql:\n%s", name, a[i], b[i], sql)
		}
	}
	if got := pgtest.QueryString(t, dst, "SELECT count(*) FROM victim"); got != "3" {
		t.Errorf("victim has %s rows", got)
	}
}

// The repair file's literals are parsed as lockstep's sessions print them,
// whatever the session running the file has: a NULL inside an array stays
// NULL where the destination database has array_nulls off (it would read
// the string "NULL").
func TestRepairSQLParsedAsPrinted(t *testing.T) {
	t.Parallel()
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Fatalf("psql is needed to apply the repair file as an operator would: %v", err)
	}
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := "CREATE TABLE arr (id int PRIMARY KEY, tags text[]);"
	pgtest.Exec(t, src, schema+"INSERT INTO arr VALUES (1, ARRAY['a', NULL]), (2, ARRAY[NULL, 'b']);")
	pgtest.Exec(t, dst, schema+"INSERT INTO arr VALUES (1, ARRAY['a', 'x']);")
	pgtest.Exec(t, dst, "ALTER DATABASE "+pgtest.QueryString(t, dst, "SELECT quote_ident(current_database())")+" SET array_nulls = off")
	repair := filepath.Join(t.TempDir(), "repair.sql")
	mustRun(t, 4, "verify", "--source", src, "--dest", dst, "--table", "arr", "--diff", "--diff-sql", repair)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if b, err := exec.CommandContext(ctx, psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dst, "-f", repair).CombinedOutput(); err != nil {
		t.Fatalf("psql -f repair.sql: %v\n%s", err, b)
	}
	if got := pgtest.QueryString(t, dst, "SELECT string_agg(id || ':' || (tags[1] IS NULL) || (tags[2] IS NULL), ' ' ORDER BY id) FROM arr"); got != "1:falsetrue 2:truefalse" {
		t.Errorf("after the repair: %s, want the NULL elements NULL", got)
	}
	mustRun(t, 0, "verify", "--source", src, "--dest", dst, "--table", "arr")
}
