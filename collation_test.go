package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"lockstep/internal/pgtest"
)

// icuDB makes a database whose default collation is ICU's en-US, which
// orders text unlike "C": case, accents and punctuation weigh differently.
func icuDB(t *testing.T, s *pgtest.Server) string {
	t.Helper()
	dsn, err := s.NewDBWith(t, "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' TEMPLATE template0")
	if err != nil {
		if strings.Contains(err.Error(), "ICU is not supported") {
			t.Skipf("%s was built without ICU: %v", s, err)
		}
		t.Fatal(err)
	}
	return dsn
}

// The diff bisects a text key the same way on a server whose default
// collation is en-US and one whose collation is C (it compares keys
// COLLATE "C" on both), so it finds exactly the differences, spread over
// the key range, with segments small enough to recurse.
func TestDiffAcrossCollations(t *testing.T) {
	t.Parallel()
	env := pgtest.Get(t)
	for _, icuSide := range []string{"source", "destination"} {
		t.Run("icu-"+icuSide, func(t *testing.T) {
			t.Parallel()
			var src, dst string
			if icuSide == "source" {
				src, dst = icuDB(t, env.Source), env.Dest.NewDB(t)
			} else {
				src, dst = env.Source.NewDB(t), icuDB(t, env.Dest)
			}
			// Keys that interleave differently in C (upper case, then _,
			// then lower case, then anything non-ASCII) and in en-US.
			schema := `CREATE TABLE k (k text PRIMARY KEY, v int);
				INSERT INTO k SELECT (ARRAY['a','B','é','E','_','-','z','Ä','.','c','ß','Z'])[1 + g % 12]
				                  || (ARRAY['x','Y','ø','',' ','O'])[1 + (g / 12) % 6] || g, g
				FROM generate_series(1, 6000) g;`
			pgtest.Exec(t, src, schema)
			pgtest.Exec(t, dst, schema)
			if got := pgtest.QueryString(t, src, `SELECT (SELECT array_agg(k ORDER BY k) FROM k) = (SELECT array_agg(k ORDER BY k COLLATE "C") FROM k)`); got != "f" &&
				pgtest.QueryString(t, dst, `SELECT (SELECT array_agg(k ORDER BY k) FROM k) = (SELECT array_agg(k ORDER BY k COLLATE "C") FROM k)`) != "f" {
				t.Fatal("neither side orders the keys unlike C: the test would not exercise COLLATE \"C\"")
			}
			pgtest.Exec(t, dst, `
				DELETE FROM k WHERE v IN (12, 1002, 1821, 4451, 5997);
				INSERT INTO k VALUES ('Ab-extra', 0), ('éclair', 0), ('_zz', 0), ('ZZ top', 0);
				UPDATE k SET v = -v WHERE v IN (7, 2500, 3333, 5000);`)
			wantMissing := strings.Split(pgtest.QueryString(t, src, `SELECT string_agg(k, '|' ORDER BY k COLLATE "C") FROM k WHERE v IN (12, 1002, 1821, 4451, 5997)`), "|")
			wantChanged := strings.Split(pgtest.QueryString(t, src, `SELECT string_agg(k, '|' ORDER BY k COLLATE "C") FROM k WHERE v IN (7, 2500, 3333, 5000)`), "|")
			wantExtra := []string{"Ab-extra", "ZZ top", "_zz", "éclair"}

			report := filepath.Join(t.TempDir(), "report.json")
			// Bisecting by inconsistent orders does not converge: bound it.
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			code, out, errOut := lockstep(t, ctx, "verify", "--source", src, "--dest", dst, "--table", "k", "--diff", "--diff-rows", "50", "--report", report)
			if code != 4 {
				t.Fatalf("exit %d, want 4\n%s%s", code, out, errOut)
			}
			var rep jsonReport
			b, _ := os.ReadFile(report)
			if err := json.Unmarshal(b, &rep); err != nil || rep.Run == nil || len(rep.Run.Units) != 1 || rep.Run.Units[0].Diff == nil {
				t.Fatalf("report: %v\n%s", err, b)
			}
			d := rep.Run.Units[0].Diff
			keys := func(kk [][]string) []string {
				var out []string
				for _, k := range kk {
					out = append(out, k[0])
				}
				slices.Sort(out)
				return out
			}
			var changed [][]string
			for _, c := range d.Changed {
				changed = append(changed, c.Key)
			}
			slices.Sort(wantMissing)
			slices.Sort(wantChanged)
			got := fmt.Sprintf("missing %q extra %q changed %q", keys(d.Missing), keys(d.Extra), keys(changed))
			want := fmt.Sprintf("missing %q extra %q changed %q", wantMissing, wantExtra, wantChanged)
			if got != want || d.MissingCount != 5 || d.ExtraCount != 4 || d.ChangedCount != 4 {
				t.Errorf("diff found\n%s\nwant\n%s\n%s", got, want, out)
			}
			if d.Depth < 2 {
				t.Errorf("depth %d: the bisection did not recurse", d.Depth)
			}
		})
	}
}
