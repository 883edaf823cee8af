package copy_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"lockstep/copy"
	"lockstep/internal/pgtest"
	"lockstep/verify"
)

func check(t *testing.T, o copy.Options) copy.Result {
	t.Helper()
	ctx := testCtx(t)
	p, err := copy.MakePlan(ctx, o)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	rep, _ := p.Verify(ctx)
	if rep == nil || len(rep.Units) != 1 {
		t.Fatalf("verify report: %+v", rep)
	}
	return rep.Units[0]
}

// Both directions for every type family: identical data checks equal (in
// binary and in text), and a change in any one column of one row is found
// by the checksum and named by the diff.
func TestVerifyFindsAChangeInAnyColumn(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"binary", "text"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			src, dst := pgtest.Get(t).NewDBs(t)
			schema := builtinSchema
			if format == "text" {
				schema = "CREATE TYPE mood AS ENUM ('sad', 'ok'); CREATE TYPE pair AS (a int, b text); CREATE DOMAIN pos AS int CHECK (VALUE > 0);" +
					strings.Replace(builtinSchema, "oidc oid\n", "oidc oid, mood mood, pr pair, ps pos, moods mood[]\n", 1)
			}
			mustExec(t, src, schema+builtinRows)
			if format == "text" {
				mustExec(t, src, `UPDATE types SET mood = 'ok', pr = '(1,"a b")', ps = 5, moods = '{sad,NULL}' WHERE id = 1;
					UPDATE types SET mood = 'sad', pr = '(2,)', ps = 7, moods = '{}' WHERE id = 2;`)
			}
			mustExec(t, dst, "CREATE TYPE shift AS ENUM ('x');"+schema)
			o := opts(src, dst, "types")
			o.Diff = true
			mustCopy(t, o)
			if r := check(t, o); r.Status != copy.StatusOK || r.Format != format {
				t.Fatalf("identical data: %s (%s) %v", r.Status, r.Format, r.Err)
			}
			cols := strings.Split(builtinCols, ",")
			if format == "text" {
				cols = append(cols, "mood", "pr", "ps", "moods")
			}
			for _, c := range cols {
				col := strings.TrimSpace(strings.Split(c, "::")[0])
				if col == "id" {
					continue
				}
				mustExec(t, dst, "UPDATE types SET "+col+" = (SELECT "+col+" FROM types WHERE id = 2) WHERE id = 1")
				r := check(t, o)
				name := strings.Trim(col, `"`)
				if r.Status != copy.StatusMismatch || r.Diff == nil || r.Diff.ChangedCount != 1 ||
					!slices.Equal(r.Diff.Changed[0].Columns, []string{name}) {
					t.Errorf("%s changed: status %s, diff %+v", col, r.Status, r.Diff)
				}
				mustCopy(t, o)
			}
		})
	}
}

// Where md5 is missing (FIPS builds) the diff hashes rows with sha256; the
// SQL of that path works and finds the same rows.
func TestBisectWithSHA256(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := "CREATE TABLE k (id int PRIMARY KEY, v text);"
	mustExec(t, src, schema+"INSERT INTO k SELECT g, 'v' || g FROM generate_series(1, 5000) g")
	mustExec(t, dst, schema+"INSERT INTO k SELECT g, 'v' || g FROM generate_series(1, 5000) g; UPDATE k SET v = 'x' WHERE id = 77; DELETE FROM k WHERE id = 4000")
	ctx := context.Background()
	spec := verify.Spec{Unit: "k", Columns: []string{"id", "v"}, Key: []verify.KeyColumn{{Name: "id", Type: "integer"}},
		LeafRows: 50, HashFunc: "sha256", SourceRows: 5000, DestRows: 4999}
	d, err := verify.Bisect(ctx, verify.Side{Q: connect(t, src), Table: "ONLY k"}, verify.Side{Q: connect(t, dst), Table: "ONLY k"}, spec)
	if err != nil {
		t.Fatal(err)
	}
	if d.ChangedCount != 1 || d.Changed[0].Key[0] != "77" || d.MissingCount != 1 || d.Missing[0][0] != "4000" || d.ExtraCount != 0 {
		t.Fatalf("diff: %+v", d)
	}
	if d.RowsFetched > 300 {
		t.Errorf("fetched %d rows of 10000", d.RowsFetched)
	}
}
