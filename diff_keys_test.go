package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"lockstep/internal/pgtest"
)

// The destination's key column may have a wider type than the source's
// (integer to bigint, varchar(5) to text). The diff's bounds come from
// either side's rows, so they are cast to the type that holds both sides'
// keys: destination bigints beyond the integer range become bounds without
// failing the source's cast, and destination texts longer than five
// characters are not truncated into bounds that cut nothing (the bisection
// then ran to its depth limit).
func TestDiffWithWiderDestinationKeyTypes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, srcKey, dstKey, gen, extra, firstExtra, changed string
	}{
		{"integer to bigint", "int", "bigint", "g", "5000000000 + g", "5000000001", "77"},
		{"varchar(5) to text", "varchar(5)", "text", "lpad(g::text, 5, '0')", "'zzzzz' || lpad(g::text, 3, '0')", "zzzzz001", "00077"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			src, dst := pgtest.Get(t).NewDBs(t)
			rows := "INSERT INTO k SELECT " + c.gen + ", 'v' FROM generate_series(1, 300) g;"
			pgtest.Exec(t, src, "CREATE TABLE k (id "+c.srcKey+" PRIMARY KEY, v text);"+rows)
			pgtest.Exec(t, dst, "CREATE TABLE k (id "+c.dstKey+" PRIMARY KEY, v text);"+rows+
				"INSERT INTO k SELECT "+c.extra+", 'x' FROM generate_series(1, 100) g; UPDATE k SET v = 'changed' WHERE id = '"+c.changed+"'")
			repair := filepath.Join(t.TempDir(), "repair.sql")
			out := mustRun(t, 4, "verify", "--source", src, "--dest", dst, "--table", "k", "--diff", "--diff-rows", "10", "--diff-sql", repair)
			for _, w := range []string{"0 missing on the destination, 100 extra on the destination, 1 changed",
				"extra: (" + c.firstExtra + ")", "changed: (" + c.changed + ") columns v"} {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if m := depthRE.FindStringSubmatch(out); m == nil || len(m[1]) > 1 {
				t.Errorf("bisection depth %v, want under 10:\n%s", m, out)
			}
			sql, _ := os.ReadFile(repair)
			pgtest.Exec(t, dst, string(sql))
			mustRun(t, 0, "verify", "--source", src, "--dest", dst, "--table", "k")
		})
	}
}

var depthRE = regexp.MustCompile(`depth (\d+)`)

// A destination without the source's unique index may hold a key more than
// once: the surplus copies are differences (extra rows), never folded into
// one, and the repair SQL leaves one copy equal to the source's.
func TestDiffFindsDuplicateDestinationKeys(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	rows := "INSERT INTO k SELECT g, 'v' || g FROM generate_series(1, 2000) g;"
	pgtest.Exec(t, src, "CREATE TABLE k (id int PRIMARY KEY, v text);"+rows)
	pgtest.Exec(t, dst, "CREATE TABLE k (id int NOT NULL, v text);"+rows+`
		INSERT INTO k VALUES (7, 'v7'), (900, 'other'), (1500, 'x'), (1500, 'y');
		DELETE FROM k WHERE id = 1500 AND v = 'v1500';`)
	repair := filepath.Join(t.TempDir(), "repair.sql")
	out := mustRun(t, 4, "verify", "--source", src, "--dest", dst, "--table", "k", "--diff", "--diff-rows", "50", "--diff-sql", repair)
	// 7: an identical second copy; 900: a second copy that differs; 1500:
	// two copies, neither equal to the source's row.
	for _, w := range []string{"0 missing on the destination, 3 extra on the destination, 1 changed",
		"duplicated: (7)", "duplicated: (900)", "duplicated: (1500)", "changed: (1500) columns v"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	sql, _ := os.ReadFile(repair)
	pgtest.Exec(t, dst, string(sql))
	mustRun(t, 0, "verify", "--source", src, "--dest", dst, "--table", "k")
	if got := pgtest.QueryString(t, dst, "SELECT count(*) || ' ' || count(DISTINCT id) FROM k"); got != "2000 2000" {
		t.Errorf("after repair: rows and distinct keys = %s", got)
	}
}

// A diff that fails (here: the destination role may not call the row hash
// function the diff uses) does not turn a found difference into a run-time
// error: the unit is still a mismatch, exit 4, and says why the diff failed.
func TestFailedDiffStillExitsMismatch(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	role, as := newRole(t, "nodiff", dst)
	pgtest.Exec(t, src, "CREATE TABLE k (id int PRIMARY KEY, v text); INSERT INTO k VALUES (1, 'a'), (2, 'b')")
	pgtest.Exec(t, dst, "CREATE TABLE k (id int PRIMARY KEY, v text); INSERT INTO k VALUES (1, 'a'), (2, 'changed');"+
		"GRANT SELECT ON k TO "+role+"; REVOKE EXECUTE ON FUNCTION md5(bytea) FROM PUBLIC")
	out := mustRun(t, 4, "verify", "--source", src, "--dest", as(dst), "--table", "k", "--diff")
	if !strings.Contains(out, "mismatch") || !strings.Contains(out, "checksums differ") ||
		!strings.Contains(out, "; the diff failed: destination: ERROR: permission denied for function md5") {
		t.Errorf("output:\n%s", out)
	}
}

// A destination whose key columns allow NULL may hold rows with a NULL in
// the key, which lie outside every key range the diff compares: they are
// extra rows, counted and listed as such (not hidden, and not taken for a
// difference hash_record_extended missed), and the repair deletes them.
func TestDiffFindsNullDestinationKeys(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, diffRows, dstB string }{
		{"bisected", "50", "int"}, {"compared whole", "5000", "int"}, {"bisected by row text", "50", "bigint"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			src, dst := pgtest.Get(t).NewDBs(t)
			rows := "INSERT INTO k SELECT g % 7, g, 'v' || g FROM generate_series(1, 2000) g;"
			pgtest.Exec(t, src, "CREATE TABLE k (a int, b int, v text, PRIMARY KEY (a, b));"+rows)
			pgtest.Exec(t, dst, "CREATE TABLE k (a int, b "+c.dstB+", v text);"+rows+
				"INSERT INTO k VALUES (NULL, 5, 'x'), (3, NULL, 'y'), (NULL, NULL, 'z'); UPDATE k SET v = 'changed' WHERE b = 700")
			repair := filepath.Join(t.TempDir(), "repair.sql")
			out := mustRun(t, 4, "verify", "--source", src, "--dest", dst, "--table", "k", "--diff", "--diff-rows", c.diffRows, "--diff-sql", repair)
			for _, w := range []string{"0 missing on the destination, 3 extra on the destination, 1 changed",
				"extra: 3 row(s) with a NULL key", "changed: (0, 700) columns v"} {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "missed a difference") {
				t.Errorf("rows with a NULL key taken for a difference hash_record_extended missed:\n%s", out)
			}
			sql, _ := os.ReadFile(repair)
			pgtest.Exec(t, dst, string(sql))
			mustRun(t, 0, "verify", "--source", src, "--dest", dst, "--table", "k")
		})
	}
}

// Key values equal under their type's equality may differ (numeric 7 and
// 7.0, float 0 and -0, text under a nondeterministic collation), and a
// destination without the source's unique index may hold both: the diff
// lists them as distinct keys, and the repair's statements touch only the
// rows of the key they name, so applying it leaves the rows that match.
func TestRepairTouchesOnlyTheKeyItNames(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, typ, gen, extra, changed string }{
		{"numeric scale", "numeric", "g", "(7.0, 'x'), (8.00, 'v8')", "UPDATE k SET v = 'changed' WHERE id = 9.0"},
		{"float zero", "float8", "g - 1", "('-0', 'v1')", "UPDATE k SET v = 'changed' WHERE id = 5"},
		{"nondeterministic collation", `text COLLATE "und-u-ks-level2-x-icu"`, "'k' || g", "('K7', 'x')", "UPDATE k SET v = 'changed' WHERE id = 'k9' COLLATE \"C\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			src, dst := pgtest.Get(t).NewDBs(t)
			coll := `CREATE COLLATION IF NOT EXISTS "und-u-ks-level2-x-icu" (provider = icu, locale = 'und-u-ks-level2', deterministic = false);`
			typ := strings.Replace(c.typ, `"und-u-ks-level2-x-icu"`, `public."und-u-ks-level2-x-icu"`, 1)
			rows := "INSERT INTO k SELECT " + c.gen + ", 'v' || g FROM generate_series(1, 300) g;"
			pgtest.Exec(t, src, coll+"CREATE TABLE k (id "+typ+" PRIMARY KEY, v text);"+rows)
			pgtest.Exec(t, dst, coll+"CREATE TABLE k (id "+typ+" NOT NULL, v text);"+rows+"INSERT INTO k VALUES "+c.extra+";"+c.changed)
			repair := filepath.Join(t.TempDir(), "repair.sql")
			out := mustRun(t, 4, "verify", "--source", src, "--dest", dst, "--table", "k", "--diff", "--diff-rows", "20", "--diff-sql", repair)
			sql, _ := os.ReadFile(repair)
			pgtest.Exec(t, dst, string(sql))
			if code, after, _ := lockstep(t, context.Background(), "verify", "--source", src, "--dest", dst, "--table", "k"); code != 0 {
				t.Errorf("after the repair, exit %d:\n%s\ndiff:\n%s\nrepair.sql:\n%s", code, after, out, sql)
			}
		})
	}
}

// A key that is an identity column GENERATED ALWAYS (the usual primary
// key) takes no value from a plain INSERT: the repair's INSERTs of missing
// rows override the system value, as COPY does.
func TestRepairInsertsIntoIdentityColumns(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := "CREATE TABLE k (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);"
	pgtest.Exec(t, src, schema+"INSERT INTO k (v) SELECT 'v' || g FROM generate_series(1, 300) g;")
	pgtest.Exec(t, dst, schema)
	mustRun(t, 0, "copy", "--source", src, "--dest", dst, "--table", "k")
	pgtest.Exec(t, dst, "DELETE FROM k WHERE id IN (7, 250)")
	repair := filepath.Join(t.TempDir(), "repair.sql")
	out := mustRun(t, 4, "verify", "--source", src, "--dest", dst, "--table", "k", "--diff", "--diff-sql", repair)
	if !strings.Contains(out, "2 missing on the destination, 0 extra on the destination, 0 changed") {
		t.Errorf("diff:\n%s", out)
	}
	sql, _ := os.ReadFile(repair)
	pgtest.Exec(t, dst, string(sql))
	mustRun(t, 0, "verify", "--source", src, "--dest", dst, "--table", "k")
}
