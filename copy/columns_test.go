package copy_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"lockstep/copy"
	"lockstep/internal/pgtest"
	"lockstep/verify"
)

// A composite type of one name whose attributes differ between the servers
// (here: the same attributes in another order) would be copied as text,
// which fills attributes by position: the values would land in the wrong
// attributes while both checksums, over the same text, agree. The plan
// refuses it, for the type used directly, in an array, and nested in
// another composite, and changes nothing.
func TestCompositeAttributesDifferRefused(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, `CREATE TYPE pair AS (a int, b int); CREATE TYPE wrap AS (w pair);
		CREATE TABLE direct (id int PRIMARY KEY, p pair); CREATE TABLE arr (id int PRIMARY KEY, ps pair[]);
		CREATE TABLE nested (id int PRIMARY KEY, w wrap); CREATE TABLE fine (id int PRIMARY KEY, p pair);
		INSERT INTO direct VALUES (1, ROW(1, 2)); INSERT INTO arr VALUES (1, ARRAY[ROW(1, 2)::pair]);
		INSERT INTO nested VALUES (1, ROW(ROW(1, 2))); INSERT INTO fine VALUES (1, ROW(1, 2));`)
	mustExec(t, dst, `CREATE TYPE pair AS (b int, a int); CREATE TYPE wrap AS (w pair);
		CREATE TABLE direct (id int PRIMARY KEY, p pair); CREATE TABLE arr (id int PRIMARY KEY, ps pair[]);
		CREATE TABLE nested (id int PRIMARY KEY, w wrap);
		CREATE SCHEMA other; CREATE TYPE other.pair AS (a int, b int); CREATE TABLE fine (id int PRIMARY KEY, p other.pair);
		INSERT INTO direct VALUES (9, ROW(9, 9));`)
	for _, table := range []string{"direct", "arr", "nested"} {
		_, err := copy.Run(testCtx(t), opts(src, dst, table))
		var bad *copy.BadInputError
		if !errors.As(err, &bad) || !strings.Contains(err.Error(), "public.pair (a integer, b integer)") ||
			!strings.Contains(err.Error(), "public.pair (b integer, a integer)") {
			t.Errorf("%s: err = %v, want bad input naming public.pair's attributes", table, err)
		}
	}
	if got := dump(t, dst, "direct", "id, (p).a, (p).b", "id"); got != "(9,9,9)" {
		t.Errorf("destination changed: %s", got)
	}
	// Types of one structure in different schemas are different types, as before.
	if _, err := copy.Run(testCtx(t), opts(src, dst, "fine")); err == nil || !strings.Contains(err.Error(), "cannot be copied safely") {
		t.Errorf("fine: err = %v, want a type change", err)
	}
	// The same structure on both sides copies.
	mustExec(t, dst, `DROP TABLE direct; DROP TYPE wrap CASCADE; DROP TYPE pair CASCADE; CREATE TYPE pair AS (a int, b int);
		CREATE TABLE direct (id int PRIMARY KEY, p pair);`)
	mustCopy(t, opts(src, dst, "direct"))
	assertSame(t, src, dst, "direct", "id, (p).a, (p).b", "id")
}

// A column generated on the source but plain on the destination is not
// copied (COPY cannot read it), so the destination's column would be left
// NULL (or its default) while the checksums, over the other columns, agree.
// The plan refuses it; generated on the destination (it computes its own)
// or on both sides is still skipped.
func TestGeneratedOnSourceOnlyRefused(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, `CREATE TABLE items (id int PRIMARY KEY, price numeric, qty int, total numeric GENERATED ALWAYS AS (price * qty) STORED);
		INSERT INTO items (id, price, qty) VALUES (1, 2.5, 4);`)
	mustExec(t, dst, `CREATE TABLE items (id int PRIMARY KEY, price numeric, qty int, total numeric);`)
	_, err := copy.Run(testCtx(t), opts(src, dst, "items"))
	var bad *copy.BadInputError
	if !errors.As(err, &bad) || !strings.Contains(err.Error(), `"total"`) || !strings.Contains(err.Error(), "generated on the source") {
		t.Errorf("err = %v, want bad input naming the generated column", err)
	}
	if n := count(t, dst, "items"); n != 0 {
		t.Errorf("destination has %d rows", n)
	}
	o := opts(src, dst, "items")
	mustExec(t, dst, `ALTER TABLE items DROP COLUMN total; ALTER TABLE items ADD COLUMN total numeric GENERATED ALWAYS AS (price * qty) STORED`)
	mustCopy(t, o)
	assertSame(t, src, dst, "items", "id, price, qty, total", "id")
	p, err := copy.MakePlan(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	if u := p.Planned(0); strings.Join(u.Skipped, ",") != "total (generated on the source)" {
		t.Errorf("skipped %q", u.Skipped)
	}
}

// Each server resolves a --table name with its own search_path, so two
// names can select two source tables that map to one destination table.
// Only one could be copied (the other was dropped, silently, as a repeat);
// the plan refuses, naming both.
func TestTwoSourcesOneDestinationRefused(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE SCHEMA app; CREATE TABLE app.orders (id int PRIMARY KEY); CREATE TABLE public.orders (id int PRIMARY KEY);`
	mustExec(t, src, schema+`INSERT INTO app.orders VALUES (1); INSERT INTO public.orders VALUES (2);
		ALTER DATABASE `+dbName(t, src)+` SET search_path = app, public;`)
	mustExec(t, dst, schema+`INSERT INTO public.orders VALUES (9);`)
	_, err := copy.Run(testCtx(t), opts(src, dst, "orders", "public.orders"))
	var bad *copy.BadInputError
	if !errors.As(err, &bad) || !strings.Contains(err.Error(), `"app"."orders"`) || !strings.Contains(err.Error(), `"public"."orders"`) {
		t.Errorf("err = %v, want bad input naming both source tables", err)
	}
	if got := dump(t, dst, "public.orders", "id", "id"); got != "(9)" {
		t.Errorf("destination changed: %s", got)
	}
	// Each name once is fine: the unqualified one maps app.orders to public.orders, as documented.
	rep := mustCopy(t, opts(src, dst, "public.orders"))
	if rep.Units[0].Unit != `"public"."orders"` {
		t.Errorf("unit %s", rep.Units[0].Unit)
	}
}

// Leaves of one name and bounds under partition keys that differ (another
// column, here) do not hold the same rows: a leaf's rows would be rejected
// by the destination's leaf for some values only, after other leaves were
// copied. The plan refuses, at the root and at a sub-partitioned level.
func TestPartitionKeysDifferRefused(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	tree := `CREATE TABLE m (a int, b int, c int) PARTITION BY RANGE (%s);
		CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (10);
		CREATE TABLE m2 PARTITION OF m FOR VALUES FROM (10) TO (20) PARTITION BY LIST (%s);
		CREATE TABLE m2x PARTITION OF m2 FOR VALUES IN (1);
		CREATE TABLE m2y PARTITION OF m2 DEFAULT;`
	mustExec(t, src, fmt.Sprintf(tree, "a", "c")+`INSERT INTO m VALUES (1, 15, 1), (15, 1, 1), (12, 3, 2);`)
	for _, keys := range [][2]string{{"b", "c"}, {"a", "b"}} {
		mustExec(t, dst, "DROP TABLE IF EXISTS m;"+fmt.Sprintf(tree, keys[0], keys[1]))
		_, err := copy.Run(testCtx(t), opts(src, dst, "m"))
		var bad *copy.BadInputError
		if !errors.As(err, &bad) || !strings.Contains(err.Error(), "RANGE (a)") && !strings.Contains(err.Error(), "LIST (c)") {
			t.Errorf("keys %v: err = %v, want bad input naming the partition keys", keys, err)
		}
		if n := count(t, dst, "m"); n != 0 {
			t.Errorf("keys %v: destination has %d rows", keys, n)
		}
	}
	mustExec(t, dst, "DROP TABLE m;"+fmt.Sprintf(tree, "a", "c"))
	mustCopy(t, opts(src, dst, "m"))
	assertSame(t, src, dst, "m", "a, b, c", "a")
}

// A domain of one name over built-in base types that differ is copied as
// text; where the destination's base does not hold every source value
// exactly (numeric into numeric(10,2): rounded), the plan refuses, as it
// does for the same change of a plain column. A widening base (int into
// bigint) still copies.
func TestDomainBaseNarrowingRefused(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, `CREATE DOMAIN amt AS numeric; CREATE DOMAIN wide AS int;
		CREATE TABLE pay (id int PRIMARY KEY, a amt, w wide); INSERT INTO pay VALUES (1, 1.234, 7);`)
	mustExec(t, dst, `CREATE DOMAIN amt AS numeric(10,2); CREATE DOMAIN wide AS bigint;
		CREATE TABLE pay (id int PRIMARY KEY, a amt, w wide);`)
	o := opts(src, dst, "pay")
	o.Verify = verify.Count
	_, err := copy.Run(testCtx(t), o)
	var bad *copy.BadInputError
	if !errors.As(err, &bad) || !strings.Contains(err.Error(), `column "a"`) || strings.Contains(err.Error(), `column "w"`) {
		t.Errorf("err = %v, want bad input naming column a only", err)
	}
	if n := count(t, dst, "pay"); n != 0 {
		t.Errorf("destination has %d rows", n)
	}
	mustExec(t, dst, `ALTER TABLE pay DROP COLUMN a; DROP DOMAIN amt; CREATE DOMAIN amt AS numeric; ALTER TABLE pay ADD COLUMN a amt;`)
	rep := mustCopy(t, o)
	if rep.Units[0].Format != "text" {
		t.Errorf("format %s, want text", rep.Units[0].Format)
	}
	assertSame(t, src, dst, "pay", "id, a, w", "id")
}

// A user range type of one name over other subtypes is copied as text,
// whose bounds the destination parses as its own subtype: numeric bounds
// into float8 are rounded, which only the checksum could catch. The plan
// refuses it.
func TestRangeSubtypeDiffersRefused(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, `CREATE TYPE span AS RANGE (subtype = numeric);
		CREATE TABLE spans (id int PRIMARY KEY, s span, ss span[]);
		INSERT INTO spans VALUES (1, '[0.10000000000000000001,1)', '{"[0.10000000000000000001,1)"}');`)
	mustExec(t, dst, `CREATE TYPE span AS RANGE (subtype = float8); CREATE TABLE spans (id int PRIMARY KEY, s span, ss span[]);`)
	o := opts(src, dst, "spans")
	o.Verify = verify.Count
	_, err := copy.Run(testCtx(t), o)
	var bad *copy.BadInputError
	if !errors.As(err, &bad) || !strings.Contains(err.Error(), "public.span (range of numeric)") || !strings.Contains(err.Error(), "public.span (range of double precision)") {
		t.Errorf("err = %v, want bad input naming both subtypes", err)
	}
	if n := count(t, dst, "spans"); n != 0 {
		t.Errorf("destination has %d rows", n)
	}
}

// A destination column the source lacks is filled by the destination as
// an INSERT fills it: an identity column (ALWAYS or BY DEFAULT), NOT NULL
// but without a default in the catalog, takes its next value. It used to
// be refused as "NOT NULL without a default".
func TestDestinationOnlyIdentityColumnFilled(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 5) g`)
	mustExec(t, dst, `CREATE TABLE t (id int PRIMARY KEY, v text, seq bigint GENERATED ALWAYS AS IDENTITY,
		byd int NOT NULL GENERATED BY DEFAULT AS IDENTITY (START 100))`)
	mustCopy(t, opts(src, dst, "t"))
	assertSame(t, src, dst, "t", "id, v", "id")
	if got := pgtest.QueryString(t, dst, "SELECT count(DISTINCT seq) || ',' || min(byd) FROM t"); got != "5,100" {
		t.Errorf("identity columns: %s, want 5,100", got)
	}
}
