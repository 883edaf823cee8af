package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lockstep/internal/pgtest"
)

// A connection string that does not parse, or parses into a host name that
// cannot be one, is refused in one line (exit 2) that shows no piece of the
// password, whatever the user got wrong in writing it: a space in an
// unquoted key=value password, an unclosed quote, an @ or a % left
// unencoded in a URL's password (libpq and pgx end the user part at the
// first @, so the rest of the password would be taken for the host).
func TestMalformedConnectionStringHidesPassword(t *testing.T) {
	t.Parallel()
	env := pgtest.Get(t)
	src, dst := env.NewDBs(t)
	pgtest.Exec(t, src, `CREATE TABLE t (id int); INSERT INTO t VALUES (1)`)
	pgtest.Exec(t, dst, `CREATE TABLE t (id int)`)
	u, err := url.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	host, port, db := u.Hostname(), u.Port(), strings.TrimPrefix(u.Path, "/")
	kv := fmt.Sprintf("host=%s port=%s dbname=%s user=bob ", host, port, db)
	// Every piece of the password holds "5ecret": none may show.
	cases := []struct{ name, dsn string }{
		{"key=value, space in an unquoted password", kv + "password=first5ecret second5ecret"},
		{"key=value, unclosed quote", kv + "password='first5ecret second5ecret"},
		{"key=value, unclosed quote, more after", kv + "password='first5ecret sslmode=disable"},
		{"url, unencoded @", fmt.Sprintf("postgres://bob:first5ecret@second5ecret@%s:%s/%s", host, port, db)},
		{"url, unencoded @ and %", fmt.Sprintf("postgres://bob:p@ss:w/or%%d5ecret@%s:%s/%s", host, port, db)},
		{"url, unencoded @ and space", fmt.Sprintf("postgres://bob:p@ss w/or d5ecret@%s:%s/%s", host, port, db)},
		{"url, unencoded % and @", fmt.Sprintf("postgres://bob:fir%%st5ecret@x@%s:%s/%s", host, port, db)},
	}
	for _, c := range cases {
		for _, cmd := range []string{"copy", "plan", "verify", "sync-sequences", "status"} {
			t.Run(c.name+"/"+cmd, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				report := filepath.Join(t.TempDir(), "report.json")
				args := []string{cmd, "--source", c.dsn, "--dest", dst, "--table", "t"}
				if cmd == "status" {
					args = []string{cmd, "--source", src, "--dest", c.dsn}
				}
				if cmd == "copy" || cmd == "verify" {
					args = append(args, "--report", report)
				}
				began := time.Now()
				code, out, errOut := lockstep(t, ctx, args...)
				rep, _ := os.ReadFile(report)
				if code != 2 {
					t.Errorf("exit %d, want 2\nstdout: %s\nstderr: %s", code, out, errOut)
				}
				if d := time.Since(began); d > 5*time.Second {
					t.Errorf("took %s", d)
				}
				if strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "invalid connection string") {
					t.Errorf("want one line saying the connection string is invalid, got %q", errOut)
				}
				for name, text := range map[string]string{"stdout": out, "stderr": errOut, "report": string(rep)} {
					if strings.Contains(text, "5ecret") {
						t.Errorf("%s shows a piece of the password: %s", name, text)
					}
				}
			})
		}
	}
	if got := pgtest.QueryString(t, dst, `SELECT count(*) FROM pg_namespace WHERE nspname = 'lockstep'`); got != "0" {
		t.Errorf("a ledger was created on the destination")
	}
}
