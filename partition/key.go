package partition

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"lockstep/verify"
)

// index is one unique index of a table, as Key weighs it.
type index struct {
	primary, plain bool // plain: no predicate, no expressions
	names, types   []string
	collatable     []bool
	notNull        bool
	typeOIDs       []uint32
}

// indexesOf lists each table's valid unique indexes, primary key first.
func indexesOf(ctx context.Context, q Querier, ts []Table) (map[uint32][]index, error) {
	rows, err := q.Query(ctx, `
		SELECT i.indrelid, i.indisprimary, i.indpred IS NULL AND i.indexprs IS NULL,
		       array_agg(a.attname ORDER BY k.ord), array_agg(pg_catalog.format_type(a.atttypid, a.atttypmod) ORDER BY k.ord),
		       array_agg(ty.typcollation <> 0 ORDER BY k.ord), bool_and(a.attnotnull),
		       array_agg(a.atttypid ORDER BY k.ord)
		FROM unnest($1::oid[]) AS u(oid)
		JOIN pg_catalog.pg_index i ON i.indrelid = u.oid
		CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
		WHERE i.indisunique AND i.indisvalid AND k.ord <= i.indnkeyatts
		GROUP BY i.indrelid, i.indexrelid, i.indisprimary, i.indpred, i.indexprs
		ORDER BY i.indrelid, i.indisprimary DESC, i.indexrelid`, oidsOf(ts))
	if err != nil {
		return nil, err
	}
	out := map[uint32][]index{}
	var rel uint32
	var x index
	var notNull *bool
	_, err = pgx.ForEachRow(rows, []any{&rel, &x.primary, &x.plain, &x.names, &x.types, &x.collatable, &notNull, &x.typeOIDs}, func() error {
		x.notNull = notNull != nil && *notNull
		out[rel] = append(out[rel], x)
		x = index{}
		return nil
	})
	return out, err
}

// Key finds the key that pinpoints rows of t among its unique indexes: the
// given columns, which must form a unique index without predicate or
// expressions and be NOT NULL, or else the primary key. It returns no key
// and why when there is none.
func Key(t Table, idx []index, want []string) ([]verify.KeyColumn, string, error) {
	build := func(x index) []verify.KeyColumn {
		k := make([]verify.KeyColumn, len(x.names))
		for i := range k {
			k[i] = verify.KeyColumn{Name: x.names[i], Type: x.types[i], Collatable: x.collatable[i]}
		}
		return k
	}
	// A key of object OIDs (regclass and the like) sorts by OID, which
	// differs between servers: bisecting it would cut the sides apart.
	byOID := func(x index) string {
		for i, o := range x.typeOIDs {
			if namesByOID(Column{TypeOID: o}) {
				return fmt.Sprintf("key column %q is %s, which sorts by OID and the servers' OIDs differ", x.names[i], x.types[i])
			}
		}
		return ""
	}
	if len(want) == 0 {
		if len(idx) > 0 && idx[0].primary {
			if why := byOID(idx[0]); why != "" {
				return nil, fmt.Sprintf("%s: the primary key cannot pinpoint rows: %s; name another unique not-null key with --key", t, why), nil
			}
			return build(idx[0]), "", nil
		}
		return nil, fmt.Sprintf("%s has no primary key; name a unique not-null key with --key", t), nil
	}
	for _, x := range idx {
		if x.plain && x.notNull && slices.Equal(sortedCopy(x.names), sortedCopy(want)) {
			if why := byOID(x); why != "" {
				return nil, "", &SchemaError{Side: "source", Table: t.String(), Why: "--key " + strings.Join(want, ",") + " cannot pinpoint rows: " + why}
			}
			// Keep the order the user gave.
			byName := map[string]verify.KeyColumn{}
			for _, c := range build(x) {
				byName[c.Name] = c
			}
			k := make([]verify.KeyColumn, len(want))
			for i, n := range want {
				k[i] = byName[n]
			}
			return k, "", nil
		}
	}
	return nil, "", &SchemaError{Side: "source", Table: t.String(),
		Why: fmt.Sprintf("--key %s is not a unique, not-null key (a unique index on exactly those columns, without predicate or expressions, all NOT NULL)", strings.Join(want, ","))}
}

// boundTypes makes the diff cast key bounds, on both sides, to the
// destination's column types. Bounds come from either side's rows, and only
// the destination's types hold every key of both: the plan allows a
// destination type only when it holds every source value exactly
// (integer to bigint, varchar(n) to text), while a cast to the source's type
// would fail on a destination bigint beyond integer range or truncate a
// longer destination text to varchar(n). (Where a source integer meets a
// destination numeric, the source cannot use its index for these
// comparisons; that costs time, not exactness.)
func boundTypes(key []verify.KeyColumn, dst []Column) []verify.KeyColumn {
	out := slices.Clone(key)
	for i, k := range out {
		for _, c := range dst {
			if c.Name == k.Name {
				out[i].Type = c.Type
			}
		}
	}
	return out
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
