package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"lockstep/internal/pgtest"
)

// newRole creates a login role on each server named and drops it (and what
// it owns) when the test ends; it returns a function that puts the role
// into a DSN.
func newRole(t *testing.T, prefix string, dsns ...string) (string, func(string) string) {
	t.Helper()
	role := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
	for _, dsn := range dsns {
		pgtest.Exec(t, dsn, "CREATE ROLE "+role+" LOGIN PASSWORD 'pw'")
		t.Cleanup(func() { pgtest.Exec(t, dsn, "DROP OWNED BY "+role+"; DROP ROLE "+role) })
	}
	return role, func(dsn string) string {
		u, _ := url.Parse(dsn)
		u.User = url.UserPassword(role, "pw")
		return u.String()
	}
}

// A role that row-level security policies restrict would see only some
// rows; lockstep reads with row_security off, and copy, plan and verify
// refuse before anything is locked, naming the side, the table, a policy
// and what the role needs. With BYPASSRLS every row arrives.
func TestRowSecurityRefusedUnlessBypassed(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	role, as := newRole(t, "rls", src, dst)
	schema := "CREATE TABLE t (id int PRIMARY KEY, owner text);"
	pgtest.Exec(t, src, schema+`INSERT INTO t SELECT g, CASE WHEN g <= 100 THEN 'me' ELSE 'other' END FROM generate_series(1, 1000) g;
		ALTER TABLE t ENABLE ROW LEVEL SECURITY;
		CREATE POLICY mine ON t FOR SELECT TO `+role+` USING (owner = 'me');
		GRANT SELECT, UPDATE ON t TO `+role)
	pgtest.Exec(t, dst, schema+"INSERT INTO t VALUES (-1, 'stale'); GRANT SELECT, INSERT, TRUNCATE ON t TO "+role+
		"; CREATE SCHEMA lockstep AUTHORIZATION "+role) // where its ledger goes
	before := snapshot(t, dst)
	ctx := context.Background()
	want := `lockstep: source: "public"."t": row-level security policy "mine" would hide rows from role ` + role +
		`; lockstep must see every row: ALTER ROLE ` + role + ` BYPASSRLS, or run as the table's owner or a superuser`
	for _, cmd := range []string{"copy", "plan", "verify"} {
		code, out, errOut := lockstep(t, ctx, cmd, "--source", as(src), "--dest", as(dst), "--table", "t")
		if code != 2 || strings.TrimSpace(errOut) != want {
			t.Errorf("%s as a role under a policy: exit %d, want 2 and\n%s\ngot:\n%s%s", cmd, code, want, out, errOut)
		}
	}
	if got := snapshot(t, dst); got != before {
		t.Fatalf("destination changed: %s, was %s", got, before)
	}

	// The destination side, and a table without any policy.
	pgtest.Exec(t, dst, "ALTER TABLE t ENABLE ROW LEVEL SECURITY")
	code, _, errOut := lockstep(t, ctx, "copy", "--source", src, "--dest", as(dst), "--table", "t")
	if code != 2 || !strings.Contains(errOut, `destination: "public"."t": row-level security is enabled without any policy, which hides every row from role `+role) {
		t.Errorf("destination under row security: exit %d: %s", code, errOut)
	}
	pgtest.Exec(t, dst, "ALTER TABLE t DISABLE ROW LEVEL SECURITY")

	pgtest.Exec(t, src, "ALTER ROLE "+role+" BYPASSRLS")
	if code, out, errOut := lockstep(t, ctx, "copy", "--source", as(src), "--dest", as(dst), "--table", "t"); code != 0 {
		t.Fatalf("copy with BYPASSRLS: exit %d: %s %s", code, out, errOut)
	}
	if got := snapshot(t, dst); got != "t:1000" {
		t.Errorf("destination after copy with BYPASSRLS: %s, want t:1000", got)
	}
	mustRun(t, 0, "verify", "--source", as(src), "--dest", as(dst), "--table", "t")
}

// The owner of a table that forces row security on its owner is filtered
// too; the error says so.
func TestRowSecurityForcedOnOwner(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	role, as := newRole(t, "rlsowner", src)
	pgtest.Exec(t, src, `CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 10);
		ALTER TABLE t OWNER TO `+role+`; ALTER TABLE t ENABLE ROW LEVEL SECURITY; ALTER TABLE t FORCE ROW LEVEL SECURITY;
		CREATE POLICY small ON t USING (id < 5);`)
	pgtest.Exec(t, dst, "CREATE TABLE t (id int)")
	code, _, errOut := lockstep(t, context.Background(), "copy", "--source", as(src), "--dest", dst, "--table", "t")
	if code != 2 || !strings.Contains(errOut, `source: "public"."t": row-level security is forced on the table's owner `+role+` (policy "small")`) ||
		!strings.Contains(errOut, `ALTER TABLE "public"."t" NO FORCE ROW LEVEL SECURITY`) {
		t.Errorf("forced on owner: exit %d: %s", code, errOut)
	}
	pgtest.Exec(t, src, "ALTER TABLE t NO FORCE ROW LEVEL SECURITY")
	mustRun(t, 0, "copy", "--source", as(src), "--dest", dst, "--table", "t")
	if got := snapshot(t, dst); got != "t:10" {
		t.Errorf("destination: %s", got)
	}
}
