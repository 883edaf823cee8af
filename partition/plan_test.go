package partition

import (
	"errors"
	"strings"
	"testing"
)

func col(name, typ string, oid uint32, typmod int32) Column {
	return Column{Name: name, Type: typ, TypeOID: oid, TypMod: typmod, BuiltIn: oid < 16384}
}

func TestMatchColumns(t *testing.T) {
	src := Table{Schema: "public", Name: "s", Kind: "r"}
	dst := Table{Schema: "public", Name: "d", Kind: "r"}
	id := col("id", "integer", 23, -1)
	note := col("note", "text", 25, -1)
	gen := Column{Name: "g", Type: "integer", TypeOID: 23, TypMod: -1, BuiltIn: true, Generated: true}
	enum := Column{Name: "e", Type: "public.mood", TypeOID: 16400, TypMod: -1}
	cases := []struct {
		name      string
		s, d      []Column
		sameMajor bool
		cols      string
		binary    bool
		skipped   string
		whyHas    string
		errHas    string
	}{
		{name: "identical", s: []Column{id, note}, d: []Column{note, id}, sameMajor: true, cols: "id,note", binary: true},
		{name: "other major", s: []Column{id}, d: []Column{id}, cols: "id", whyHas: "major versions"},
		{name: "user type by name", s: []Column{id, enum}, d: []Column{{Name: "e", Type: "public.mood", TypeOID: 17000, TypMod: -1}, id}, sameMajor: true, cols: "id,e", whyHas: "not built in"},
		{name: "generated skipped both ways", s: []Column{id, gen, note}, d: []Column{id, {Name: "note", Type: "text", TypeOID: 25, TypMod: -1, Generated: true}, gen},
			sameMajor: true, cols: "id", binary: true, skipped: "g (generated on the source),note (generated on the destination)"},
		{name: "generated on the source only", s: []Column{id, gen}, d: []Column{id, col("g", "integer", 23, -1)}, errHas: `column "g" is generated on the source`},
		{name: "composite attributes differ", s: []Column{id, {Name: "p", Type: "public.pair", TypeOID: 16400, TypMod: -1, Composite: "public.pair (a integer, b integer)"}},
			d: []Column{id, {Name: "p", Type: "public.pair", TypeOID: 17000, TypMod: -1, Composite: "public.pair (b integer, a integer)"}}, errHas: "whose composite attributes or range subtype differ"},
		{name: "regclass as text", s: []Column{id, col("c", "regclass", 2205, -1)}, d: []Column{id, col("c", "regclass", 2205, -1)}, sameMajor: true, cols: "id,c", whyHas: `column "c" has type regclass, whose values are object OIDs`},
		{name: "int widens", s: []Column{id}, d: []Column{col("id", "bigint", 20, -1)}, sameMajor: true, cols: "id", whyHas: "integer on the source and bigint"},
		{name: "varchar widens", s: []Column{col("v", "character varying(10)", 1043, 14)}, d: []Column{col("v", "character varying(20)", 1043, 24)}, sameMajor: true, cols: "v"},
		{name: "varchar narrows", s: []Column{col("v", "character varying(20)", 1043, 24)}, d: []Column{col("v", "character varying(10)", 1043, 14)}, errHas: `column "v" is character varying(20) on the source but character varying(10)`},
		{name: "numeric scale change", s: []Column{col("n", "numeric(10,2)", 1700, 10<<16|2+4)}, d: []Column{col("n", "numeric(12,4)", 1700, 12<<16|4+4)}, errHas: "cannot be copied safely"},
		{name: "numeric precision widens", s: []Column{col("n", "numeric(10,2)", 1700, 10<<16|2+4)}, d: []Column{col("n", "numeric(12,2)", 1700, 12<<16|2+4)}, cols: "n"},
		{name: "bigint narrows", s: []Column{col("id", "bigint", 20, -1)}, d: []Column{id}, errHas: "bigint on the source but integer"},
		{name: "timestamptz to timestamp", s: []Column{col("t", "timestamp with time zone", 1184, -1)}, d: []Column{col("t", "timestamp without time zone", 1114, -1)}, errHas: "cannot be copied safely"},
		{name: "missing on destination", s: []Column{id, note}, d: []Column{id}, errHas: `has no column "note"`},
		{name: "required destination column", s: []Column{id}, d: []Column{id, {Name: "x", Type: "integer", TypeOID: 23, NotNull: true}}, errHas: `column "x" is NOT NULL without a default`},
		{name: "extra nullable destination column", s: []Column{id}, d: []Column{id, note}, sameMajor: true, cols: "id", binary: true},
		{name: "nothing to copy", s: []Column{gen}, d: []Column{gen}, errHas: "no columns to copy"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cols, skipped, binary, why, err := MatchColumns(src, dst, c.s, c.d, c.sameMajor)
			if c.errHas != "" {
				var se *SchemaError
				if !errors.As(err, &se) || !strings.Contains(err.Error(), c.errHas) {
					t.Fatalf("err = %v, want a SchemaError with %q", err, c.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(cols, ","); got != c.cols {
				t.Errorf("cols = %s, want %s", got, c.cols)
			}
			if got := strings.Join(skipped, ","); got != c.skipped {
				t.Errorf("skipped = %s, want %s", got, c.skipped)
			}
			if binary != c.binary {
				t.Errorf("binary = %v (%s), want %v", binary, why, c.binary)
			}
			if !strings.Contains(why, c.whyHas) {
				t.Errorf("why = %q, want %q in it", why, c.whyHas)
			}
		})
	}
}
