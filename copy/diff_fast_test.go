package copy_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"lockstep/copy"
	"lockstep/internal/pgtest"
	"lockstep/verify"
)

// fastRows is a table big enough to bisect (20,000 rows, 50 rows a leaf)
// whose identical built-in types let the diff sum segments by
// hash_record_extended. Row 10 holds numeric 1.0, row 2000 float 0 and
// row 3000 an interval of 1 day: values with an equal twin that is not
// identical (1.00, -0, 24 hours).
const fastRows = `CREATE TABLE k (id int PRIMARY KEY, n numeric, f float8, iv interval, t text, ts timestamptz);
	INSERT INTO k SELECT g, round(g / 10.0, 1), (g % 1000) * 0.5,
	                     CASE WHEN g % 1000 = 0 THEN interval '1 day' ELSE g * interval '1 minute' END,
	                     'row ' || g, '2024-01-01'::timestamptz + g * interval '1 s'
	FROM generate_series(1, 20000) g;`

// diffOf verifies table k, which must be compared in binary, with --diff
// and 50-row leaves and returns the unit's diff, which must exist.
func diffOf(t *testing.T, src, dst string) *verify.Diff {
	t.Helper()
	o := opts(src, dst, "k")
	o.Diff, o.DiffRows = true, 50
	r := check(t, o)
	if r.Status != copy.StatusMismatch || r.Diff == nil || r.Format != "binary" {
		t.Fatalf("status %s (%s), diff %+v, err %v", r.Status, r.Format, r.Diff, r.Err)
	}
	return r.Diff
}

// changedKeys renders the changed rows as "key:columns".
func changedKeys(d *verify.Diff) []string {
	var out []string
	for _, c := range d.Changed {
		out = append(out, strings.Join(c.Key, ",")+":"+strings.Join(c.Columns, ","))
	}
	slices.Sort(out)
	return out
}

// On servers of one major version with identical built-in types, the
// diff sums segments by hash_record_extended and pinpoints a changed, a
// missing and an extra row without falling back to the row text.
func TestDiffFastHashFindsOneChangedRow(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, fastRows)
	mustExec(t, dst, fastRows+`UPDATE k SET t = 'changed' WHERE id = 12345;
		DELETE FROM k WHERE id = 777; INSERT INTO k (id, t) VALUES (30000, 'extra')`)
	d := diffOf(t, src, dst)
	if d.HashFunc != "hash_record_extended" || d.Note != "" {
		t.Errorf("hash %q, note %q: want hash_record_extended without a fallback", d.HashFunc, d.Note)
	}
	if got := changedKeys(d); d.ChangedCount != 1 || !slices.Equal(got, []string{"12345:t"}) ||
		d.MissingCount != 1 || d.Missing[0][0] != "777" || d.ExtraCount != 1 || d.Extra[0][0] != "30000" {
		t.Errorf("diff: changed %v, %+v", got, d)
	}
	if d.Depth < 2 || d.RowsFetched > 1000 {
		t.Errorf("depth %d, %d rows fetched of 40,000", d.Depth, d.RowsFetched)
	}
}

// hash_record_extended hashes by equality: a value changed into an equal
// one that is not identical leaves every segment's sum as it was. The
// checksums still differ, the rows compared do not explain that, and the
// diff bisects again by the row text, which finds it, also next to a
// change the fast hash does see.
func TestDiffFastHashBlindSpotsFallBackToText(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, change string }{
		{"numeric 1.0 to 1.00", "UPDATE k SET n = 1.00 WHERE id = 10"},
		{"float 0 to -0", "UPDATE k SET f = '-0' WHERE id = 2000"},
		{"interval 1 day to 24 hours", "UPDATE k SET iv = '24 hours' WHERE id = 3000"},
		{"a blind change next to a seen one", "UPDATE k SET n = 1.00 WHERE id = 10; UPDATE k SET t = 'changed' WHERE id = 15000"},
	}
	want := [][]string{{"10:n"}, {"2000:f"}, {"3000:iv"}, {"10:n", "15000:t"}}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			src, dst := pgtest.Get(t).NewDBs(t)
			mustExec(t, src, fastRows)
			mustExec(t, dst, fastRows+c.change)
			d := diffOf(t, src, dst)
			if got := changedKeys(d); !slices.Equal(got, want[i]) || d.ChangedCount != int64(len(want[i])) || d.MissingCount+d.ExtraCount != 0 {
				t.Errorf("changed %v (%d), want %v; %+v", got, d.ChangedCount, want[i], d)
			}
			if d.HashFunc != "md5" || !strings.Contains(d.Note, "hash_record_extended missed a difference") {
				t.Errorf("hash %q, note %q: want the fallback to md5 said", d.HashFunc, d.Note)
			}
		})
	}
}

// Types without an extended hash function (json, point, xml on
// PostgreSQL 15: hash_record_extended raises an error on them) are hashed
// as text inside the fast row hash, so their changes are found too.
func TestDiffFastHashTypesWithoutExtendedHash(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE TABLE k (id int PRIMARY KEY, j json, pt point, x xml, v int);
		INSERT INTO k SELECT g, json_build_object('g', g), point(g, -g), ('<r>' || g || '</r>')::xml, g FROM generate_series(1, 20000) g;`
	mustExec(t, src, schema)
	mustExec(t, dst, schema+`UPDATE k SET j = '{"g": 100, "x": 1}' WHERE id = 100;
		UPDATE k SET pt = '(1,2)' WHERE id = 9000; UPDATE k SET x = '<r/>' WHERE id = 19000`)
	for _, dsn := range []string{src, dst} {
		for _, typ := range []string{"json", "point", "xml"} {
			if err := connect(t, dsn).QueryRow(context.Background(), "SELECT hash_record_extended(ROW(NULL::"+typ+"), 0)").Scan(new(int64)); err == nil {
				t.Fatalf("%s has an extended hash function here: the test would not exercise the fallback", typ)
			}
		}
	}
	d := diffOf(t, src, dst)
	if d.HashFunc != "hash_record_extended" || d.Note != "" {
		t.Errorf("hash %q, note %q: want hash_record_extended without a fallback", d.HashFunc, d.Note)
	}
	if got := changedKeys(d); !slices.Equal(got, []string{"100:j", "19000:x", "9000:pt"}) {
		t.Errorf("changed %v; %+v", got, d)
	}
}

// An enum is compared in binary (its label travels), but its hash is its
// value's OID, which differs between servers: the fast row hash hashes it
// as text, or every segment would differ and every row be fetched. A
// domain over a built-in type hashes as its base type.
func TestDiffFastHashEnumsAndDomains(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy'); CREATE DOMAIN pos AS int CHECK (VALUE > 0);
		CREATE TABLE k (id int PRIMARY KEY, m mood, p pos, v text);
		INSERT INTO k SELECT g, (ARRAY['sad', 'ok', 'happy']::mood[])[1 + g % 3], g, 'v' || g FROM generate_series(1, 20000) g;`
	mustExec(t, src, schema)
	// Another enum first, so the destination's labels get other OIDs.
	mustExec(t, dst, "CREATE TYPE shift AS ENUM ('x', 'y', 'z');"+schema+
		"UPDATE k SET m = 'happy' WHERE id = 1234; UPDATE k SET p = 7 WHERE id = 17000")
	if pgtest.QueryString(t, src, "SELECT oid FROM pg_enum WHERE enumlabel = 'ok'") == pgtest.QueryString(t, dst, "SELECT oid FROM pg_enum WHERE enumlabel = 'ok'") {
		t.Fatal("the enum's OIDs are the same on both sides: the test would not exercise the text hash")
	}
	d := diffOf(t, src, dst)
	if got := changedKeys(d); d.HashFunc != "hash_record_extended" || d.Note != "" || !slices.Equal(got, []string{"1234:m", "17000:p"}) {
		t.Errorf("hash %q, note %q, changed %v; %+v", d.HashFunc, d.Note, got, d)
	}
	if d.RowsFetched > 1000 {
		t.Errorf("%d rows fetched of 40,000", d.RowsFetched)
	}
}

// Text equal under a nondeterministic collation ('a' and 'A' under a
// case-insensitive one) is not identical: the fast row hash compares text
// COLLATE "C", so it sees the change itself, with no fallback.
func TestDiffFastHashComparesTextByBytes(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
		CREATE TABLE k (id int PRIMARY KEY, t text COLLATE ci);
		INSERT INTO k SELECT g, 'row ' || g FROM generate_series(1, 20000) g;`
	conn := connect(t, src)
	if _, err := conn.Exec(context.Background(), schema); err != nil {
		if strings.Contains(err.Error(), "ICU is not supported") {
			t.Skipf("the servers were built without ICU: %v", err)
		}
		t.Fatal(err)
	}
	mustExec(t, dst, schema+"UPDATE k SET t = 'ROW 4321' WHERE id = 4321")
	d := diffOf(t, src, dst)
	if got := changedKeys(d); d.HashFunc != "hash_record_extended" || d.Note != "" || !slices.Equal(got, []string{"4321:t"}) {
		t.Errorf("hash %q, note %q, changed %v; %+v", d.HashFunc, d.Note, got, d)
	}
}

// recorder is a connection that keeps the statements it was sent.
type recorder struct {
	*pgx.Conn
	mu  sync.Mutex
	sql []string
}

func (r *recorder) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	r.mu.Lock()
	r.sql = append(r.sql, sql)
	r.mu.Unlock()
	return r.Conn.Query(ctx, sql, args...)
}

func (r *recorder) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	r.mu.Lock()
	r.sql = append(r.sql, sql)
	r.mu.Unlock()
	return r.Conn.QueryRow(ctx, sql, args...)
}

// Each level of the bisection is summed in one query per side, whatever
// the number of its segments; a big segment is cut at the quantiles of a
// page sample (TABLESAMPLE SYSTEM), on a plain table and on a partitioned
// one, and the bounds it gives find the same differences.
func TestBisectByLevelWithSampledSplits(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, schema, table string }{
		{"plain", "CREATE TABLE k (id int PRIMARY KEY, v text);", "ONLY k"},
		{"partitioned", `CREATE TABLE k (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
			CREATE TABLE k1 PARTITION OF k FOR VALUES FROM (MINVALUE) TO (10000); CREATE TABLE k2 PARTITION OF k FOR VALUES FROM (10000) TO (MAXVALUE);`, "k"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			src, dst := pgtest.Get(t).NewDBs(t)
			rows := "INSERT INTO k SELECT g, 'v' || g FROM generate_series(1, 20000) g;"
			mustExec(t, src, c.schema+rows)
			mustExec(t, dst, c.schema+rows+"UPDATE k SET v = 'x' WHERE id = 7777; DELETE FROM k WHERE id = 15000")
			spec := verify.Spec{Unit: "k", Columns: []string{"id", "v"}, Key: []verify.KeyColumn{{Name: "id", Type: "integer"}},
				LeafRows: 50, HashFunc: "md5", SourceRows: 20000, DestRows: 19999, SampleRows: 1000}
			sq, dq := &recorder{Conn: connect(t, src)}, &recorder{Conn: connect(t, dst)}
			d, err := verify.Bisect(testCtx(t), verify.Side{Q: sq, Table: c.table}, verify.Side{Q: dq, Table: c.table}, spec)
			if err != nil {
				t.Fatal(err)
			}
			if got := changedKeys(d); !slices.Equal(got, []string{"7777:v"}) || d.MissingCount != 1 || d.Missing[0][0] != "15000" || d.ExtraCount != 0 {
				t.Fatalf("diff: changed %v, %+v", got, d)
			}
			if !slices.ContainsFunc(sq.sql, func(s string) bool { return strings.Contains(s, "TABLESAMPLE SYSTEM") }) {
				t.Errorf("no split point came from a sample:\n%s", strings.Join(sq.sql, "\n"))
			}
			for side, r := range map[string]*recorder{"source": sq, "destination": dq} {
				sums := 0
				for _, s := range r.sql {
					if strings.Contains(s, "GROUP BY s__") {
						sums++
					}
				}
				if d.Depth < 2 || sums != d.Depth || d.Segments <= d.Depth {
					t.Errorf("%s: %d summing queries for %d segments over %d levels", side, sums, d.Segments, d.Depth)
				}
			}
		})
	}
}
