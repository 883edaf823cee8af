package copy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"lockstep/copy"
	"lockstep/internal/pgtest"
	"lockstep/partition"
)

// Every built-in type family, with the values that break naive copies.
const builtinSchema = `
CREATE TABLE types (
  id int PRIMARY KEY,
  i2 smallint, i4 integer, i8 bigint, n numeric, n2 numeric(12,2),
  f4 real, f8 double precision, b boolean,
  t text, vc varchar(20), c char(3), "name col" name,
  by bytea,
  d date, ts timestamp, tstz timestamptz(3), tm time, tmtz timetz, iv interval,
  j json, jb jsonb,
  r4 int4range, rts tstzrange, nmr nummultirange,
  ip inet, cidr cidr, mac macaddr,
  u uuid,
  ta text[], ia int[], ja jsonb[],
  bits bit(4), vbits varbit,
  pt point, bx box,
  m money, x xml, tsv tsvector, oidc oid
);`

const builtinRows = `
INSERT INTO types VALUES
 (1, -32768, 2147483647, -9223372036854775808, 'NaN', 0.10, 'NaN', 'Infinity', true,
  E'tab\there\nnewline \\ backslash "quote" ''single''', 'varchar', 'ab', 'nm',
  '\x00ff5c0a', '4713-01-01 BC', 'infinity', '-infinity', '24:00', '12:00+14', '-178000000 years',
  '{ "a" :  1,   "a": 2 }', '{"b": [1, 2.50, null], "a": "x"}',
  '[1,5)', '[2020-03-29 01:30+00,infinity)', '{[1.5,2], [3,4)}',
  '::ffff:10.0.0.1/128', '10.0.0.0/8', '08:00:2b:01:02:03',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  ARRAY[NULL, '', 'NULL', 'with "quotes"', 'a,b', '{}', E'back\\slash'], '{{1,2},{3,NULL}}', ARRAY['{"k": [1]}'::jsonb, 'null'],
  B'1010', B'', '(1.5,-2)', '((0,0),(1,1))',
  '-92233720368547758.08', '<a x="1">t&amp;</a>', 'fat:1A cat:2 rat', 4294967295),
 (2, 0, 0, 0, '-0.000000000000000000000000000000001', -0.00, '-0', '-Infinity', false,
  '', '', '', '',
  '', '0001-01-01', '1999-12-31 23:59:59.999999', '2024-10-27 01:30:00.123+02', '00:00', '00:00-12', '1 mon -1 day 00:00:00.000001',
  '[]', '{}',
  'empty', '(,)', '{}',
  '::', '::/0', '00:00:00:00:00:00',
  '00000000-0000-0000-0000-000000000000',
  '{}', '{}', '{}',
  B'0000', B'1', '(0,0)', '((0,0),(0,0))',
  '0', '', '', 0),
 (3, 1, 1, 1, '123456789012345678901234567890.123456789012345678901234567890', 9999999999.99, 1e-45, 1e23, NULL,
  'ünïcødé ✓ 𝄞', NULL, NULL, NULL,
  NULL, 'infinity', NULL, '2024-03-31 02:30:00+01', NULL, NULL, NULL,
  'null', '"str"',
  NULL, NULL, NULL,
  NULL, NULL, NULL,
  NULL,
  ARRAY[NULL]::text[], NULL, NULL,
  NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
-- a 1 MB bytea
INSERT INTO types (id, by) SELECT 5, decode(repeat(md5('x'), 32768), 'hex') || '\x00'::bytea;`

const builtinCols = `id, i2, i4, i8, n, n2, f4, f8, b, t, vc, c, "name col", by, d, ts, tstz, tm, tmtz, iv, j, jb, r4, rts, nmr,
	ip, cidr, mac, u, ta, ia, ja, bits, vbits, pt::text, bx, m, x::text, tsv, oidc`

func TestBuiltinTypesRoundTripBinary(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, builtinSchema+builtinRows)
	// Same columns in another physical order on the destination, and a
	// server TimeZone that would shift timestamps if anything leaked.
	mustExec(t, dst, strings.Replace(builtinSchema, "id int PRIMARY KEY,", "u0 int, id int PRIMARY KEY,", 1)+
		"ALTER TABLE types DROP COLUMN u0; ALTER DATABASE "+dbName(t, dst)+" SET TimeZone = 'Asia/Kathmandu';")
	mustExec(t, dst, "INSERT INTO types (id, t) VALUES (99, 'stale row the copy must replace')")
	rep := mustCopy(t, opts(src, dst, "types"))
	if got := rep.Units[0].Format; got != "binary" {
		t.Errorf("format = %s, want binary for identical built-in types", got)
	}
	if rep.Units[0].Rows != 5 || rep.Units[0].Checksum == "" {
		t.Errorf("figures: rows=%d checksum=%q", rep.Units[0].Rows, rep.Units[0].Checksum)
	}
	assertSame(t, src, dst, "types", builtinCols, "id")
}

func TestBuiltinTypesRoundTripText(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	// An array of a user enum makes the copy text (an array carries its
	// element type's OID); every built-in value must survive the text path
	// too.
	enum := "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');"
	mustExec(t, src, enum+strings.Replace(builtinSchema, "oidc oid\n", "oidc oid, mood mood[] DEFAULT '{happy,sad}'\n", 1)+builtinRows)
	mustExec(t, dst, "CREATE TYPE filler AS ENUM ('x'); "+enum+
		strings.Replace(builtinSchema, "id int PRIMARY KEY,", "id int PRIMARY KEY, mood mood[],", 1)+
		"ALTER DATABASE "+dbName(t, dst)+" SET TimeZone = 'America/St_Johns'; ALTER DATABASE "+dbName(t, dst)+" SET DateStyle = 'SQL, DMY';")
	rep := mustCopy(t, opts(src, dst, "public.types"))
	if got := rep.Units[0].Format; got != "text" {
		t.Errorf("format = %s, want text with an array of a user enum", got)
	}
	assertSame(t, src, dst, "types", "mood, "+builtinCols, "id")
}

func dbName(t *testing.T, dsn string) string {
	t.Helper()
	cfg := connect(t, dsn).Config()
	return `"` + cfg.Database + `"`
}

// User types have other OIDs on the destination; binary would carry the
// source's OIDs inside arrays and composites, so these must go as text.
func TestUserTypesWithOtherOIDs(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `
CREATE SCHEMA app;
CREATE TYPE app.status AS ENUM ('new', 'paid', 'shipped');
CREATE TYPE app.money2 AS (amount numeric, currency char(3));
CREATE DOMAIN app.posint AS int CHECK (VALUE > 0);
CREATE TABLE app.orders (id int PRIMARY KEY, s app.status, ss app.status[], m app.money2, ms app.money2[], p app.posint);`
	mustExec(t, src, schema+`
INSERT INTO app.orders VALUES
 (1, 'paid', '{new,shipped,NULL}', '(12.50,EUR)', ARRAY['(1,USD)'::app.money2, NULL, '(,)'], 7),
 (2, NULL, '{}', NULL, NULL, NULL);`)
	mustExec(t, dst, `CREATE TYPE shift1 AS ENUM ('a'); CREATE TYPE shift2 AS (x int); CREATE DOMAIN shift3 AS int;`+schema)
	rep := mustCopy(t, opts(src, dst, "app.orders"))
	if rep.Units[0].Format != "text" {
		t.Errorf("format = %s, want text for user types", rep.Units[0].Format)
	}
	assertSame(t, src, dst, "app.orders", "*", "id")
}

// An enum travels in binary as its label and a domain over a built-in type
// as that type: no OID in either, so binary is exact across servers whose
// OIDs differ, and the checksums agree. A domain over a user type, or one
// whose base type differs between the servers, goes as text.
func TestEnumsAndDomainsInBinary(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `
CREATE SCHEMA app;
CREATE TYPE app.status AS ENUM ('new', 'paid', 'shipped');
CREATE DOMAIN app.posint AS int CHECK (VALUE > 0);
CREATE DOMAIN app.code AS varchar(8);
CREATE TABLE app.b (id int PRIMARY KEY, s app.status, p app.posint, c app.code);
CREATE DOMAIN app.st AS app.status;
CREATE TABLE app.t (id int PRIMARY KEY, s app.st);`
	mustExec(t, src, schema+`
INSERT INTO app.b SELECT g, (ARRAY['new','paid','shipped'])[1 + g % 3]::app.status, g, 'c' || g FROM generate_series(1, 3000) g;
INSERT INTO app.b VALUES (0, NULL, NULL, NULL);
INSERT INTO app.t SELECT g, 'paid' FROM generate_series(1, 10) g;
CREATE DOMAIN app.wide AS int; CREATE TABLE app.w (id int PRIMARY KEY, v app.wide); INSERT INTO app.w VALUES (1, 2147483647);`)
	// Other OIDs on the destination, and the enum's labels in another order.
	mustExec(t, dst, `CREATE TYPE shift1 AS ENUM ('a'); CREATE DOMAIN shift3 AS int;`+
		strings.Replace(schema, "('new', 'paid', 'shipped')", "('shipped', 'new', 'paid')", 1)+
		`CREATE DOMAIN app.wide AS bigint; CREATE TABLE app.w (id int PRIMARY KEY, v app.wide);`)
	o := opts(src, dst, "app.b", "app.t", "app.w")
	o.Order = partition.ByName
	rep := mustCopy(t, o)
	if f := rep.Units[0].Format + " " + rep.Units[1].Format + " " + rep.Units[2].Format; f != "binary text text" {
		t.Fatalf("formats %s; want binary for enum and domains over built-in types, text for a domain over an enum and for a domain whose base differs", f)
	}
	assertSame(t, src, dst, "app.b", "id, s::text, p, c", "id")
	assertSame(t, src, dst, "app.t", "id, s::text", "id")
	assertSame(t, src, dst, "app.w", "id, v", "id")
	// A later verify agrees, over binary.
	p, err := copy.MakePlan(testCtx(t), func() copy.Options { v := o; v.VerifyOnly = true; return v }())
	if err != nil {
		t.Fatal(err)
	}
	vrep, err := p.Verify(testCtx(t))
	if err != nil || vrep.OK != 3 || vrep.Units[0].Checksum != rep.Units[0].Checksum {
		t.Fatalf("verify: %v %+v", err, vrep)
	}
}

// Columns match by name: other physical order, dropped columns, generated
// columns computed by the destination itself.
func TestColumnOrderDroppedAndGenerated(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, `
CREATE TABLE items (id int PRIMARY KEY, gone text, price numeric, qty int,
  total numeric GENERATED ALWAYS AS (price * qty) STORED, note text);
ALTER TABLE items DROP COLUMN gone;
INSERT INTO items (id, price, qty, note) SELECT g, g * 1.5, g % 7, 'n' || g FROM generate_series(1, 1000) g;`)
	mustExec(t, dst, `
CREATE TABLE items (note text, x int, total numeric GENERATED ALWAYS AS (price * qty) STORED, qty int, price numeric, id int PRIMARY KEY);
ALTER TABLE items DROP COLUMN x;`)
	rep := mustCopy(t, opts(src, dst, "items"))
	if rep.Units[0].Format != "binary" {
		t.Errorf("format = %s, want binary", rep.Units[0].Format)
	}
	assertSame(t, src, dst, "items", "id, price, qty, total, note", "id")
}

func TestQuotedUnicodeNames(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE SCHEMA "My Schema"; CREATE TABLE "My Schema"."Odd ""Table""" ("ïd" int, "we""ird col" text, "UPPER" text);`
	mustExec(t, src, schema+`INSERT INTO "My Schema"."Odd ""Table""" VALUES (1, 'a', 'b'), (2, NULL, 'ü');`)
	mustExec(t, dst, schema)
	mustCopy(t, opts(src, dst, `"My Schema"."Odd ""Table"""`))
	assertSame(t, src, dst, `"My Schema"."Odd ""Table"""`, "*", `"ïd"`)
}

// A partitioned parent becomes one unit per leaf, sub-partitions included.
func TestPartitionedParentByLeaf(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `
CREATE TABLE events (id bigint, region text, at date, payload jsonb) PARTITION BY LIST (region);
CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu') PARTITION BY RANGE (at);
CREATE TABLE events_eu_2024 PARTITION OF events_eu FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_eu_2025 PARTITION OF events_eu FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us');
CREATE TABLE events_other PARTITION OF events DEFAULT;`
	mustExec(t, src, schema+`
INSERT INTO events SELECT g, (ARRAY['eu','us','ap'])[1 + g % 3], DATE '2024-01-01' + (g % 700), jsonb_build_object('g', g)
FROM generate_series(1, 3000) g;`)
	mustExec(t, dst, schema+`INSERT INTO events VALUES (-1, 'us', '2024-05-05', '{}'), (-2, 'eu', '2025-02-02', '{}');`)
	o := opts(src, dst, "events")
	o.Order = partition.ByName
	rep := mustCopy(t, o)
	var names []string
	for _, u := range rep.Units {
		names = append(names, u.Unit)
		if !u.Freeze {
			t.Errorf("%s: leaf not copied with FREEZE", u.Unit)
		}
	}
	want := `"public"."events_eu_2024" "public"."events_eu_2025" "public"."events_other" "public"."events_us"`
	if got := strings.Join(names, " "); got != want {
		t.Errorf("units = %s\nwant   %s", got, want)
	}
	assertSame(t, src, dst, "events", "*", "id")
}

// Values of the reg* types are OIDs of objects, which differ between
// servers: binary would carry the source's OIDs and name other objects (or
// none) on the destination while both checksums agree. They go as text,
// schema-qualified whatever each server's search_path, and arrive naming
// the same objects; so do domains and arrays over them.
func TestRegTypesArriveNamingTheSameObjects(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	role := fmt.Sprintf("regrole_%d", time.Now().UnixNano())
	for _, dsn := range []string{dst, src} { // other role OIDs on each server
		mustExec(t, dsn, "CREATE ROLE "+role)
		t.Cleanup(func() { pgtest.Exec(t, dsn, "DROP ROLE "+role) })
	}
	objects := `
CREATE SCHEMA app;
CREATE TABLE app.target (x int);
CREATE TABLE public.target (x int);
CREATE TYPE app.mood AS ENUM ('ok');
CREATE FUNCTION app.f(int) RETURNS int LANGUAGE sql AS 'SELECT $1';
CREATE OPERATOR app.### (FUNCTION = app.f, RIGHTARG = int);
CREATE TEXT SEARCH DICTIONARY app.dict (TEMPLATE = simple);
CREATE TEXT SEARCH CONFIGURATION app.cfg (COPY = simple);
CREATE COLLATION app.coll FROM "C";
CREATE DOMAIN app.tref AS regclass;
CREATE TABLE refs (id int PRIMARY KEY, c regclass, ty regtype, p regproc, pp regprocedure, o regoper, oo regoperator,
  n regnamespace, r regrole, cfg regconfig, dict regdictionary, coll regcollation, cs regclass[], tys regtype[]);
CREATE TABLE drefs (id int PRIMARY KEY, d app.tref, ds app.tref[]);
CREATE TABLE byrel (rel regclass PRIMARY KEY, v int);`
	// The source sees app first on its search_path; the destination does
	// not, and has other OIDs for everything.
	mustExec(t, src, objects+`
INSERT INTO refs VALUES
 (1, 'app.target', 'app.mood', 'app.f', 'app.f(int)', 'app.###', 'app.###(NONE,int)', 'app', '`+role+`', 'app.cfg', 'app.dict', 'app.coll',
  '{app.target,public.target}', '{app.mood,integer}'),
 (2, 'public.target', 'integer[]', 'now', 'now()', '||/', '+(int,int)', 'public', 'pg_monitor', 'simple', 'simple', '"C"', '{}', '{}'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '{NULL}');
INSERT INTO drefs VALUES (1, 'app.target', '{app.target,public.target}'), (2, NULL, NULL);
CREATE TABLE z1 (); CREATE TABLE z2 (); CREATE TABLE z3 ();
INSERT INTO byrel VALUES ('z1', 1), ('z2', 2), ('z3', 3), ('app.target', 4), ('public.target', 5);
ALTER DATABASE `+dbName(t, src)+` SET search_path = app, public;`)
	mustExec(t, dst, `CREATE TABLE z3 (); CREATE TABLE z2 (); CREATE TABLE z1 (); CREATE TABLE filler (x int); CREATE TYPE filler_t AS ENUM ('x'); CREATE SCHEMA filler_s;
CREATE FUNCTION filler_f(int) RETURNS int LANGUAGE sql AS 'SELECT 1';`+objects)

	o := opts(src, dst, "refs", "drefs", "byrel")
	o.Order = partition.ByName
	p, err := copy.MakePlan(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	if u := p.Planned(2); u.Unit != `"public"."refs"` || u.Format != "text" ||
		!strings.Contains(u.FormatWhy, `column "c" has type regclass, whose values are object OIDs`) {
		t.Errorf("refs: format %s (%s), want text because of the regclass column", u.Format, u.FormatWhy)
	}
	mustCopy(t, o)
	for _, table := range []string{"refs", "drefs", "byrel"} {
		a, b := qualifiedRows(t, src, table), qualifiedRows(t, dst, table)
		if a != b || !strings.Contains(a, "app.target") {
			t.Errorf("%s differs:\nsource:\n%s\ndestination:\n%s", table, a, b)
		}
	}
	// A later verify agrees, and sees a reference to another table.
	o.Selection.Tables = []string{"refs"}
	if r := check(t, o); r.Status != copy.StatusOK {
		t.Errorf("verify after copy: %s %v", r.Status, r.Err)
	}
	mustExec(t, dst, "UPDATE refs SET c = 'public.target' WHERE id = 1")
	if r := check(t, o); r.Status != copy.StatusMismatch {
		t.Errorf("verify after pointing the destination at another table: %s %v", r.Status, r.Err)
	}
	// A key of OIDs sorts differently on each server: the diff says it
	// cannot use it rather than list false differences.
	o.Selection.Tables, o.Diff, o.DiffRows = []string{"byrel"}, true, 1
	mustExec(t, dst, "UPDATE byrel SET v = -v")
	if r := check(t, o); r.Status != copy.StatusMismatch || r.Diff == nil ||
		!strings.Contains(r.Diff.Unavailable, `key column "rel" is regclass, which sorts by OID and the servers' OIDs differ`) {
		t.Errorf("diff keyed by regclass: %s %+v", r.Status, r.Diff)
	}
}

// qualifiedRows renders a table's rows, sorted with every object name
// schema-qualified (outside pg_catalog).
func qualifiedRows(t *testing.T, dsn, table string) string {
	t.Helper()
	conn := connect(t, dsn)
	var s string
	err := conn.QueryRow(context.Background(), "SELECT pg_catalog.set_config('search_path', 'pg_catalog', false), "+
		"(SELECT string_agg(row_::text, E'\\n' ORDER BY row_::text) FROM public."+table+" row_)").Scan(nil, &s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Every reg* type and array of one that the server knows is copied as text.
func TestEveryRegTypeIsText(t *testing.T) {
	t.Parallel()
	src, _ := pgtest.Get(t).NewDBs(t)
	rows, err := connect(t, src).Query(context.Background(), `
		SELECT t.oid, pg_catalog.format_type(t.oid, NULL) FROM pg_catalog.pg_type t
		LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
		WHERE t.typnamespace = 'pg_catalog'::regnamespace AND coalesce(e.typname, t.typname) ~ '^reg' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for rows.Next() {
		var c partition.Column
		if err := rows.Scan(&c.TypeOID, &c.Type); err != nil {
			t.Fatal(err)
		}
		c.Name, c.TypMod, c.BuiltIn = "v", -1, true
		n++
		tb := partition.Table{Schema: "public", Name: "t", Kind: "r"}
		_, _, binary, why, err := partition.MatchColumns(tb, tb, []partition.Column{c}, []partition.Column{c}, true)
		if err != nil || binary {
			t.Errorf("%s (%d): binary=%v (%s) %v", c.Type, c.TypeOID, binary, why, err)
		}
	}
	if rows.Err() != nil || n != 22 {
		t.Errorf("found %d reg* types and arrays, want 22: %v", n, rows.Err())
	}
}

// money's text form follows lc_monetary, which every session pins to C,
// whatever each database's default: a destination trigger sees C while the
// rows load, and money values arrive exact in binary and in text. (The
// locales installed where this was written, C, C.utf8 and POSIX, all render
// money alike; with others, unpinned text would differ between servers.)
func TestMoneyUnderPinnedLcMonetary(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	enum := "CREATE TYPE mood AS ENUM ('ok');"
	schema := enum + `CREATE TABLE money_b (id int PRIMARY KEY, m money, ms money[]);
		CREATE TABLE money_t (id int PRIMARY KEY, m money, ms money[], mood mood[]);`
	rows := `(1, '-92233720368547758.08', '{0.01,NULL}'), (2, '92233720368547758.07', '{}'), (3, '1234567.891', NULL), (4, NULL, '{-0.5}')`
	mustExec(t, src, schema+"INSERT INTO money_b VALUES "+rows+"; INSERT INTO money_t (id, m, ms) VALUES "+rows+
		"; ALTER DATABASE "+dbName(t, src)+" SET lc_monetary = 'POSIX'")
	mustExec(t, dst, schema+`ALTER DATABASE `+dbName(t, dst)+` SET lc_monetary = 'C.utf8';
		CREATE TABLE seen (tbl text, setting text);
		CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS
		  $$ BEGIN INSERT INTO seen VALUES (TG_TABLE_NAME, current_setting('lc_monetary')); RETURN NULL; END $$;
		CREATE TRIGGER note AFTER INSERT ON money_b FOR EACH STATEMENT EXECUTE FUNCTION note();
		CREATE TRIGGER note AFTER INSERT ON money_t FOR EACH STATEMENT EXECUTE FUNCTION note();`)
	o := opts(src, dst, "money_b", "money_t")
	o.Order = partition.ByName
	rep := mustCopy(t, o)
	if rep.Units[0].Format != "binary" || rep.Units[1].Format != "text" {
		t.Errorf("formats %s, %s; want binary, text", rep.Units[0].Format, rep.Units[1].Format)
	}
	if got := pgtest.QueryString(t, dst, "SELECT string_agg(tbl || ':' || setting, ' ' ORDER BY tbl) FROM seen"); got != "money_b:C money_t:C" {
		t.Errorf("lc_monetary while loading: %s, want C for both", got)
	}
	for _, table := range []string{"money_b", "money_t"} {
		assertSame(t, src, dst, table, "id, m::numeric, (SELECT array_agg(x::numeric) FROM unnest(ms) x)", "id")
	}
}

// A domain travels in binary as its base type: a domain over a reg* type
// would carry the source's OIDs, which name other objects on the
// destination while both checksums agree; aclitem has no binary form at
// all. Both go as text, as their base types do.
func TestDomainsOverRegTypesAndAclitemAreText(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE DOMAIN tref AS regclass; CREATE DOMAIN acl AS aclitem;
CREATE TABLE dref (id int PRIMARY KEY, r tref);
CREATE TABLE acls (id int PRIMARY KEY, a aclitem, as_ aclitem[], d acl);`
	// The tables a and b get each other's OIDs on the destination.
	mustExec(t, src, "CREATE TABLE a (); CREATE TABLE b ();"+schema+`
INSERT INTO dref VALUES (1, 'a'), (2, 'b'), (3, NULL);
INSERT INTO acls VALUES (1, 'postgres=r/postgres', '{postgres=arw/postgres,=r/postgres}', '=w/postgres'), (2, NULL, NULL, NULL);`)
	mustExec(t, dst, "CREATE TABLE b (); CREATE TABLE a ();"+schema)
	o := opts(src, dst, "dref", "acls")
	o.Order = partition.ByName
	rep := mustCopy(t, o)
	for _, u := range rep.Units {
		if u.Format != "text" {
			t.Errorf("%s: format %s, want text", u.Unit, u.Format)
		}
	}
	assertSame(t, src, dst, "dref", "id, r::text", "id")
	assertSame(t, src, dst, "acls", "id, a::text, as_::text, d::text", "id")
}

// Settings that change how values are parsed or printed are pinned on
// both sides whatever each database's defaults: under xmloption DOCUMENT
// the destination would refuse an XML content fragment (in binary too),
// under array_nulls off it would load an array's NULL as the string
// 'NULL', and under quote_all_identifiers the destination's type names and
// object names would print quoted, unlike the source's.
func TestParseSettingsPinned(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE TYPE mood AS ENUM ('ok');
CREATE TABLE xb (id int PRIMARY KEY, x xml);
CREATE TABLE at (id int PRIMARY KEY, a text[], m mood[], r regclass);`
	mustExec(t, src, schema+`
INSERT INTO xb VALUES (1, 'text then <a/> and <b>more</b>'), (2, '<doc/>');
INSERT INTO at VALUES (1, '{NULL,x,"NULL"}', '{ok,NULL}', 'at');`)
	mustExec(t, dst, schema+"ALTER DATABASE "+dbName(t, dst)+" SET xmloption = document; ALTER DATABASE "+dbName(t, dst)+
		" SET array_nulls = off; ALTER DATABASE "+dbName(t, dst)+" SET quote_all_identifiers = on;")
	o := opts(src, dst, "xb", "at")
	o.Order = partition.ByName
	rep := mustCopy(t, o)
	if f := rep.Units[0].Format + " " + rep.Units[1].Format; f != "text binary" {
		t.Errorf("formats %s; want text, binary", f)
	}
	assertSame(t, src, dst, "xb", "id, x::text", "id")
	assertSame(t, src, dst, "at", "id, a, a[1] IS NULL, m::text, (SELECT relname FROM pg_catalog.pg_class WHERE oid = r)", "id")
}
