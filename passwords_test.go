package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"lockstep/internal/pgtest"
)

// randomPassword is 12 to 20 random characters with every character that
// needs escaping in a URL or quoting in a key=value string or an SQL
// literal among them.
func randomPassword(r *rand.Rand) string {
	const plain = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	const special = ` '"\@:/%=?#&+$;é`
	b := []rune{}
	for range 6 + r.IntN(9) {
		b = append(b, rune(plain[r.IntN(len(plain))]))
	}
	for _, c := range []rune(special) {
		if r.IntN(3) > 0 || strings.ContainsRune(` '"\@:/%=`, c) {
			i := r.IntN(len(b) + 1)
			b = append(b[:i], append([]rune{c}, b[i:]...)...)
		}
	}
	return string(b)
}

// passwordForms are the ways pw may be written in messages.
func passwordForms(pw string) []string {
	kv := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw)
	js, _ := json.Marshal(pw)
	forms := []string{pw, url.QueryEscape(pw), url.PathEscape(pw), strings.TrimPrefix(url.UserPassword("", pw).String(), ":"),
		kv, strings.ReplaceAll(pw, "'", "''"), strconv.Quote(pw), strconv.Quote(kv), string(js)}
	for i, f := range forms {
		if strings.HasPrefix(f, `"`) {
			forms[i] = f[1 : len(f)-1]
		}
	}
	return forms
}

func sqlLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Random passwords, given in URL form, key=value form or PGPASSWORD, never
// appear in stdout, stderr, the --report file or the --verbose log, on
// every error path a user can hit: bad host, wrong password, missing table,
// lock timeout (the blocker's query holding the password), mismatch,
// interruption, flag errors; nor on success.
func TestPasswordsNeverShown(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("LOCKSTEP_TEST_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("LOCKSTEP_TEST_SEED=%d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	env := pgtest.Get(t)
	src, dst := env.NewDBs(t)
	pgtest.Exec(t, src, `CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t SELECT g, 'n' || g FROM generate_series(1, 100) g;
		CREATE TABLE m (id int PRIMARY KEY); INSERT INTO m VALUES (1), (2);`)
	pgtest.Exec(t, dst, `CREATE TABLE t (id int PRIMARY KEY, note text); CREATE TABLE m (id int PRIMARY KEY); INSERT INTO m VALUES (1), (3);`)
	srcDB, dstDB := dbOf(t, src), dbOf(t, dst)

	// The role's name is plain; its password is what is under test.
	role := fmt.Sprintf("pw_%d", r.Uint32())
	for _, dsn := range []string{src, dst} {
		pgtest.Exec(t, dsn, "CREATE ROLE "+role+" LOGIN SUPERUSER")
	}
	t.Cleanup(func() {
		for _, dsn := range []string{src, dst} {
			pgtest.Exec(t, dsn, "DROP ROLE IF EXISTS "+role)
		}
	})
	setPassword := func(pw string) {
		for _, dsn := range []string{src, dst} {
			pgtest.Exec(t, dsn, "ALTER ROLE "+role+" PASSWORD "+sqlLiteral(pw))
		}
	}

	type server struct {
		s  *pgtest.Server
		db string
	}
	urlDSN := func(sv server, pw string, port int) string {
		u := url.URL{Scheme: "postgres", User: url.UserPassword(role, pw), Host: hostPort(sv.s.Host, port), Path: "/" + sv.db,
			RawQuery: "sslmode=disable&connect_timeout=5"}
		return u.String()
	}
	kvDSN := func(sv server, pw string, port int) string {
		s := fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=disable connect_timeout=5", sv.s.Host, port, sv.db, role)
		if pw != "" {
			s += " password='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw) + "'"
		}
		return s
	}
	source, dest := server{env.Source, srcDB}, server{env.Dest, dstDB}

	forms := []struct {
		name string
		dsn  func(sv server, pw string, port int) string
		env  bool // the password goes in PGPASSWORD, not the DSN
	}{
		{"url", urlDSN, false},
		{"key=value", kvDSN, false},
		{"PGPASSWORD", kvDSN, true},
	}
	for _, form := range forms {
		pw, wrong := randomPassword(r), randomPassword(r)
		setPassword(pw)
		t.Logf("%s: password %q, wrong password %q", form.name, pw, wrong)
		dsns := func(t *testing.T, pw string, srcPort int) (string, string) {
			if form.env {
				t.Setenv("PGPASSWORD", pw)
				pw = ""
			}
			return form.dsn(source, pw, srcPort), form.dsn(dest, pw, env.Dest.Port)
		}
		type path struct {
			name    string
			code    int
			args    func(t *testing.T) []string
			setup   func(ctx context.Context) func()
			timeout time.Duration
		}
		blockWith := func(query string) func(ctx context.Context) func() {
			return func(ctx context.Context) func() {
				c := pgtest.Connect(t, src)
				if _, err := c.Exec(ctx, "BEGIN; LOCK TABLE t IN SHARE ROW EXCLUSIVE MODE"); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Exec(ctx, query); err != nil {
					t.Fatal(err)
				}
				return func() { c.Exec(context.Background(), "ROLLBACK") }
			}
		}
		// The blocker's own query holds the password as an SQL literal and
		// in a dblink-style connection string.
		blocker := blockWith("ALTER ROLE " + role + " PASSWORD " + sqlLiteral(pw) + "; SELECT " +
			sqlLiteral("host=h password='"+strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw)+"'"))
		paths := []path{
			{name: "bad host", code: 2, args: func(t *testing.T) []string {
				s, d := dsns(t, pw, 1)
				return []string{"copy", "--source", s, "--dest", d, "--table", "t"}
			}},
			{name: "wrong password", code: 2, args: func(t *testing.T) []string {
				s, d := dsns(t, wrong, env.Source.Port)
				return []string{"copy", "--source", s, "--dest", d, "--table", "t"}
			}},
			{name: "missing table", code: 2, args: func(t *testing.T) []string {
				s, d := dsns(t, pw, env.Source.Port)
				return []string{"copy", "--source", s, "--dest", d, "--table", "nope"}
			}},
			{name: "lock timeout", code: 1, setup: blocker, args: func(t *testing.T) []string {
				s, d := dsns(t, pw, env.Source.Port)
				return []string{"copy", "--source", s, "--dest", d, "--table", "t", "--lock-timeout", "300ms", "--lock-retries", "1"}
			}},
			{name: "interrupted", code: 3, setup: blocker, timeout: 1500 * time.Millisecond, args: func(t *testing.T) []string {
				s, d := dsns(t, pw, env.Source.Port)
				return []string{"copy", "--source", s, "--dest", d, "--table", "t", "--lock-timeout", "20s"}
			}},
			{name: "mismatch", code: 4, args: func(t *testing.T) []string {
				s, d := dsns(t, pw, env.Source.Port)
				return []string{"verify", "--source", s, "--dest", d, "--table", "m", "--diff", "--lock"}
			}},
			{name: "unknown flag", code: 2, args: func(t *testing.T) []string {
				s, d := dsns(t, pw, env.Source.Port)
				return []string{"copy", "--source", s, "--dest", d, "--table", "t", "--frobnicate"}
			}},
			{name: "connection string as a flag value", code: 2, args: func(t *testing.T) []string {
				s, d := dsns(t, pw, env.Source.Port)
				return []string{"verify", "--source", s, "--dest", d, "--jobs", s, "--lock-timeout=" + d, "--table", "t"}
			}},
			{name: "ok", code: 0, args: func(t *testing.T) []string {
				s, d := dsns(t, pw, env.Source.Port)
				return []string{"copy", "--source", s, "--dest", d, "--table", "t"}
			}},
		}
		for _, p := range paths {
			t.Run(form.name+"/"+p.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if p.setup != nil {
					defer p.setup(ctx)()
				}
				if p.timeout > 0 {
					var c context.CancelFunc
					ctx, c = context.WithTimeout(ctx, p.timeout)
					defer c()
				}
				report := filepath.Join(t.TempDir(), "report.json")
				args := append(p.args(t), "--verbose", "--report", report)
				code, out, errOut := lockstep(t, ctx, args...)
				rep, err := os.ReadFile(report)
				if err != nil {
					t.Errorf("no report: %v", err)
				}
				texts := map[string]string{"stdout": out, "stderr": errOut, "report": string(rep)}
				var decoded any
				if json.Unmarshal(rep, &decoded) == nil {
					texts["report, decoded"] = fmt.Sprint(decoded)
				}
				for name, text := range texts {
					for _, secret := range []string{pw, wrong} {
						for _, f := range passwordForms(secret) {
							if part := leaked(text, f); part != "" {
								t.Errorf("%s shows password %q (%q of its form %q):\n%s", name, secret, part, f, text)
							}
						}
					}
				}
				if code != p.code {
					t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, p.code, out, errOut)
				}
			})
		}
	}
}

// leaked returns the first part of form, 8 characters long (or all of a
// shorter one), that text contains: a password may not show even in part.
func leaked(text, form string) string {
	r := []rune(form)
	n := min(8, len(r))
	for i := 0; i+n <= len(r); i++ {
		if part := string(r[i : i+n]); strings.Contains(text, part) {
			return part
		}
	}
	return ""
}

func hostPort(host string, port int) string { return host + ":" + strconv.Itoa(port) }
