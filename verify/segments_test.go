package verify

import (
	"fmt"
	"slices"
	"testing"
)

// The SQL that sums a level: neighbouring segments merge into one range,
// the CASE tree searches the upper bounds, bounds are parameters (or, for
// COPY, literals) cast to the key types, and text keys compare COLLATE "C".
func TestLevelSQLBuilders(t *testing.T) {
	one := Spec{Key: []KeyColumn{{Name: "id", Type: "bigint"}}}
	two := Spec{Key: []KeyColumn{{Name: "a", Type: "text", Collatable: true}, {Name: "b", Type: "integer"}}}
	b := func(v ...string) []string { return v }
	cases := []struct {
		name     string
		spec     Spec
		segs     []segment
		literals bool
		spans    string
		tree     string
		args     []any
	}{
		{
			name:  "whole range in three",
			spec:  one,
			segs:  []segment{{hi: b("10")}, {lo: b("10"), hi: b("20")}, {lo: b("20")}},
			spans: `(("id") IS NOT NULL)`,
			tree:  `CASE WHEN ("id") <= ($1::bigint) THEN 0 ELSE CASE WHEN ("id") <= ($2::bigint) THEN 1 ELSE 2 END END`,
			args:  []any{"10", "20"},
		},
		{
			name: "two parents apart",
			spec: one,
			segs: []segment{{lo: b("10"), hi: b("15")}, {lo: b("15"), hi: b("20")}, {lo: b("50"), hi: b("60")}},
			spans: `(("id") > ($1::bigint) AND ("id") <= ($2::bigint)) OR ` +
				`(("id") > ($3::bigint) AND ("id") <= ($4::bigint))`,
			tree: `CASE WHEN ("id") <= ($5::bigint) THEN 0 ELSE CASE WHEN ("id") <= ($6::bigint) THEN 1 ELSE 2 END END`,
			args: []any{"10", "20", "50", "60", "15", "20"},
		},
		{
			name:  "composite key",
			spec:  two,
			segs:  []segment{{hi: b("m", "1")}, {lo: b("m", "1")}},
			spans: `(("a" COLLATE "C", "b") IS NOT NULL)`,
			tree:  `CASE WHEN ("a" COLLATE "C", "b") <= ($1::text COLLATE "C", $2::integer) THEN 0 ELSE 1 END`,
			args:  []any{"m", "1"},
		},
		{
			name:     "literals for COPY",
			spec:     two,
			segs:     []segment{{lo: b(`it's`, "1"), hi: b(`back\slash`, "2")}},
			literals: true,
			spans:    `(("a" COLLATE "C", "b") > ('it''s'::text COLLATE "C", '1'::integer) AND ("a" COLLATE "C", "b") <= (E'back\\slash'::text COLLATE "C", '2'::integer))`,
			tree:     `0`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bd := &binder{key: c.spec.Key, literals: c.literals}
			spans := c.spec.spansSQL(bd, c.segs)
			tree := c.spec.caseTree(bd, c.segs, 0, len(c.segs))
			if spans != c.spans || tree != c.tree || fmt.Sprint(bd.args) != fmt.Sprint(c.args) {
				t.Errorf("got\n%s\n%s\n%v\nwant\n%s\n%s\n%v", spans, tree, bd.args, c.spans, c.tree, c.args)
			}
		})
	}
}

// A row's lanes: the two halves of a hex digest, or the bigint hash alone.
func TestRowHashLanes(t *testing.T) {
	a, b := textHash("md5", []string{"x"}).lanes("h")
	if a != "('x' || pg_catalog.substr(h, 1, 16))::bit(64)::bigint" || b != "('x' || pg_catalog.substr(h, 17, 16))::bit(64)::bigint" {
		t.Errorf("md5 lanes %s, %s", a, b)
	}
	if a, b := (serverHash{}).lanes("h"); a != "h" || b != "0" {
		t.Errorf("bigint lanes %s, %s", a, b)
	}
	if got := minus(plus(Sum{Rows: 2, A: 1, B: ^uint64(0)}, Sum{Rows: 1, A: ^uint64(0), B: 5}), Sum{Rows: 1, A: ^uint64(0), B: 5}); !slices.Equal(
		[]uint64{uint64(got.Rows), got.A, got.B}, []uint64{2, 1, ^uint64(0)}) {
		t.Errorf("plus then minus: %+v", got)
	}
}
