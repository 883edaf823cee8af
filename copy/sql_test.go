package copy

import (
	"strings"
	"testing"

	"lockstep/partition"
)

func TestSQLBuilders(t *testing.T) {
	plain := partition.Table{Schema: "My Schema", Name: `Odd "Table"`, Kind: "r"}
	parent := partition.Table{Schema: "public", Name: "orders", Kind: "p"}
	cols := []string{"id", `we"ird`}
	cases := []struct{ got, want string }{
		{copyOutSQL(plain, cols, false), `COPY "My Schema"."Odd ""Table""" ("id", "we""ird") TO STDOUT`},
		{copyOutSQL(plain, cols, true), `COPY "My Schema"."Odd ""Table""" ("id", "we""ird") TO STDOUT (FORMAT binary)`},
		{copyOutSQL(parent, cols, true), `COPY (SELECT "id", "we""ird" FROM "public"."orders") TO STDOUT (FORMAT binary)`},
		{copyInSQL(plain, cols, true, true), `COPY "My Schema"."Odd ""Table""" ("id", "we""ird") FROM STDIN (FORMAT binary, FREEZE)`},
		{copyInSQL(plain, cols, false, false), `COPY "My Schema"."Odd ""Table""" ("id", "we""ird") FROM STDIN`},
		{copyInSQL(plain, cols, false, true), `COPY "My Schema"."Odd ""Table""" ("id", "we""ird") FROM STDIN (FREEZE)`},
		{truncateSQL(plain), `TRUNCATE ONLY "My Schema"."Odd ""Table"""`},
		{truncateSQL(parent), `TRUNCATE "public"."orders"`},
		{countSQL(plain), `SELECT pg_catalog.count(*) FROM ONLY "My Schema"."Odd ""Table"""`},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got  %s\nwant %s", c.got, c.want)
		}
	}
}

func TestSessionSQLByVersion(t *testing.T) {
	if s := sessionSQL(130000); strings.Contains(s, "transaction_timeout") || strings.Contains(s, "client_connection_check_interval") {
		t.Errorf("13 does not know these settings: %s", s)
	}
	if s := sessionSQL(170000); !strings.Contains(s, "transaction_timeout = 0") {
		t.Errorf("17 must pin transaction_timeout: %s", s)
	}
	for _, want := range []string{"statement_timeout = 0", "idle_in_transaction_session_timeout = 0", "TimeZone = 'UTC'", "extra_float_digits = 3", "row_security = off", "lc_monetary = 'C'"} {
		if !strings.Contains(sessionSQL(150000), want) {
			t.Errorf("missing %s", want)
		}
	}
}

func TestRedact(t *testing.T) {
	cases := []struct{ in, want string }{
		{"cannot parse `postgres://bob:s3cret@h/db`", "cannot parse `postgres://bob:xxxxx@h/db`"},
		{"host=h password=s3cret user=bob", "host=h password=xxxxx user=bob"},
		{"password = 'se cr\\'et' user=bob", "password = xxxxx user=bob"},
		{"auth failed for s3cret", "auth failed for xxxxx"},
	}
	for _, c := range cases {
		if got := Redact(c.in, "s3cret"); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestParseVersion(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"15.18 (Debian 15.18-0+deb12u1)", 150018},
		{"15.4", 150004},
		{"17beta1", 170000},
		{"18devel", 180000},
		{"16rc1", 160000},
		{"10.23", 100023},
		{"9.6.24", 90624},
		{"9.6beta2", 90600},
		{"", 0},
		{"EnterpriseDB 15", 0},
	} {
		if got := parseVersion(c.in); got != c.want {
			t.Errorf("parseVersion(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}
