package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"lockstep/internal/pgtest"
)

func mustRun(t *testing.T, want int, args ...string) string {
	t.Helper()
	code, out, errOut := lockstep(t, context.Background(), args...)
	if code != want {
		t.Fatalf("lockstep %s: exit %d, want %d\n%s\n%s", strings.Join(args[:1], " "), code, want, out, errOut)
	}
	return out
}

var checksumRE = regexp.MustCompile(`checksum=([0-9a-f]{32})`)

// A verify computes the same figures a copy did, and says 0 on identical
// data across servers whose column order, type OIDs and TimeZone differ.
func TestVerifyAgreesWithCopyAcrossLayouts(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE TYPE mood AS ENUM ('sad', 'ok'); CREATE TYPE pair AS (a int, b text);`
	pgtest.Exec(t, src, schema+`CREATE TABLE t (id int PRIMARY KEY, m mood, p pair, ts timestamptz, f float8, j jsonb, x text);
		INSERT INTO t SELECT g, 'ok', ROW(g, 'b' || g)::pair, '2024-03-31 01:30+00'::timestamptz + g * interval '1 minute', g / 7.0, jsonb_build_object('g', g), NULL FROM generate_series(1, 3000) g;`)
	pgtest.Exec(t, dst, `CREATE TYPE filler AS ENUM ('z'); CREATE TYPE filler2 AS (q int);`+schema+
		`CREATE TABLE t (x text, j jsonb, f float8, ts timestamptz, p pair, m mood, id int PRIMARY KEY);`+
		`ALTER DATABASE `+quoteIdent(dbOf(t, dst))+` SET TimeZone = 'Pacific/Chatham';`)
	out := mustRun(t, 0, "copy", "--source", src, "--dest", dst, "--table", "t")
	copied := checksumRE.FindStringSubmatch(out)
	out = mustRun(t, 0, "verify", "--source", src, "--dest", dst, "--table", "t")
	verified := checksumRE.FindStringSubmatch(out)
	if copied == nil || verified == nil || copied[1] != verified[1] {
		t.Fatalf("copy and verify disagree:\n%v\n%v", copied, verified)
	}
	mustRun(t, 0, "verify", "--source", src, "--dest", dst, "--table", "t", "--lock", "--mode", "count")
	mustRun(t, 0, "verify", "--source", dst, "--dest", src, "--table", "t") // and the other way round
}

func dbOf(t *testing.T, dsn string) string {
	return pgtest.QueryString(t, dsn, "SELECT current_database()")
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// One change in any single column of a single row is found, by the
// checksum and by the diff, which names the column.
func TestVerifyDetectsEverySingleChange(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE TABLE s (id int PRIMARY KEY, f8 float8, f4 real, n numeric, jb jsonb, j json, by bytea, ts timestamp,
		tz timestamptz, iv interval, t text, vc varchar(10), ta text[], u uuid, ip inet, b bool, d date);`
	row := `INSERT INTO s VALUES (1, 0, 1.5, 1.5, '{"a": 1, "b": [1, 2]}', '{"a":1}', '\x0001ff', '2024-01-01 00:00:00.000001',
		'2024-01-01 00:00:00+00', '1 day', '', 'abc', '{a,b}', '00000000-0000-0000-0000-000000000001', '10.0.0.1', true, '2024-01-01'),
		(2, 1, 2, 2, '{}', '{}', '', '2024-01-01', '2024-01-01', '0', 'x', 'x', '{}', '00000000-0000-0000-0000-000000000002', '::1', false, '2024-01-02');`
	pgtest.Exec(t, src, schema+row)
	pgtest.Exec(t, dst, schema)
	mutations := []struct{ col, set string }{
		{"f8", "'-0'"}, // -0 vs 0
		{"f4", "1.5000001"},
		{"n", "1.50"}, // a trailing zero
		{"jb", `'{"a": 1, "c": [1, 2]}'`},
		{"j", `'{"a": 1}'`}, // json keeps whitespace
		{"by", `'\x0001fe'`},
		{"ts", "'2024-01-01 00:00:00.000002'"},
		{"tz", "'2024-01-01 00:00:00.000001+00'"},
		{"iv", "'24 hours'"}, // equal as intervals, different values
		{"t", "NULL"},        // NULL vs ''
		{"vc", "'abc '"},
		{"ta", "'{a,b,NULL}'"},
		{"u", "'00000000-0000-0000-0000-000000000003'"},
		{"ip", "'10.0.0.1/24'"}, // same address, other netmask
		{"b", "NULL"},
		{"d", "'2024-01-03'"},
	}
	for _, m := range mutations {
		mustRun(t, 0, "copy", "--source", src, "--dest", dst, "--table", "s", "--quiet", "--redo")
		pgtest.Exec(t, dst, fmt.Sprintf("UPDATE s SET %s = %s WHERE id = 1", m.col, m.set))
		out := mustRun(t, 4, "verify", "--source", src, "--dest", dst, "--table", "s", "--diff")
		if !strings.Contains(out, "changed: (1) columns "+m.col+"\n") || !strings.Contains(out, "0 missing on the destination, 0 extra on the destination, 1 changed") {
			t.Errorf("%s = %s: diff did not name the column:\n%s", m.col, m.set, out)
		}
	}
}

// The diff finds missing, extra and changed rows for each kind of key,
// reads a small part of the table to do it, and its repair SQL repairs.
func TestDiffPinpointsByKeyType(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, key, cols, gen, missing, extra, changed string
	}{
		{"integer", "id", "id int", "g", "(4321)", "(-5)", "(777)"},
		{"bigint", "id", "id bigint", "g * 10000000000", "(43210000000000)", "(-5)", "(7770000000000)"},
		{"numeric", "id", "id numeric", "g * 0.125", "(540.125)", "(-5)", "(97.125)"},
		{"uuid", "id", "id uuid", "md5(g::text)::uuid", "(" + uuidOf(4321) + ")", "(00000000-0000-0000-0000-000000000000)", "(" + uuidOf(777) + ")"},
		{"text", "id", "id text", "'k' || g", "(k4321)", "(Z-extra)", "(k777)"},
		{"timestamp", "id", "id timestamp", "'2020-01-01'::timestamp + g * interval '1 second'", "(2020-01-01 01:12:01)", "(1999-01-01 00:00:00)", "(2020-01-01 00:12:57)"},
		{"composite", "a, b", "a int, b text", "g % 10, 'b' || g", "(1, b4321)", "(0, extra)", "(7, b777)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			src, dst := pgtest.Get(t).NewDBs(t)
			schema := fmt.Sprintf("CREATE TABLE k (%s, payload text, n int, PRIMARY KEY (%s));", c.cols, c.key)
			cols := strings.Split(c.key, ", ")
			sel := fmt.Sprintf("SELECT %s, repeat('p', 50), g FROM generate_series(1, 20000) g", c.gen)
			pgtest.Exec(t, src, schema+"INSERT INTO k "+sel)
			pgtest.Exec(t, dst, schema+"INSERT INTO k "+sel)
			where := func(tuple string) string {
				vals := strings.Split(strings.Trim(tuple, "()"), ", ")
				var conds []string
				for i, col := range cols {
					conds = append(conds, fmt.Sprintf("%s = '%s'", col, vals[i]))
				}
				return strings.Join(conds, " AND ")
			}
			extraVals := strings.Split(strings.Trim(c.extra, "()"), ", ")
			pgtest.Exec(t, dst, fmt.Sprintf("DELETE FROM k WHERE %s; UPDATE k SET payload = 'changed' WHERE %s; INSERT INTO k (%s, payload, n) VALUES ('%s', 'x', 0)",
				where(c.missing), where(c.changed), c.key, strings.Join(extraVals, "', '")))
			repair := filepath.Join(t.TempDir(), "repair.sql")
			report := filepath.Join(t.TempDir(), "report.json")
			out := mustRun(t, 4, "verify", "--source", src, "--dest", dst, "--table", "k", "--diff", "--diff-rows", "100",
				"--diff-sql", repair, "--report", report)
			for _, w := range []string{"1 missing on the destination, 1 extra on the destination, 1 changed",
				"missing: " + c.missing, "extra: " + c.extra, "changed: " + c.changed + " columns payload"} {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			var rep jsonReport
			b, _ := os.ReadFile(report)
			if err := json.Unmarshal(b, &rep); err != nil || rep.Run == nil || rep.Run.Units[0].Diff == nil {
				t.Fatalf("report: %v %s", err, b)
			}
			d := rep.Run.Units[0].Diff
			// Cost: a few thousand of 40000 rows on the two sides cross the network.
			if d.RowsFetched > 4000 || d.RowsFetched < 3 {
				t.Errorf("rows fetched = %d", d.RowsFetched)
			}
			sql, _ := os.ReadFile(repair)
			pgtest.Exec(t, dst, string(sql))
			mustRun(t, 0, "verify", "--source", src, "--dest", dst, "--table", "k")
		})
	}
}

func uuidOf(g int) string {
	return pgtestUUID(g)
}

func TestDiffWithoutKeySaysWhy(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, "CREATE TABLE nk (a int, b text); INSERT INTO nk VALUES (1, 'x'), (2, 'y');")
	pgtest.Exec(t, dst, "CREATE TABLE nk (a int, b text); INSERT INTO nk VALUES (1, 'x'), (2, 'z');")
	out := mustRun(t, 4, "verify", "--source", src, "--dest", dst, "--table", "nk", "--diff")
	if !strings.Contains(out, `diff: cannot pinpoint rows: "public"."nk" has no primary key; name a unique not-null key with --key`) {
		t.Errorf("output: %s", out)
	}
	if code, _, errOut := lockstep(t, context.Background(), "verify", "--source", src, "--dest", dst, "--table", "nk", "--diff", "--key", "a"); code != 2 || !strings.Contains(errOut, "--key a is not a unique, not-null key") {
		t.Errorf("--key on a non-unique column: exit %d: %s", code, errOut)
	}
	pgtest.Exec(t, src, "ALTER TABLE nk ALTER a SET NOT NULL; CREATE UNIQUE INDEX ON nk (a);")
	out = mustRun(t, 4, "verify", "--source", src, "--dest", dst, "--table", "nk", "--diff", "--key", "a", "--recheck-locked")
	if !strings.Contains(out, "changed: (2) columns b") || !strings.Contains(out, "re-checked under locks") {
		t.Errorf("output: %s", out)
	}
}

func TestVerifyLockTimeoutIsRuntimeError(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, "CREATE TABLE t (id int); INSERT INTO t VALUES (1);")
	pgtest.Exec(t, dst, "CREATE TABLE t (id int); INSERT INTO t VALUES (1);")
	conn := pgtest.Connect(t, dst)
	ctx := context.Background()
	tx, _ := conn.Begin(ctx)
	defer tx.Rollback(ctx)
	tx.Exec(ctx, "INSERT INTO t VALUES (2)")
	code, out, _ := lockstep(t, ctx, "verify", "--source", src, "--dest", dst, "--table", "t", "--lock", "--lock-timeout", "200ms", "--lock-retries", "0")
	if code != 1 || !strings.Contains(out, "destination: EXCLUSIVE lock on") {
		t.Fatalf("exit %d: %s", code, out)
	}
	// Without --lock the uncommitted row is invisible: a match, exit 0.
	mustRun(t, 0, "verify", "--source", src, "--dest", dst, "--table", "t")
}

// --checksum chooses the row hash; a copy and a verify with the same one
// print the same checksum, and the two hashes give different ones.
func TestChecksumFlag(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, `CREATE TABLE c (id int PRIMARY KEY, v text); INSERT INTO c SELECT g, md5(g::text) FROM generate_series(1, 500) g;`)
	pgtest.Exec(t, dst, `CREATE TABLE c (id int PRIMARY KEY, v text);`)
	sums := map[string]string{}
	for _, alg := range []string{"xxh3", "sha256"} {
		out := mustRun(t, 0, "copy", "--source", src, "--dest", dst, "--table", "c", "--checksum", alg, "--redo")
		copied := checksumRE.FindStringSubmatch(out)
		out = mustRun(t, 0, "verify", "--source", src, "--dest", dst, "--table", "c", "--checksum", alg)
		verified := checksumRE.FindStringSubmatch(out)
		if copied == nil || verified == nil || copied[1] != verified[1] {
			t.Fatalf("%s: copy and verify disagree: %v %v", alg, copied, verified)
		}
		sums[alg] = copied[1]
	}
	if sums["xxh3"] == sums["sha256"] {
		t.Error("xxh3 and sha256 printed one checksum")
	}
	if code, _, errOut := lockstep(t, context.Background(), "copy", "--source", src, "--dest", dst, "--table", "c", "--checksum", "md4"); code != 2 || !strings.Contains(errOut, "unknown --checksum") {
		t.Errorf("bad --checksum: exit %d: %s", code, errOut)
	}
}
