package main

import (
	"context"
	"strings"
	"testing"

	"lockstep/internal/pgtest"
)

const seqSchema = `CREATE TABLE orders (id bigserial PRIMARY KEY, note text);
	CREATE SEQUENCE down_seq INCREMENT -1 MINVALUE -1000000 MAXVALUE -1 START -1;
	CREATE TABLE down (id int DEFAULT nextval('down_seq') PRIMARY KEY, note text);
	CREATE TABLE items (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text);`

// seqOf is a sequence's last_value and is_called.
func seqOf(t *testing.T, dsn, seq string) string {
	t.Helper()
	return pgtest.QueryString(t, dsn, "SELECT last_value || ' ' || is_called FROM "+seq)
}

// verify reports a destination sequence that would hand out a value its
// column already holds (ascending and descending) as a difference, exit 4,
// naming the sequence, its next value and the column's edge; after a copy
// it passes; --sequences none skips the check.
func TestVerifyReportsSequenceBehind(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	rows := `INSERT INTO orders (id, note) SELECT g, 'n' || g FROM generate_series(1, 100) g;
		INSERT INTO down (id, note) SELECT -g, 'n' || g FROM generate_series(1, 40) g;`
	// The same rows on both sides, but only the source's sequences moved
	// (the destination was given explicit ids, as dual writes give it).
	pgtest.Exec(t, src, seqSchema+rows+`SELECT setval('orders_id_seq', 100); SELECT setval('down_seq', -40);`)
	pgtest.Exec(t, dst, seqSchema+rows)
	ctx := context.Background()
	base := []string{"--source", src, "--dest", dst, "--table", "orders", "--table", "down", "--progress-interval", "0"}

	code, out, errOut := lockstep(t, ctx, append([]string{"verify"}, base...)...)
	t.Logf("verify:\n%s", out)
	if code != exitMismatch {
		t.Fatalf("verify with sequences behind: exit %d, want 4\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{
		`mismatch "public"."orders"`, `sequence "public"."orders_id_seq" would hand out 1 next, but column "id" already holds 100 as its largest value`,
		`mismatch "public"."down"`, `sequence "public"."down_seq" would hand out -1 next, but column "id" already holds -40 as its smallest value`,
		"lockstep sync-sequences",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	if code, out, errOut := lockstep(t, ctx, append([]string{"verify", "--sequences", "none"}, base...)...); code != exitOK {
		t.Fatalf("verify --sequences none: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut := lockstep(t, ctx, append([]string{"copy"}, base...)...); code != exitOK || !strings.Contains(out, "sequences=1") {
		t.Fatalf("copy: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut := lockstep(t, ctx, append([]string{"verify"}, base...)...); code != exitOK {
		t.Fatalf("verify after the copy: exit %d\n%s\n%s", code, out, errOut)
	}
}

// sync-sequences, at switch-over: the source's sequences moved on after the
// copy while the destination received explicit ids; it moves each
// destination sequence to the source's value (plus a margin), never
// backwards, and --dry-run changes nothing.
func TestSyncSequences(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, seqSchema+`INSERT INTO orders (note) SELECT 'n' FROM generate_series(1, 50) g;
		INSERT INTO down (note) SELECT 'n' FROM generate_series(1, 50) g;
		INSERT INTO items (note) SELECT 'n' FROM generate_series(1, 50) g;`)
	pgtest.Exec(t, dst, seqSchema)
	ctx := context.Background()
	sel := []string{"--source", src, "--dest", dst, "--tables-matching", `^public\.(orders|down|items)$`}
	if code, out, errOut := lockstep(t, ctx, append(append([]string{"copy"}, sel...), "--progress-interval", "0")...); code != exitOK {
		t.Fatalf("copy: exit %d\n%s\n%s", code, out, errOut)
	}
	// Dual writes: new rows on the source, mirrored with their ids; and the
	// destination's items sequence moved by a writer of its own.
	for _, sql := range []string{
		`INSERT INTO orders (note) SELECT 'late' FROM generate_series(1, 30) g`,
		`INSERT INTO down (note) SELECT 'late' FROM generate_series(1, 30) g`,
		`INSERT INTO items (note) SELECT 'late' FROM generate_series(1, 30) g`,
	} {
		pgtest.Exec(t, src, sql)
	}
	pgtest.Exec(t, dst, `INSERT INTO orders SELECT g, 'late' FROM generate_series(51, 80) g;
		INSERT INTO down SELECT -g, 'late' FROM generate_series(51, 80) g;
		SELECT setval('items_id_seq', 1000);`)
	before := seqOf(t, dst, "orders_id_seq") + "|" + seqOf(t, dst, "down_seq") + "|" + seqOf(t, dst, "items_id_seq")
	if before != "50 true|-50 true|1000 true" {
		t.Fatalf("destination sequences before: %s", before)
	}

	code, out, errOut := lockstep(t, ctx, append([]string{"sync-sequences", "--dry-run"}, sel...)...)
	if code != exitOK || !strings.Contains(strings.Join(strings.Fields(out), " "), `"public"."orders_id_seq" 80 50 80 would be set`) {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, errOut)
	}
	if got := seqOf(t, dst, "orders_id_seq") + "|" + seqOf(t, dst, "down_seq") + "|" + seqOf(t, dst, "items_id_seq"); got != before {
		t.Fatalf("the dry run changed the destination: %s, was %s", got, before)
	}

	code, out, errOut = lockstep(t, ctx, append([]string{"sync-sequences"}, sel...)...)
	t.Logf("sync-sequences:\n%s", out)
	if code != exitOK {
		t.Fatalf("sync-sequences: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"SOURCE", "DESTINATION BEFORE", "DESTINATION AFTER",
		`"public"."down_seq"  -80     -50                 -80                set`,
		`"public"."items_id_seq"  80      1000                1000               already as far along: left alone`,
		"2 sequence(s) set, 1 already as far along"} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if got := seqOf(t, dst, "orders_id_seq") + "|" + seqOf(t, dst, "down_seq") + "|" + seqOf(t, dst, "items_id_seq"); got != "80 true|-80 true|1000 true" {
		t.Fatalf("after sync-sequences: %s", got)
	}
	// The application moves: new rows take their defaults without a
	// duplicate key.
	pgtest.Exec(t, dst, `INSERT INTO orders (note) VALUES ('moved'); INSERT INTO down (note) VALUES ('moved'); INSERT INTO items (note) VALUES ('moved');`)

	// With a margin, in each sequence's direction.
	pgtest.Exec(t, src, `INSERT INTO orders (note) VALUES ('later'); INSERT INTO down (note) VALUES ('later');`)
	if code, out, errOut := lockstep(t, ctx, append([]string{"sync-sequences", "--margin", "1000"}, sel...)...); code != exitOK ||
		!strings.Contains(out, "with a margin of 1000") {
		t.Fatalf("sync-sequences --margin: exit %d\n%s\n%s", code, out, errOut)
	}
	if got := seqOf(t, dst, "orders_id_seq") + "|" + seqOf(t, dst, "down_seq") + "|" + seqOf(t, dst, "items_id_seq"); got != "1081 true|-1081 true|1080 true" {
		t.Fatalf("after sync-sequences --margin 1000: %s", got)
	}
}

// sync-sequences refuses bad input with exit 2 and changes nothing: a
// sequence the destination lacks is named with its side.
func TestSyncSequencesBadInput(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, `CREATE TABLE a (id serial PRIMARY KEY); CREATE TABLE b (id serial PRIMARY KEY);
		INSERT INTO a DEFAULT VALUES; INSERT INTO b DEFAULT VALUES;`)
	pgtest.Exec(t, dst, `CREATE TABLE a (id serial PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY);`)
	ctx := context.Background()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--table", "a", "--table", "b"}, `destination: "public"."b_id_seq": sequence does not exist`},
		{[]string{"--table", "nope"}, "source: table nope does not exist"},
		{[]string{"--table", "a", "--margin", "-5"}, "--margin -5: must not be negative"},
		{[]string{}, "no table selected"},
	} {
		code, out, errOut := lockstep(t, ctx, append([]string{"sync-sequences", "--source", src, "--dest", dst}, c.args...)...)
		if code != exitBadInput || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v: exit %d, want 2 and one line with %q\n%s\n%s", c.args, code, c.want, out, errOut)
		}
	}
	if got := seqOf(t, dst, "a_id_seq"); got != "1 false" {
		t.Errorf("destination a_id_seq changed: %s", got)
	}
}

// sync-sequences prints no password, whatever fails.
func TestSyncSequencesRedactsPasswords(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, `CREATE TABLE a (id serial PRIMARY KEY);`)
	pgtest.Exec(t, dst, `CREATE TABLE a (id serial PRIMARY KEY);`)
	const wrong = "Wr0ng-s3cret-pw"
	for _, args := range [][]string{
		{"--source", withPassword(t, src, wrong), "--dest", dst, "--table", "a"},
		{"--source", src, "--dest", withPassword(t, dst, wrong), "--table", "a", "--verbose"},
	} {
		code, out, errOut := lockstep(t, context.Background(), append([]string{"sync-sequences"}, args...)...)
		if code != exitBadInput || !strings.Contains(errOut, "password authentication failed") {
			t.Errorf("exit %d, want 2 naming the failed authentication\n%s\n%s", code, out, errOut)
		}
		if strings.Contains(out+errOut, "s3cret") || strings.Contains(out+errOut, pgtest.TestPassword) {
			t.Errorf("a password shows:\n%s\n%s", out, errOut)
		}
	}
}
