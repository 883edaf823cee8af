package pgtest_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"lockstep/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// userTables counts the tables outside the system schemas.
const userTables = `SELECT count(*) FROM pg_catalog.pg_tables
	WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`

func TestNewDBsAreFreshAndIndependent(t *testing.T) {
	t.Parallel()
	env := pgtest.Get(t)
	src, dst := env.NewDBs(t)
	src2, dst2 := env.NewDBs(t)

	for _, dsn := range []string{src, dst, src2, dst2} {
		if n := pgtest.QueryString(t, dsn, userTables); n != "0" {
			t.Errorf("%s: %s user tables in a fresh database, want 0", redact(dsn), n)
		}
	}
	if src == src2 || dst == dst2 {
		t.Fatalf("two NewDBs calls returned the same database")
	}
	if pgtest.QueryString(t, src, "SHOW port") == pgtest.QueryString(t, dst, "SHOW port") &&
		pgtest.QueryString(t, src, "SELECT system_identifier FROM pg_control_system()") ==
			pgtest.QueryString(t, dst, "SELECT system_identifier FROM pg_control_system()") {
		t.Fatalf("source and destination databases are on the same server")
	}

	pgtest.Exec(t, src, `CREATE TABLE t (id int PRIMARY KEY, v text);
		INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 10) g`)
	pgtest.Exec(t, dst, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	pgtest.Exec(t, dst, `INSERT INTO t VALUES ($1, $2)`, 42, "only on dest")

	for _, tc := range []struct {
		dsn, query, want string
	}{
		{src, "SELECT count(*) FROM t", "10"},
		{dst, "SELECT count(*) FROM t", "1"},
		{dst, "SELECT v FROM t WHERE id = $1", "only on dest"},
		{src2, userTables, "0"},
		{dst2, userTables, "0"},
		{src, "SELECT NULL::text", ""},
	} {
		if got := pgtest.QueryString(t, tc.dsn, tc.query, argsFor(tc.query)...); got != tc.want {
			t.Errorf("%s: %q = %q, want %q", redact(tc.dsn), tc.query, got, tc.want)
		}
	}
}

func argsFor(query string) []any {
	if query == "SELECT v FROM t WHERE id = $1" {
		return []any{42}
	}
	return nil
}

// TestNewDBsDroppedOnCleanup checks that the databases are dropped even while
// a connection to them is still open (WITH (FORCE)).
func TestNewDBsDroppedOnCleanup(t *testing.T) {
	t.Parallel()
	env := pgtest.Get(t)
	var src, dst string
	var open *pgx.Conn
	ok := t.Run("sub", func(t *testing.T) {
		src, dst = env.NewDBs(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if open, err = pgx.Connect(ctx, src); err != nil {
			t.Fatal(err)
		}
	})
	if open != nil {
		// DROP ... WITH (FORCE) terminated it; closing just frees the client side.
		defer open.Close(context.Background())
	}
	if !ok {
		return
	}
	for _, dsn := range []string{src, dst} {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		name := u.Path[1:]
		u.Path = "/postgres"
		n := pgtest.QueryString(t, u.String(), "SELECT count(*) FROM pg_database WHERE datname = $1", name)
		if n != "0" {
			t.Errorf("database %s still exists after its test ended", name)
		}
	}
}

func TestWrongPasswordRejected(t *testing.T) {
	t.Parallel()
	env := pgtest.Get(t)
	for _, s := range []*pgtest.Server{env.Source, env.Dest} {
		u, err := url.Parse(s.DSN("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(s.User, s.Password()+"-wrong")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err := pgx.Connect(ctx, u.String())
		cancel()
		if err == nil {
			conn.Close(context.Background())
			t.Errorf("%v: connected with a wrong password", s)
			continue
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
			t.Errorf("%v: wrong password: got %v, want SQLSTATE 28P01 (invalid_password)", s, err)
		}
	}
}

func TestStopStart(t *testing.T) {
	t.Parallel()
	s := pgtest.NewServer(t)
	port := s.Port
	dsn := s.NewDB(t)
	pgtest.Exec(t, dsn, `CREATE TABLE kept AS SELECT g AS id FROM generate_series(1, 100) g`)

	conn := pgtest.Connect(t, dsn)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Errorf("a session survived Stop")
	}
	if c, err := pgx.Connect(ctx, dsn); err == nil {
		c.Close(ctx)
		t.Fatalf("connected to a stopped server")
	}
	if err := s.Stop(); err == nil {
		t.Errorf("Stop of a stopped server succeeded")
	}

	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if s.Port != port {
		t.Errorf("port changed from %d to %d across Stop/Start", port, s.Port)
	}
	if n := pgtest.QueryString(t, dsn, "SELECT count(*) FROM kept"); n != "100" {
		t.Errorf("after restart: %s rows, want 100", n)
	}
}

// redact hides the password of a DSN in messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(bad dsn)"
	}
	return u.Redacted()
}
