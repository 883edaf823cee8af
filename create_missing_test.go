package main

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lockstep/internal/pgtest"
)

// createSchema is a source schema with what --create-missing must bring
// along: an enum, a serial id, a check constraint, an index, a partitioned
// table with three partitions.
const createSchema = `
	CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
	CREATE TABLE plain (id serial PRIMARY KEY, m mood NOT NULL, qty int CONSTRAINT plain_qty_positive CHECK (qty > 0), note text);
	CREATE INDEX plain_note ON plain (note);
	CREATE TABLE events (id bigint, at date NOT NULL, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
	CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
	CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
	CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
	INSERT INTO plain (m, qty, note) SELECT (ARRAY['sad','ok','happy']::mood[])[1 + g % 3], g, 'n' || g FROM generate_series(1, 500) g;
	INSERT INTO events SELECT g, DATE '2024-01-01' + (g % 1000), 'v' || g FROM generate_series(1, 3000) g;`

// tableSum is a table's row count and a hash of its rows in a fixed order.
func tableSum(t *testing.T, dsn, table string) string {
	t.Helper()
	return pgtest.QueryString(t, dsn, `SELECT count(*)::text || ' ' || coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM `+table+` x`)
}

// userObjects lists the destination's tables, sequences, types and schemas
// outside the system schemas and the run ledger's, to show nothing was
// created.
func userObjects(t *testing.T, dsn string) string {
	t.Helper()
	return pgtest.QueryString(t, dsn, `
		SELECT coalesce(string_agg(x, ' ' ORDER BY x), '') FROM (
			SELECT c.relname::text AS x FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.relkind IN ('r', 'p', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'lockstep') AND n.nspname !~ '^pg_toast'
			UNION ALL
			SELECT 'type:' || t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
			WHERE t.typtype IN ('e', 'd', 'c') AND t.typrelid = 0 AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'lockstep')
			UNION ALL
			SELECT 'schema:' || nspname FROM pg_namespace WHERE nspname !~ '^(pg_|information_schema$|public$|lockstep$)') s`)
}

func TestCreateMissing(t *testing.T) {
	t.Parallel()
	env := pgtest.Get(t)
	src, dst := env.NewDBs(t)
	sqlExec(t, src, createSchema)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Without the flag: the missing tables are named, exit 2, nothing made.
	code, out, errOut := lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--table", "plain", "--table", "events")
	if code != 2 || !strings.Contains(errOut, "destination: table plain does not exist") {
		t.Fatalf("without --create-missing: exit %d, want 2 naming plain\n%s%s", code, out, errOut)
	}
	code, out, errOut = lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--tables-matching", `^public\.`)
	if code != 2 || !strings.Contains(errOut, "4 matching table(s) missing") {
		t.Fatalf("without --create-missing: exit %d, want 2 listing 4 tables\n%s%s", code, out, errOut)
	}
	for _, n := range []string{"plain", "events_2024", "events_2025", "events_2026"} {
		if !strings.Contains(errOut, n) {
			t.Errorf("the error does not name %s: %s", n, errOut)
		}
	}
	if got := userObjects(t, dst); got != "" {
		t.Fatalf("destination changed: %s", got)
	}

	// A plan lists what it would create, and creates nothing.
	code, out, errOut = lockstep(t, ctx, "plan", "--source", src, "--dest", dst, "--tables-matching", `^public\.`, "--create-missing")
	if code != 0 {
		t.Fatalf("plan --create-missing: exit %d\n%s%s", code, out, errOut)
	}
	for _, w := range []string{"would create", `"public"."plain"`, `"public"."events"`, `"public"."events_2026"`, `"public"."mood" (enum)`} {
		if !strings.Contains(out, w) {
			t.Errorf("plan output lacks %q:\n%s", w, out)
		}
	}
	code, out, errOut = lockstep(t, ctx, "plan", "--source", src, "--dest", dst, "--tables-matching", `^public\.`, "--create-missing", "--format", "json")
	var plan struct {
		Create struct {
			Done   bool     `json:"created"`
			Tables []string `json:"tables"`
		} `json:"create_missing"`
		Units []any `json:"units"`
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil || code != 0 || plan.Create.Done || len(plan.Create.Tables) != 5 || len(plan.Units) != 0 {
		t.Errorf("plan --format json: exit %d, %v, %+v\n%s%s", code, err, plan, out, errOut)
	}
	code, out, errOut = lockstep(t, ctx, "copy", "--dry-run", "--source", src, "--dest", dst, "--table", "plain", "--create-missing")
	if code != 0 || !strings.Contains(out, "would create") {
		t.Fatalf("copy --dry-run --create-missing: exit %d\n%s%s", code, out, errOut)
	}
	if got := userObjects(t, dst); got != "" {
		t.Fatalf("a plan created %s", got)
	}

	// The copy creates them, with their type, sequence, constraint and
	// index, copies them, and says so in its output and report.
	report := filepath.Join(t.TempDir(), "run.json")
	code, out, errOut = lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--tables-matching", `^public\.`, "--create-missing",
		"--report", report, "--quiet")
	if code != 0 {
		t.Fatalf("copy --create-missing: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "created on the destination") || !strings.Contains(out, `"public"."events_2025"`) {
		t.Errorf("the output does not say what was created:\n%s", out)
	}
	for _, table := range []string{"plain", "events", "events_2024", "events_2025", "events_2026"} {
		if s, d := tableSum(t, src, table), tableSum(t, dst, table); s != d {
			t.Errorf("%s: source %s, destination %s", table, s, d)
		}
	}
	if n := pgtest.QueryString(t, dst, `SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass`); n != "3" {
		t.Errorf("events has %s partitions on the destination, want 3", n)
	}
	checks := map[string]string{
		"the enum":             `SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = 'mood'::regtype`,
		"the check constraint": `SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'plain_qty_positive'`,
		"the index":            `SELECT indexdef FROM pg_indexes WHERE indexname = 'plain_note'`,
		"the serial default":   `SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'plain'::regclass`,
		"the sequence owner":   `SELECT pg_get_serial_sequence('plain', 'id')`,
		"the sequence's value": `SELECT last_value FROM plain_id_seq`,
	}
	for what, q := range checks {
		if s, d := pgtest.QueryString(t, src, q), pgtest.QueryString(t, dst, q); s != d || d == "" {
			t.Errorf("%s: source %q, destination %q", what, s, d)
		}
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Created struct {
			Done   bool     `json:"created"`
			Tables []string `json:"tables"`
			Types  []string `json:"types"`
		} `json:"created_on_destination"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Created.Done || len(rep.Created.Tables) != 5 || len(rep.Created.Types) != 1 {
		t.Errorf("report: created %+v, want 5 tables and 1 type", rep.Created)
	}

	// Once they exist, --create-missing has nothing to do.
	code, out, errOut = lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--tables-matching", `^public\.`, "--create-missing", "--quiet")
	if code != 0 || strings.Contains(out, "created on the destination") {
		t.Fatalf("second copy: exit %d\n%s%s", code, out, errOut)
	}
}

// Foreign keys: to another selected table, to an existing destination
// table (locked meanwhile), and to a table that is neither (refused before
// anything is created).
func TestCreateMissingForeignKeys(t *testing.T) {
	t.Parallel()
	env := pgtest.Get(t)
	src, dst := env.NewDBs(t)
	sqlExec(t, src, `
		CREATE TABLE customers (id int PRIMARY KEY, name text);
		CREATE TABLE orders (id int PRIMARY KEY, customer int CONSTRAINT orders_customer_fk REFERENCES customers, total numeric);
		INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 50) g;
		INSERT INTO orders SELECT g, 1 + g % 50, g * 1.5 FROM generate_series(1, 400) g;`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// customers is neither selected nor on the destination.
	code, out, errOut := lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--table", "orders", "--create-missing")
	if code != 2 {
		t.Fatalf("exit %d, want 2\n%s%s", code, out, errOut)
	}
	for _, w := range []string{"destination", "orders", "orders_customer_fk", `"public"."customers"`, "select"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr %q lacks %q", errOut, w)
		}
	}
	if got := userObjects(t, dst); got != "" {
		t.Fatalf("destination changed: %s", got)
	}

	// Both selected: both created, with the constraint.
	code, out, errOut = lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--table", "orders", "--table", "customers", "--create-missing")
	if got := userObjects(t, dst); got != "customers orders" {
		t.Fatalf("destination has %q after exit %d\n%s%s", got, code, out, errOut)
	}
	fk := `SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'orders_customer_fk'`
	if s, d := pgtest.QueryString(t, src, fk), pgtest.QueryString(t, dst, fk); s != d {
		t.Errorf("foreign key: source %q, destination %q", s, d)
	}
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, table := range []string{"customers", "orders"} {
		if s, d := tableSum(t, src, table), tableSum(t, dst, table); s != d {
			t.Errorf("%s: source %s, destination %s", table, s, d)
		}
	}
}

func TestCreateMissingReferencesExisting(t *testing.T) {
	t.Parallel()
	env := pgtest.Get(t)
	src, dst := env.NewDBs(t)
	sqlExec(t, src, `
		CREATE TABLE customers (id int PRIMARY KEY, name text);
		CREATE TABLE orders (id int PRIMARY KEY, customer int CONSTRAINT orders_customer_fk REFERENCES customers, total numeric);
		INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 50) g;
		INSERT INTO orders SELECT g, 1 + g % 50, g * 1.5 FROM generate_series(1, 400) g;`)
	sqlExec(t, dst, `CREATE TABLE customers (id int PRIMARY KEY, name text);
		INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 50) g;`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A session holding a lock that conflicts with SHARE ROW EXCLUSIVE on
	// customers: creation gives up after --lock-timeout, naming it, and
	// creates nothing.
	holder := pgtest.Connect(t, dst)
	if _, err := holder.Exec(ctx, "BEGIN; LOCK TABLE customers IN ROW EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--table", "orders", "--create-missing", "--lock-timeout", "300ms")
	if code != 2 || !strings.Contains(errOut, "SHARE ROW EXCLUSIVE lock on \"public\".\"customers\" not granted") || !strings.Contains(errOut, "nothing was created") {
		t.Fatalf("exit %d, want 2 naming the lock\n%s%s", code, out, errOut)
	}
	if got := userObjects(t, dst); got != "customers" {
		t.Fatalf("destination has %q", got)
	}
	if _, err := holder.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}

	code, out, errOut = lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--table", "orders", "--create-missing")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, `foreign keys reference existing "public"."customers"`) {
		t.Errorf("output does not name the referenced table:\n%s", out)
	}
	if s, d := tableSum(t, src, "orders"), tableSum(t, dst, "orders"); s != d {
		t.Errorf("orders: source %s, destination %s", s, d)
	}
	if n := pgtest.QueryString(t, dst, `SELECT count(*) FROM pg_constraint WHERE conname = 'orders_customer_fk'`); n != "1" {
		t.Errorf("%s foreign keys on the destination", n)
	}
}

// Checks that fail before the creation leave the destination untouched:
// another selected table that cannot be copied, a partition whose table
// exists on the destination, a type from an extension.
func TestCreateMissingRefusedBeforeCreating(t *testing.T) {
	t.Parallel()
	env := pgtest.Get(t)
	src, dst := env.NewDBs(t)
	sqlExec(t, src, createSchema+`
		CREATE TABLE badtype (id int, note text);
		CREATE SCHEMA app;
		CREATE TABLE app.legacy (id int);
		CREATE TABLE app.legacy_child (extra text) INHERITS (app.legacy);`)
	sqlExec(t, dst, `CREATE TABLE badtype (id int, note int);
		CREATE TABLE events (id bigint, at date NOT NULL, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
		CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');`)
	before := userObjects(t, dst)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"another table mismatches", []string{"--table", "plain", "--table", "badtype"}, []string{"destination", "badtype", `column "note"`}},
		{"partition of an existing table", []string{"--tables-matching", `^public\.events`},
			[]string{"destination", `"public"."events"`, "lacks partition(s)", `"public"."events_2026"`, "never alters an existing table"}},
		{"inheritance child", []string{"--table", "app.legacy_child"}, []string{"source", "legacy_child", "inheritance"}},
		{"type of an extension", []string{"--table", "tagged"}, []string{"destination", `type "public"."citext"`, `extension "citext"`, `CREATE EXTENSION "citext"`}},
	}
	conn := pgtest.Connect(t, src)
	_, citextErr := conn.Exec(context.Background(), "CREATE EXTENSION citext; CREATE TABLE tagged (id int, tag citext)")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "type of an extension" && citextErr != nil {
				t.Skipf("the source server lacks the citext extension: %v", citextErr)
			}
			code, out, errOut := lockstep(t, ctx, append([]string{"copy", "--source", src, "--dest", dst, "--create-missing"}, c.args...)...)
			if code != 2 {
				t.Fatalf("exit %d, want 2\n%s%s", code, out, errOut)
			}
			for _, w := range c.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
			if got := userObjects(t, dst); got != before {
				t.Errorf("destination changed: %q, was %q", got, before)
			}
		})
	}
}

// writeScript writes an executable shell script.
func writeScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// A missing or too old pg_dump is refused naming what to install, before
// anything is created; pg_dump gets the password in its environment only.
func TestCreateMissingPgDump(t *testing.T) {
	env := pgtest.Get(t)
	src, dst := env.NewDBs(t)
	sqlExec(t, src, createSchema)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	old := filepath.Join(dir, "old", "pg_dump")
	os.Mkdir(filepath.Dir(old), 0o755)
	writeScript(t, old, "echo 'pg_dump (PostgreSQL) 11.0'\n")

	args := []string{"copy", "--source", src, "--dest", dst, "--table", "plain", "--create-missing"}
	cases := []struct {
		name  string
		path  string // PATH to use, "" to keep
		extra []string
		want  []string
	}{
		{"too old on PATH", filepath.Dir(old), nil, []string{"pg_dump 15 or later", "is pg_dump 11.0", "postgresql-client-15"}},
		{"too old by --pg-dump", "", []string{"--pg-dump", old}, []string{"pg_dump 15 or later", old, "postgresql-client-15"}},
		{"missing", "", []string{"--pg-dump", filepath.Join(dir, "none", "pg_dump")}, []string{"was not found", "postgresql-client-15", "--pg-dump"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.path != "" {
				t.Setenv("PATH", c.path+string(os.PathListSeparator)+os.Getenv("PATH"))
			}
			for _, cmd := range []string{"copy", "plan"} {
				a := append(append([]string{cmd}, args[1:]...), c.extra...)
				code, out, errOut := lockstep(t, ctx, a...)
				if code != 2 {
					t.Fatalf("%s: exit %d, want 2\n%s%s", cmd, code, out, errOut)
				}
				for _, w := range c.want {
					if !strings.Contains(errOut, w) {
						t.Errorf("%s: stderr %q lacks %q", cmd, errOut, w)
					}
				}
			}
			if got := userObjects(t, dst); got != "" {
				t.Errorf("destination changed: %q", got)
			}
		})
	}

	// A pg_dump that records what it was given, then fails.
	rec := filepath.Join(dir, "rec", "pg_dump")
	os.Mkdir(filepath.Dir(rec), 0o755)
	writeScript(t, rec, `if [ "$1" = --version ]; then echo 'pg_dump (PostgreSQL) 15.18'; exit 0; fi
printf '%s\n' "$@" > "$(dirname "$0")/args"
printf '%s' "$PGPASSWORD" > "$(dirname "$0")/password"
echo 'pg_dump: error: refused by the test' >&2
exit 1
`)
	t.Setenv("PGPASSWORD", "")
	code, out, errOut := lockstep(t, ctx, append(args[:len(args):len(args)], "--pg-dump", rec)...)
	if code != 2 || !strings.Contains(errOut, "source: pg_dump failed") || !strings.Contains(errOut, "refused by the test") {
		t.Fatalf("exit %d, want 2 with pg_dump's error\n%s%s", code, out, errOut)
	}
	got, err := os.ReadFile(filepath.Join(filepath.Dir(rec), "args"))
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := os.ReadFile(filepath.Join(filepath.Dir(rec), "password"))
	if strings.Contains(string(got), env.Source.Password()) {
		t.Errorf("the password is on pg_dump's command line: %s", got)
	}
	if string(pw) != env.Source.Password() {
		t.Errorf("PGPASSWORD in pg_dump's environment is %q, want the source's password", pw)
	}
	for _, w := range []string{"--schema-only", "--encoding=UTF8", "--no-owner", "--no-privileges", "--snapshot=", `--schema="public"`, "--exclude-table=*.*", "--lock-wait-timeout=5000", "--dbname=postgres://"} {
		if !strings.Contains(string(got), w) {
			t.Errorf("pg_dump's arguments lack %q:\n%s", w, got)
		}
	}
	if got := userObjects(t, dst); got != "" {
		t.Errorf("destination changed: %q", got)
	}
}

// A source database in another encoding than UTF8: the definitions reach
// the destination with their non-ASCII names and literals intact. pg_dump
// writes in the database's encoding unless told otherwise, while lockstep's
// connections speak UTF8, so a LATIN1 script is either refused (é is not
// UTF-8) or, where its bytes happen to form UTF-8, silently read as other
// characters.
func TestCreateMissingSourceEncoding(t *testing.T) {
	t.Parallel()
	env := pgtest.Get(t)
	src, err := env.Source.NewDBWith(t, "ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
	if err != nil {
		t.Fatal(err)
	}
	dst := env.Dest.NewDB(t)
	utf8 := func(dsn string) string {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("client_encoding", "UTF8")
		u.RawQuery = q.Encode()
		return u.String()
	}
	// 'Ã©' is stored in LATIN1 as the bytes C3 A9, which read as UTF-8 are 'é'.
	sqlExec(t, utf8(src), `
		CREATE TABLE "café" (id int PRIMARY KEY, "état" text DEFAULT 'née' CONSTRAINT "déjà_vu" CHECK ("état" <> 'déjà'));
		COMMENT ON TABLE "café" IS 'señal';
		INSERT INTO "café" SELECT g, 'é' || g FROM generate_series(1, 20) g;
		CREATE TYPE humeur AS ENUM ('Ã©', 'ok');
		CREATE TABLE moods (id int PRIMARY KEY, h humeur);
		INSERT INTO moods SELECT g, 'ok' FROM generate_series(1, 20) g;`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	checks := map[string][]string{
		"moods": {`SELECT string_agg(enumlabel, ', ' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = 'humeur'::regtype`},
		`"café"`: {
			`SELECT string_agg(attname || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), ''), ', ' ORDER BY attname)
			 FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
			 WHERE a.attrelid = '"café"'::regclass AND a.attnum > 0`,
			`SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), ', ' ORDER BY conname) FROM pg_constraint WHERE conrelid = '"café"'::regclass`,
			`SELECT obj_description('"café"'::regclass, 'pg_class')`,
		},
	}
	for _, table := range []string{"moods", `"café"`} {
		code, out, errOut := lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--table", table, "--create-missing")
		if code != 0 {
			t.Fatalf("copy --create-missing of %s: exit %d\n%s%s", table, code, out, errOut)
		}
		for _, q := range checks[table] {
			if s, d := pgtest.QueryString(t, utf8(src), q), pgtest.QueryString(t, utf8(dst), q); s != d || d == "" {
				t.Errorf("%s: source %q, destination %q", table, s, d)
			}
		}
		// md5 of the UTF-8 bytes: each server hashes its own encoding's otherwise.
		sum := `SELECT count(*)::text || ' ' || md5(convert_to(string_agg(x::text, ',' ORDER BY x::text COLLATE "C"), 'UTF8')) FROM ` + table + ` x`
		if s, d := pgtest.QueryString(t, utf8(src), sum), pgtest.QueryString(t, utf8(dst), sum); s != d {
			t.Errorf("%s: source %s, destination %s", table, s, d)
		}
	}
}

// A column of a user-defined range's multirange type brings the range
// along (the multirange comes with it).
func TestCreateMissingMultirange(t *testing.T) {
	t.Parallel()
	env := pgtest.Get(t)
	src, dst := env.NewDBs(t)
	sqlExec(t, src, `
		CREATE TYPE floatrange AS RANGE (subtype = float8, subtype_diff = float8mi);
		CREATE TABLE spans (id int PRIMARY KEY, r floatmultirange);
		INSERT INTO spans SELECT g, floatmultirange(floatrange(g, g + 0.5), floatrange(g + 1, g + 2)) FROM generate_series(1, 50) g;`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, out, errOut := lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--table", "spans", "--create-missing")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, `"public"."floatrange" (range)`) {
		t.Errorf("the output does not name the range type:\n%s", out)
	}
	if s, d := tableSum(t, src, "spans"), tableSum(t, dst, "spans"); s != d {
		t.Errorf("spans: source %s, destination %s", s, d)
	}
}

// wrapDumpTools writes into dir a pg_dump and a pg_restore that run the
// real ones (those beside pg_dump on PATH), running the shell lines
// dumpFirst and restoreFirst before each script they write to stdout
// (--version, --list and an archive written with --file are no scripts).
// It returns the wrapper pg_dump's path.
func wrapDumpTools(t *testing.T, dir, dumpFirst, restoreFirst string) string {
	t.Helper()
	realDump, err := exec.LookPath("pg_dump")
	if err != nil {
		t.Fatal(err)
	}
	for name, first := range map[string]string{"pg_dump": dumpFirst, "pg_restore": restoreFirst} {
		real := filepath.Join(filepath.Dir(realDump), name)
		writeScript(t, filepath.Join(dir, name), `case "$*" in *--version*|*--list*|*--file=/*) exec '`+real+`' "$@";; esac
`+first+`
exec '`+real+`' "$@"
`)
	}
	return filepath.Join(dir, "pg_dump")
}

// pg_dump 17 and later open every script with SET transaction_timeout = 0,
// a setting servers before 17 do not know, even when they dump an older
// server; the definitions are run without it on such a destination. The
// pg_dump and pg_restore here are the real ones, behind wrappers that add
// the line to every script they write.
func TestCreateMissingScriptOfANewerPgDump(t *testing.T) {
	src, dst := pgtest.Get(t).NewDBs(t)
	sqlExec(t, src, createSchema)
	const line = "echo 'SET transaction_timeout = 0;'"
	pgDump := wrapDumpTools(t, t.TempDir(), line, line)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, out, errOut := lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--table", "plain", "--create-missing", "--pg-dump", pgDump)
	if code != 0 {
		t.Fatalf("exit %d, want 0\n%s%s", code, out, errOut)
	}
	if got, want := tableSum(t, dst, "plain"), tableSum(t, src, "plain"); got != want {
		t.Errorf("plain: destination %s, source %s", got, want)
	}
}

// Two processes started at once with --create-missing (workers sharing a
// selection): one creates the tables, the other finds them created when
// its turn comes, creates nothing and copies. It used to fail with exit 2
// ("already exists"). The slow one's pg_dump waits for the other's copy to
// finish before it dumps, so the two creations cannot be in either order.
func TestCreateMissingByTwoProcessesAtOnce(t *testing.T) {
	src, dst := pgtest.Get(t).NewDBs(t)
	sqlExec(t, src, createSchema)
	dir := t.TempDir()
	gate, waiting := filepath.Join(dir, "go"), filepath.Join(dir, "waiting")
	// The table dump says it is waiting, and waits for the gate.
	pgDump := wrapDumpTools(t, dir, "touch '"+waiting+"'\nwhile [ ! -e '"+gate+"' ]; do sleep 0.05; done", "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"copy", "--source", src, "--dest", dst, "--table", "plain", "--create-missing"}
	type result struct {
		code     int
		out, err string
	}
	slow := make(chan result, 1)
	go func() {
		code, out, errOut := lockstep(t, ctx, append(args, "--pg-dump", pgDump)...)
		slow <- result{code, out, errOut}
	}()
	// Once the slow one waits in pg_dump (it found the tables missing),
	// the fast one creates them and copies, then lets it go on.
	for _, err := os.Stat(waiting); err != nil; _, err = os.Stat(waiting) {
		if ctx.Err() != nil {
			t.Fatal("the slow process never reached pg_dump")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, out, errOut := lockstep(t, ctx, args...); code != 0 {
		t.Fatalf("the first process: exit %d\n%s%s", code, out, errOut)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := <-slow
	if r.code != 0 || strings.Contains(r.out, "created on the destination") {
		t.Fatalf("the second process: exit %d, want 0 without creating anything\n%s%s", r.code, r.out, r.err)
	}
	if got, want := tableSum(t, dst, "plain"), tableSum(t, src, "plain"); got != want {
		t.Errorf("plain: destination %s, source %s", got, want)
	}
}

// The existing tables that created foreign keys reference are locked
// together within --lock-timeout: a first one granted after a wait is not
// held (its writers queued behind it) while the next waits a timeout of
// its own.
func TestCreateMissingLocksReferencedTablesWithinOneTimeout(t *testing.T) {
	t.Parallel()
	env := pgtest.Get(t)
	src, dst := env.NewDBs(t)
	referenced := `CREATE TABLE customers (id int PRIMARY KEY); CREATE TABLE products (id int PRIMARY KEY);
		INSERT INTO customers VALUES (1); INSERT INTO products VALUES (1);`
	sqlExec(t, src, referenced+`CREATE TABLE orders (id int PRIMARY KEY, customer int REFERENCES customers, product int REFERENCES products);
		INSERT INTO orders VALUES (1, 1, 1);`)
	sqlExec(t, dst, referenced)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	customers, products := pgtest.Connect(t, dst), pgtest.Connect(t, dst)
	if _, err := customers.Exec(ctx, "BEGIN; LOCK TABLE customers IN ROW EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	if _, err := products.Exec(ctx, "BEGIN; LOCK TABLE products IN ROW EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	type result struct {
		code        int
		out, errOut string
	}
	done := make(chan result, 1)
	began := time.Now()
	go func() {
		code, out, errOut := lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--table", "orders", "--create-missing", "--lock-timeout", "2s")
		done <- result{code, out, errOut}
	}()
	// Planning comes first: release customers once lockstep waits for it.
	waitLocks := func() bool {
		return pgtest.QueryString(t, dst, `SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
			WHERE c.relname = 'customers' AND l.mode = 'ShareRowExclusiveLock' AND NOT l.granted`) == "1"
	}
	for !waitLocks() {
		if time.Since(began) > time.Minute {
			t.Fatal("lockstep never queued for customers")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(1200 * time.Millisecond)
	if _, err := customers.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	writerStart := time.Now()
	if _, err := pgtest.Connect(t, dst).Exec(ctx, "INSERT INTO customers VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	writer := time.Since(writerStart)
	r := <-done
	if r.code != 2 || !strings.Contains(r.errOut, "not granted") || !strings.Contains(r.errOut, "nothing was created") {
		t.Fatalf("exit %d, want 2 naming the lock\n%s%s", r.code, r.out, r.errOut)
	}
	t.Logf("a writer of customers waited %s", writer)
	if writer > 1300*time.Millisecond {
		t.Errorf("a writer of customers waited %s behind --create-missing's lock, with --lock-timeout 2s of which 1.3s had passed", writer)
	}
	if got := userObjects(t, dst); got != "customers products" {
		t.Fatalf("destination has %q", got)
	}
}
