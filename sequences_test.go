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
		"set it with setval",
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
