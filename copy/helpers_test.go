package copy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"lockstep/copy"
	"lockstep/internal/pgtest"
	"lockstep/partition"
	"lockstep/verify"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(t *testing.T, dsn string, sql string, args ...any) {
	t.Helper()
	conn := connect(t, dsn)
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %q: %v", firstLine(sql), err)
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i > 0 {
		return s[:i] + "..."
	}
	return s
}

// dump renders a table's rows as text with pinned settings, ordered, over
// the given columns: an independent check of what a copy left behind.
func dump(t *testing.T, dsn, table, cols, orderBy string) string {
	t.Helper()
	conn := connect(t, dsn)
	ctx := context.Background()
	for _, s := range []string{"SET TimeZone = 'UTC'", "SET DateStyle = 'ISO'", "SET IntervalStyle = 'postgres'",
		"SET extra_float_digits = 3", "SET bytea_output = 'hex'"} {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	var out *string
	err := conn.QueryRow(ctx, "SELECT string_agg(r::text, E'\\n' ORDER BY "+orderBy+") FROM (SELECT "+cols+" FROM "+table+") r").Scan(&out)
	if err != nil {
		t.Fatalf("dump %s: %v", table, err)
	}
	if out == nil {
		return ""
	}
	return *out
}

func count(t *testing.T, dsn, table string) int64 {
	t.Helper()
	var n int64
	if err := connect(t, dsn).QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func opts(src, dst string, tables ...string) copy.Options {
	return copy.Options{Source: src, Dest: dst, Selection: partition.Selection{Tables: tables}, Jobs: 1, LockTimeout: 2 * time.Second, LockRetries: 0, Verify: verify.Checksum}
}

// mustCopy runs a copy that must succeed and returns its report.
func mustCopy(t *testing.T, o copy.Options) *copy.Report {
	t.Helper()
	rep, err := copy.Run(testCtx(t), o)
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	for _, u := range rep.Units {
		if u.Status != copy.StatusOK {
			t.Fatalf("unit %s: %s", u.Unit, u.Status)
		}
	}
	return rep
}

// assertSame fails unless both sides hold the same rows.
func assertSame(t *testing.T, src, dst, table, cols, orderBy string) {
	t.Helper()
	a, b := dump(t, src, table, cols, orderBy), dump(t, dst, table, cols, orderBy)
	if a != b {
		t.Fatalf("%s differs:\nsource:\n%s\ndestination:\n%s", table, a, b)
	}
	if a == "" {
		t.Fatalf("%s: test data is empty", table)
	}
}
