package partition

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"lockstep/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// countingQuerier counts the queries a plan sends.
type countingQuerier struct {
	q Querier
	n atomic.Int64
}

func (c *countingQuerier) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.n.Add(1)
	return c.q.Query(ctx, sql, args...)
}

func (c *countingQuerier) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	c.n.Add(1)
	return c.q.QueryRow(ctx, sql, args...)
}

// hashPartitioned creates table name with n hash partitions.
func hashPartitioned(name string, n int) string {
	return fmt.Sprintf(`CREATE TABLE %[1]s (id int PRIMARY KEY, v text) PARTITION BY HASH (id);
		DO $$ BEGIN FOR i IN 0..%[2]d - 1 LOOP
		  EXECUTE format('CREATE TABLE %%I PARTITION OF %[1]s FOR VALUES WITH (MODULUS %[2]d, REMAINDER %%s)', '%[1]s_' || i, i);
		END LOOP; END $$;`, name, n)
}

// planQueries plans a selection and returns the queries it sent per side.
func planQueries(t *testing.T, src, dst string, o Options) (units, srcQ, dstQ int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	begin := func(dsn string) pgx.Tx {
		conn := pgtest.Connect(t, dsn)
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tx.Rollback(context.Background()) })
		return tx
	}
	s, d := &countingQuerier{q: begin(src)}, &countingQuerier{q: begin(dst)}
	got, err := Plan(ctx, s, d, o)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	return len(got), int(s.n.Load()), int(d.n.Load())
}

// The number of catalog queries a plan sends does not depend on the number
// of units: a table of 8 partitions and one of 512 cost the same.
func TestPlanQueriesIndependentOfUnits(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	for _, dsn := range []string{src, dst} {
		pgtest.Exec(t, dsn, hashPartitioned("small", 8)+hashPartitioned("large", 512)+
			`CREATE TABLE shard_a (id int PRIMARY KEY); CREATE TABLE shard_b (id int PRIMARY KEY);`)
	}
	pgtest.Exec(t, src, `INSERT INTO large SELECT g, 'v' FROM generate_series(1, 5000) g; INSERT INTO small SELECT g, 'v' FROM generate_series(1, 100) g`)
	for _, o := range []Options{
		{Copy: true, Lock: true},
		{Copy: false, Lock: false, WithKey: true},
	} {
		name := fmt.Sprintf("copy=%v,key=%v", o.Copy, o.WithKey)
		t.Run(name, func(t *testing.T) {
			o8, o512 := o, o
			o8.Selection = Selection{Tables: []string{"small"}, Matching: []string{`^public\.shard_`}, Exclude: []string{"_b$"}}
			o512.Selection = Selection{Tables: []string{"large"}, Matching: []string{`^public\.shard_`}, Exclude: []string{"_b$"}}
			u8, s8, d8 := planQueries(t, src, dst, o8)
			var stages []string
			o512.Progress = func(s string) { stages = append(stages, s) }
			u512, s512, d512 := planQueries(t, src, dst, o512)
			if want := "reading the catalogs of 513 tables"; !slices.Contains(stages, want) {
				t.Errorf("stages %q lack %q", stages, want)
			}
			if u8 != 9 || u512 != 513 {
				t.Fatalf("units: %d and %d, want 9 and 513", u8, u512)
			}
			if s8 != s512 || d8 != d512 {
				t.Fatalf("queries for 9 units: source %d, destination %d; for 513 units: source %d, destination %d", s8, d8, s512, d512)
			}
			t.Logf("%s: %d queries on the source, %d on the destination, for 9 or 513 units", name, s8, d8)
		})
	}
	// Names from a list cost the same as one name.
	many := make([]string, 0, 64)
	for i := range 64 {
		many = append(many, fmt.Sprintf("large_%d", i))
	}
	_, s1, d1 := planQueries(t, src, dst, Options{Copy: true, Lock: true, Selection: Selection{Tables: many[:1]}})
	_, s64, d64 := planQueries(t, src, dst, Options{Copy: true, Lock: true, Selection: Selection{Tables: many}})
	if s1 != s64 || d1 != d64 {
		t.Fatalf("1 name: %d/%d queries; 64 names: %d/%d", s1, d1, s64, d64)
	}
}

// The plan compares the foreign keys among the selected tables on both
// sides and warns where they differ: units are grouped by the
// destination's, where TRUNCATE runs.
func TestPlanWarnsWhenForeignKeysDiffer(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, `CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY, pid int CONSTRAINT c_p REFERENCES p);
		CREATE TABLE d (id int PRIMARY KEY, pid int);`)
	pgtest.Exec(t, dst, `CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY, pid int);
		CREATE TABLE d (id int PRIMARY KEY, pid int CONSTRAINT d_p REFERENCES p);`)
	var warned []string
	o := Options{Copy: true, Lock: true, FKMode: FKGroup, Selection: Selection{Tables: []string{"p", "c", "d"}},
		Warn: func(m string) { warned = append(warned, m) }}
	planQueries(t, src, dst, o)
	got := strings.Join(warned, "\n")
	for _, want := range []string{
		`destination: lacks the source's foreign key "c_p" on "public"."c" -> "public"."p"`,
		`source: lacks the destination's foreign key "d_p" on "public"."d" -> "public"."p"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings lack %q:\n%s", want, got)
		}
	}
	if len(warned) != 2 {
		t.Errorf("want 2 warnings, got %q", warned)
	}
}
