package copy

import (
	"strings"
	"testing"
	"time"

	"lockstep/partition"
)

func TestSQLBuilders(t *testing.T) {
	plain := partition.Table{Schema: "My Schema", Name: `Odd "Table"`, Kind: "r"}
	parent := partition.Table{Schema: "public", Name: "orders", Kind: "p"}
	leaf := partition.Table{Schema: "public", Name: "orders_1", Kind: "r"}
	cols := []string{"id", `we"ird`}
	cases := []struct{ got, want string }{
		{copyOutSQL(plain, cols, false), `COPY "My Schema"."Odd ""Table""" ("id", "we""ird") TO STDOUT`},
		{copyOutSQL(plain, cols, true), `COPY "My Schema"."Odd ""Table""" ("id", "we""ird") TO STDOUT (FORMAT binary)`},
		{copyOutSQL(parent, cols, true), `COPY (SELECT "id", "we""ird" FROM "public"."orders") TO STDOUT (FORMAT binary)`},
		{copyInSQL(plain, cols, true, true), `COPY "My Schema"."Odd ""Table""" ("id", "we""ird") FROM STDIN (FORMAT binary, FREEZE)`},
		{copyInSQL(plain, cols, false, false), `COPY "My Schema"."Odd ""Table""" ("id", "we""ird") FROM STDIN`},
		{copyInSQL(plain, cols, false, true), `COPY "My Schema"."Odd ""Table""" ("id", "we""ird") FROM STDIN (FREEZE)`},
		{replaceSQL(&partition.Group{Units: []partition.Unit{{Dest: plain}}}), `TRUNCATE ONLY "My Schema"."Odd ""Table"""`},
		{replaceSQL(&partition.Group{Units: []partition.Unit{{Dest: parent}}}), `TRUNCATE "public"."orders"`},
		{replaceSQL(&partition.Group{Units: []partition.Unit{{Dest: plain}, {Dest: leaf}}, Truncate: []partition.Table{parent}}),
			`TRUNCATE ONLY "My Schema"."Odd ""Table""", ONLY "public"."orders_1", "public"."orders"`},
		{replaceSQL(&partition.Group{Units: []partition.Unit{{Dest: plain}}, Delete: true}), `DELETE FROM ONLY "My Schema"."Odd ""Table"""`},
		{countSQL(plain), `SELECT pg_catalog.count(*) FROM ONLY "My Schema"."Odd ""Table"""`},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got  %s\nwant %s", c.got, c.want)
		}
	}
}

func TestPinnedSQLByVersion(t *testing.T) {
	if s := pinnedSQL(130000); strings.Contains(s, "transaction_timeout") || strings.Contains(s, "client_connection_check_interval") {
		t.Errorf("13 does not know these settings: %s", s)
	}
	if s := pinnedSQL(170000); !strings.Contains(s, "transaction_timeout = 0") {
		t.Errorf("17 must pin transaction_timeout: %s", s)
	}
	for _, want := range []string{"statement_timeout = 0", "TimeZone = 'UTC'", "extra_float_digits = 3", "row_security = off", "lc_monetary = 'C'", "xmloption = content", "array_nulls = on", "quote_all_identifiers = off"} {
		if !strings.Contains(setupSQL(30*time.Second, 150000), want) {
			t.Errorf("missing %s", want)
		}
	}
	// Pinned once per session, not per transaction.
	if s := pinnedSQL(150000); strings.Contains(s, "SET LOCAL") || strings.Contains(s, "idle_in_transaction") {
		t.Errorf("pinned settings are per session, and leave the idle timeout to setupSQL: %s", s)
	}
}

func TestSetupSQL(t *testing.T) {
	got := setupSQL(30*time.Second, 150000)
	for _, want := range []string{"tcp_keepalives_idle = 10;", "tcp_keepalives_interval = 5;", "tcp_keepalives_count = 4;",
		"idle_in_transaction_session_timeout = 120000;", "tcp_user_timeout = 30000"} {
		if !strings.Contains(got, want) {
			t.Errorf("setupSQL(30s) = %s: missing %s", got, want)
		}
	}
	if got := setupSQL(2*time.Second, 150000); !strings.Contains(got, "tcp_keepalives_idle = 1;") || !strings.Contains(got, "tcp_keepalives_count = 1;") {
		t.Errorf("setupSQL(2s) = %s", got)
	}
	// The idle timeout must exceed the longest idle gap lockstep leaves:
	// a statement on the other side unanswered (S), or a heartbeat's pause
	// and round trip.
	for _, s := range []time.Duration{time.Second, 2 * time.Second, 30 * time.Second, 10 * time.Minute} {
		gap := max(s, heartbeatEvery(s)+pingTimeout(s), pingTimeout(s)+pingTimeout(s))
		if idleTimeout(s) < gap+s/2 {
			t.Errorf("stall %s: idle timeout %s leaves too little over the longest idle gap %s", s, idleTimeout(s), gap)
		}
		if k := keepaliveFor(s); k.idle+time.Duration(k.count(s))*k.interval > max(s, 2*time.Second) {
			t.Errorf("stall %s: keepalives give up after %s", s, k.idle+time.Duration(k.count(s))*k.interval)
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

func TestVersionRefusedBelow12(t *testing.T) {
	cases := []struct {
		num  int
		text string
		ok   bool
	}{
		{110022, "11.22", false},
		{96024, "9.6.24", false},
		{120000, "12.0", true},
		{150018, "15.18 (Debian 15.18-0+deb12u1)", true},
	}
	for _, c := range cases {
		err := versionError("destination", c.num, c.text)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.text, err)
		}
		if err != nil && err.Error() != "destination: PostgreSQL "+c.text+" is not supported: lockstep needs PostgreSQL 12 or later" {
			t.Errorf("message: %v", err)
		}
	}
}
