package main

import (
	"context"
	"strings"
	"testing"

	"lockstep/internal/pgtest"
)

// Leaves of a partitioned parent that exist only on the destination (a
// DEFAULT partition here) would keep their rows through a copy leaf by
// leaf: copy and plan refuse while they hold rows, naming them; verify
// counts their rows as a difference. Empty ones are accepted by copy, and
// rows that arrive in them later are still found by verify.
func TestDestinationOnlyPartitions(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE TABLE events (id int, region text) PARTITION BY LIST (region);
		CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
		CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us');`
	pgtest.Exec(t, src, schema+`INSERT INTO events SELECT g, (ARRAY['eu','us'])[1 + g % 2] FROM generate_series(1, 100) g;`)
	pgtest.Exec(t, dst, schema+`CREATE TABLE events_ap PARTITION OF events FOR VALUES IN ('ap');
		CREATE TABLE events_default PARTITION OF events DEFAULT;
		INSERT INTO events VALUES (-1, 'eu'), (-2, 'stale');`)
	before := snapshot(t, dst)
	ctx := context.Background()
	for _, cmd := range []string{"copy", "plan"} {
		code, out, errOut := lockstep(t, ctx, cmd, "--source", src, "--dest", dst, "--table", "events")
		want := `lockstep: destination: "public"."events": partition(s) "public"."events_default" hold rows but do not exist on the source, ` +
			`so the copy would leave those rows in place; detach them (ALTER TABLE "public"."events" DETACH PARTITION ...) or empty them on the destination`
		if code != 2 || strings.TrimSpace(errOut) != want {
			t.Errorf("%s with a destination-only partition holding a row: exit %d\n%s%s\nwant %s", cmd, code, out, errOut, want)
		}
	}
	if got := snapshot(t, dst); got != before {
		t.Fatalf("destination changed: %s, was %s", got, before)
	}

	out := mustRun(t, 4, "verify", "--source", src, "--dest", dst, "--table", "events", "--diff")
	for _, w := range []string{
		`mismatch "public"."events_default" (destination only) rows=0`,
		"source has 0 rows, destination 1",
		"the partition exists only on the destination and holds 1 row(s) the source lacks: detach it or empty it on the destination",
		`ok "public"."events_ap" (destination only) rows=0`,
		`mismatch "public"."events_eu" rows=50`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("verify output lacks %q:\n%s", w, out)
		}
	}

	// Empty destination-only leaves hold nothing stale: the copy goes on.
	pgtest.Exec(t, dst, "DELETE FROM events_default")
	mustRun(t, 0, "copy", "--source", src, "--dest", dst, "--table", "events")
	mustRun(t, 0, "verify", "--source", src, "--dest", dst, "--table", "events")
	if got := pgtest.QueryString(t, dst, "SELECT count(*) FROM events"); got != "100" {
		t.Errorf("destination parent holds %s rows, want 100", got)
	}

	// A row that reaches an extra leaf after the plan is still found.
	pgtest.Exec(t, dst, "INSERT INTO events VALUES (7, 'ap')")
	out = mustRun(t, 4, "verify", "--source", src, "--dest", dst, "--table", "events", "--lock")
	if !strings.Contains(out, `mismatch "public"."events_ap" (destination only) rows=0`) || !strings.Contains(out, "holds 1 row(s)") {
		t.Errorf("verify after a row reached an extra leaf:\n%s", out)
	}
	// --exclude matches a destination-only leaf by its name.
	mustRun(t, 0, "verify", "--source", src, "--dest", dst, "--table", "events", "--exclude", `^public\.events_ap$`)
}
