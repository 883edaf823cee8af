package schema

import (
	"slices"
	"strings"
	"testing"
)

func TestParseConn(t *testing.T) {
	defaults := map[string]string{"connect_timeout": "10"}
	cases := []struct {
		name, dsn, info, password, err string
	}{
		{"url", "postgres://bob:s3cr%40t@db.example:5433/app?sslmode=require", "postgres://bob@db.example:5433/app?connect_timeout=10&sslmode=require", "s3cr@t", ""},
		{"url password param", "postgresql://bob@h/app?password=pw&search_path=x&connect_timeout=3", "postgresql://bob@h/app?connect_timeout=3", "pw", ""},
		{"url no user", "postgres://h/app", "postgres://h/app?connect_timeout=10", "", ""},
		{"key value", "host=h port=5433 dbname=app user=bob password=pw", "host='h' port='5433' dbname='app' user='bob' connect_timeout='10'", "pw", ""},
		{"quoted", `host = h  password = 'a b\'c\\d' application_name='x y'`, `host='h' application_name='x y' connect_timeout='10'`, `a b'c\d`, ""},
		{"pgx names", "database=app statement_cache_capacity=0 search_path=x host=h", "dbname='app' host='h' connect_timeout='10'", "", ""},
		{"escaped unquoted", `password=a\ b host=h`, "host='h' connect_timeout='10'", "a b", ""},
		{"empty", "", "connect_timeout='10'", "", ""},
		{"sslpassword", "host=h sslpassword=x", "", "", "sslpassword"},
		{"unclosed", "host='h", "", "", "closing quote"},
		{"no equals", "host h", "", "", "not followed by ="},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseConn(c.dsn, defaults)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Info != c.info || got.Password != c.password {
				t.Errorf("got (%q, %q), want (%q, %q)", got.Info, got.Password, c.info, c.password)
			}
			if c.password != "" && strings.Contains(got.Info, c.password) {
				t.Errorf("the password is in %q", got.Info)
			}
		})
	}
}

func TestConnEnv(t *testing.T) {
	env := Conn{Password: "pw"}.Env([]string{"A=1", "PGPASSWORD=old", "B=2"})
	if !slices.Equal(env, []string{"A=1", "B=2", "PGPASSWORD=pw"}) {
		t.Errorf("env %q", env)
	}
	if env := (Conn{}).Env([]string{"PGPASSWORD=old"}); !slices.Equal(env, []string{"PGPASSWORD=old"}) {
		t.Errorf("without a password the environment's PGPASSWORD stays: %q", env)
	}
}

func TestParseVersion(t *testing.T) {
	cases := []struct {
		out, name, version string
		major              int
	}{
		{"pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n", "pg_dump", "15.18", 15},
		{"pg_dump (PostgreSQL) 17beta1\n", "pg_dump", "17beta1", 17},
		{"pg_dump (PostgreSQL) 11.0\n", "pg_dump", "11.0", 11},
		{"pg_restore (PostgreSQL) 9.6.24\n", "pg_restore", "9.6.24", 9},
	}
	for _, c := range cases {
		v, major, err := parseVersion(c.out, c.name)
		if err != nil || v != c.version || major != c.major {
			t.Errorf("%q: got %q %d %v, want %q %d", c.out, v, major, err, c.version, c.major)
		}
	}
	for _, bad := range []string{"", "pg_dump 15", "psql (PostgreSQL) 15.1"} {
		if _, _, err := parseVersion(bad, "pg_dump"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestStripRestrict(t *testing.T) {
	in := "--\n-- PostgreSQL database dump\n--\n\n\\restrict AbC123\n\nSET x = 1;\nCREATE TABLE \"a\n\\unrestrict Other\" (id int);\n\n\\unrestrict AbC123\n\n"
	want := "--\n-- PostgreSQL database dump\n--\n\n\nSET x = 1;\nCREATE TABLE \"a\n\\unrestrict Other\" (id int);\n\n\n"
	if got := StripRestrict(in); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	plain := "SET x = 1;\nCREATE TABLE a (id int);\n"
	if got := StripRestrict(plain); got != plain {
		t.Errorf("a script without \\restrict changed: %q", got)
	}
}

func TestSelectEntries(t *testing.T) {
	toc := `;
; Archive created at 2026-01-01 00:00:00 UTC
;
6; 2615 16385 SCHEMA - app postgres
847; 1247 16387 TYPE app mood postgres
850; 1247 16392 DOMAIN app pos postgres
862; 1255 16401 FUNCTION app f() postgres
854; 1247 16395 DOMAIN app pos2 postgres
855; 2606 16396 CHECK CONSTRAINT app pos2 c2 postgres
`
	got, err := selectEntries(toc, []Entry{{CatalogType, 16395, "pos2"}, {CatalogConstraint, 16396, "c2"}, {CatalogType, 16387, "mood"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "847; 1247 16387 TYPE app mood postgres\n854; 1247 16395 DOMAIN app pos2 postgres\n855; 2606 16396 CHECK CONSTRAINT app pos2 c2 postgres\n"
	if got != want {
		t.Errorf("got %q, want %q (the archive's order)", got, want)
	}
	if _, err := selectEntries(toc, []Entry{{CatalogConstraint, 16387, "not a constraint"}}); err == nil || !strings.Contains(err.Error(), "not a constraint") {
		t.Errorf("an entry of another catalog matched: %v", err)
	}
}
