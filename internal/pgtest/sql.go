package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// sqlTimeout bounds one helper call; it is generous because tests load data with Exec.
const sqlTimeout = 5 * time.Minute

// connect opens one connection and fails fast rather than waiting for a dead server.
func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// NewDBs creates a fresh, uniquely named database on both servers (dropped
// with t.Cleanup, WITH (FORCE)) and returns their DSNs. Both databases have
// the same name.
func (e *Env) NewDBs(t testing.TB) (src, dst string) {
	t.Helper()
	name := dbName(t)
	var errS, errD error
	var wg sync.WaitGroup
	wg.Go(func() { errS = createDB(t, e.Source, name) })
	wg.Go(func() { errD = createDB(t, e.Dest, name) })
	wg.Wait()
	if errS != nil || errD != nil {
		t.Fatalf("pgtest: new databases: %v", errors.Join(errS, errD))
	}
	return e.Source.DSN(name), e.Dest.DSN(name)
}

// NewDB creates a fresh, uniquely named database on s (dropped with
// t.Cleanup, WITH (FORCE)) and returns its DSN.
func (s *Server) NewDB(t testing.TB) string {
	t.Helper()
	name := dbName(t)
	if err := createDB(t, s, name); err != nil {
		t.Fatalf("pgtest: new database: %v", err)
	}
	return s.DSN(name)
}

// NewDBWith is NewDB with options for CREATE DATABASE, such as
// "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' TEMPLATE template0". It returns
// the error instead of failing the test, so that a test can skip when the
// server lacks what the options need.
func (s *Server) NewDBWith(t testing.TB, options string) (string, error) {
	t.Helper()
	name := dbName(t)
	if err := createDB(t, s, name, options); err != nil {
		return "", err
	}
	return s.DSN(name), nil
}

// createDB creates database name on s (with options for CREATE DATABASE,
// if any) and registers its drop with t.Cleanup. It only returns an error:
// it may run outside the test's goroutine.
func createDB(t testing.TB, s *Server, name string, options ...string) error {
	ident := pgx.Identifier{name}.Sanitize()
	if err := adminExec(s, strings.TrimSpace("CREATE DATABASE "+ident+" "+strings.Join(options, " "))); err != nil {
		return fmt.Errorf("%s: create database %s: %w", s, name, err)
	}
	t.Cleanup(func() {
		s.mu.Lock()
		gone := s.ctl != nil && (s.removed || s.stopped)
		s.mu.Unlock()
		if gone {
			return // a private server that is stopped or removed: its data goes with it
		}
		if err := adminExec(s, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: %s: drop database %s: %v", s, name, err)
		}
	})
	return nil
}

func adminExec(s *Server, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	conn, err := connect(ctx, s.DSN(s.adminDB))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// dbName makes a database name from the test's name that is unique across
// processes (packages share user-provided servers) and at most 63 bytes.
func dbName(t testing.TB) string {
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(t.Name()) {
		if b.Len() >= 40 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	var rnd [5]byte
	_, _ = rand.Read(rnd[:])
	b.WriteByte('_')
	b.WriteString(hex.EncodeToString(rnd[:]))
	return b.String()
}

// Connect opens a connection to dsn that is closed in t.Cleanup; it fails the test on error.
func Connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	conn, err := connect(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// Exec runs sql (several statements are allowed when there are no args) on a
// new connection to dsn and fails the test on error.
func Exec(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	conn, err := connect(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("pgtest: exec %q: %v", abbrev(sql), err)
	}
}

// QueryString runs sql on a new connection to dsn and returns the first column
// of the first row in PostgreSQL's text form ("" for NULL); it fails the test
// on error or when there is no row.
func QueryString(t testing.TB, dsn, sql string, args ...any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	conn, err := connect(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(context.Background())
	// The simple protocol returns every value as text, whatever its type.
	args = append([]any{pgx.QueryExecModeSimpleProtocol}, args...)
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("pgtest: query %q: %v", abbrev(sql), err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			t.Fatalf("pgtest: query %q: %v", abbrev(sql), err)
		}
		t.Fatalf("pgtest: query %q: no rows", abbrev(sql))
	}
	var out string
	if vals := rows.RawValues(); len(vals) > 0 {
		out = string(vals[0])
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatalf("pgtest: query %q: %v", abbrev(sql), err)
	}
	return out
}

func abbrev(sql string) string {
	sql = strings.Join(strings.Fields(sql), " ")
	if len(sql) > 80 {
		return sql[:77] + "..."
	}
	return sql
}
