package partition

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
)

// Sequences that feed the copied tables.
//
// A sequence feeds a column when the column owns it (serial and bigserial:
// OWNED BY; identity columns, ALWAYS or BY DEFAULT) or when the column's
// DEFAULT names it (nextval('seq'), whose argument is a regclass literal, so
// the catalog records the dependency; several tables may share one). A leaf
// partition is fed by the sequences of its own columns and of the same
// columns of its partitioned ancestors, since rows inserted through the
// parent take the parent's default or identity. After a copy, the
// destination's sequence must not hand out a value the copy brought; so the
// copy sets it from the source's sequence of the same name, and verify
// checks it is ahead of the column's largest value.

// SequenceMode says which sequences a plan reads.
type SequenceMode int

const (
	// SequencesNone reads none.
	SequencesNone SequenceMode = iota
	// SequencesFromSource reads the sequences that feed each unit's copied
	// columns on the source and matches each by name on the destination,
	// where it must exist (copy, sync-sequences); the destination's own
	// feeding sequences are listed too.
	SequencesFromSource
	// SequencesOnDest reads the sequences that feed each unit's copied
	// columns on the destination (verify).
	SequencesOnDest
)

// Sequence is one sequence that feeds a unit's copied columns.
type Sequence struct {
	// Source is the source's sequence of the same name; OID 0 when the
	// source has no sequence of that name feeding the unit (then nothing
	// sets it: see README).
	Source Table
	Dest   Table
	// Columns are the unit's copied columns it feeds on the destination,
	// with their types; empty when only the source's columns use it.
	Columns []SequenceColumn
}

// SequenceColumn is a copied column a sequence feeds on the destination.
type SequenceColumn struct {
	Name string
	// Integer: the column holds integers (smallint, integer, bigint,
	// numeric, or a domain over one), so its largest value can be compared
	// with the sequence's.
	Integer bool
}

// String names the sequence (the destination's) with the columns it feeds.
func (s Sequence) String() string {
	if len(s.Columns) == 0 {
		return s.Dest.String()
	}
	names := make([]string, len(s.Columns))
	for i, c := range s.Columns {
		names[i] = c.Name
	}
	return fmt.Sprintf("%s (%s)", s.Dest, quoteList(names))
}

// feed is one row of feedingSequences: sequence seq feeds column col of
// the unit whose table is unit.
type feed struct {
	unit         uint32
	col          string
	seq          Table
	read, update bool // the current role's privileges on the sequence
}

// feedingSequences lists, for each table, the sequences that feed its
// columns: owned by a column (serial, identity) or named in a column's
// DEFAULT, on the table or on a partitioned ancestor. One query.
func feedingSequences(ctx context.Context, q Querier, ts []Table) (map[uint32][]feed, error) {
	rows, err := q.Query(ctx, `
		WITH rels AS (
		  SELECT u.oid AS unit, u.oid AS rel FROM unnest($1::oid[]) AS u(oid)
		  UNION
		  SELECT u.oid, a.relid FROM unnest($1::oid[]) AS u(oid), pg_catalog.pg_partition_ancestors(u.oid::pg_catalog.regclass) AS a(relid)
		), feeds AS (
		  SELECT r.unit, r.rel, d.refobjsubid AS attnum, d.objid AS seq
		  FROM rels r JOIN pg_catalog.pg_depend d
		    ON d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = r.rel AND d.refobjsubid > 0
		   AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i')
		  UNION
		  SELECT r.unit, r.rel, ad.adnum, d.refobjid
		  FROM rels r JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = r.rel
		  JOIN pg_catalog.pg_depend d
		    ON d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid = ad.oid
		   AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
		)
		SELECT DISTINCT f.unit, a.attname::text, s.oid, n.nspname::text, s.relname::text,
		       pg_catalog.has_sequence_privilege(s.oid, 'SELECT'), pg_catalog.has_sequence_privilege(s.oid, 'UPDATE')
		FROM feeds f
		JOIN pg_catalog.pg_attribute a ON a.attrelid = f.rel AND a.attnum = f.attnum AND NOT a.attisdropped
		JOIN pg_catalog.pg_class s ON s.oid = f.seq AND s.relkind = 'S'
		JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace
		ORDER BY 1, 4, 5, 2`, oidsOf(ts))
	if err != nil {
		return nil, err
	}
	out := map[uint32][]feed{}
	var f feed
	f.seq.Kind = "S"
	_, err = pgx.ForEachRow(rows, []any{&f.unit, &f.col, &f.seq.OID, &f.seq.Schema, &f.seq.Name, &f.read, &f.update}, func() error {
		out[f.unit] = append(out[f.unit], f)
		return nil
	})
	return out, err
}

// lookupSequences finds relations by schema and name, in one query: for
// each, the relation (OID 0 when there is none) and the current role's
// privileges on it if it is a sequence.
func lookupSequences(ctx context.Context, q Querier, names []Table) (map[string]feed, error) {
	schemas, rels := make([]string, len(names)), make([]string, len(names))
	for i, t := range names {
		schemas[i], rels[i] = t.Schema, t.Name
	}
	rows, err := q.Query(ctx, `
		SELECT x.nsp, x.rel, COALESCE(c.oid, 0), COALESCE(c.relkind::text, ''),
		       CASE WHEN c.relkind = 'S' THEN pg_catalog.has_sequence_privilege(c.oid, 'SELECT') END,
		       CASE WHEN c.relkind = 'S' THEN pg_catalog.has_sequence_privilege(c.oid, 'UPDATE') END
		FROM unnest($1::text[], $2::text[]) AS x(nsp, rel)
		LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = x.nsp
		LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = x.rel`, schemas, rels)
	if err != nil {
		return nil, err
	}
	out := make(map[string]feed, len(names))
	var f feed
	var read, update *bool
	_, err = pgx.ForEachRow(rows, []any{&f.seq.Schema, &f.seq.Name, &f.seq.OID, &f.seq.Kind, &read, &update}, func() error {
		f.read, f.update = read != nil && *read, update != nil && *update
		out[f.seq.String()] = f
		return nil
	})
	return out, err
}

// sequenceCatalogs reads the sequences feeding the units on each side (for
// SequencesOnDest, the destination only), and looks up on the destination
// the source's sequences that feed no destination unit by that name: at
// most three queries, whatever the number of units.
func sequenceCatalogs(ctx context.Context, src, dst Querier, all []tablePair, sc, dc *catalog, mode SequenceMode) error {
	var ss, ds []Table
	for _, p := range all {
		if !p.destOnly {
			ss, ds = append(ss, p.s), append(ds, p.d)
		}
	}
	var g errgroup.Group
	if mode == SequencesFromSource {
		g.Go(func() (err error) {
			sc.sequences, err = feedingSequences(ctx, src, ss)
			return wrapSide("source", "sequences", err)
		})
	}
	g.Go(func() (err error) {
		dc.sequences, err = feedingSequences(ctx, dst, ds)
		return wrapSide("destination", "sequences", err)
	})
	if err := g.Wait(); err != nil {
		return err
	}
	dc.sequenceByName = map[string]feed{}
	for _, fs := range dc.sequences {
		for _, f := range fs {
			dc.sequenceByName[f.seq.String()] = f
		}
	}
	var unknown []Table
	seen := map[string]bool{}
	for _, fs := range sc.sequences {
		for _, f := range fs {
			if n := f.seq.String(); dc.sequenceByName[n].seq.OID == 0 && !seen[n] {
				seen[n] = true
				unknown = append(unknown, f.seq)
			}
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	found, err := lookupSequences(ctx, dst, unknown)
	if err != nil {
		return wrapSide("destination", "look up sequences", err)
	}
	for n, f := range found {
		dc.sequenceByName[n] = f
	}
	return nil
}

// planSequences decides a unit's sequences: every sequence feeding a copied
// column on the source, matched by name on the destination (where it must
// exist, and the role must be able to read and set it), and every one
// feeding a copied column on the destination.
func planSequences(u *Unit, sc, dc *catalog, o Options) error {
	copied := func(col string) bool { return slices.Contains(u.Columns, col) }
	var out []Sequence
	at := func(dest Table) *Sequence {
		for i := range out {
			if out[i].Dest.OID == dest.OID {
				return &out[i]
			}
		}
		out = append(out, Sequence{Dest: dest})
		return &out[len(out)-1]
	}
	for _, f := range sc.sequences[u.Source.OID] {
		if !copied(f.col) {
			continue
		}
		if !f.read {
			return &SchemaError{Side: "source", Table: f.seq.String(),
				Why: fmt.Sprintf("role %s lacks the SELECT privilege on this sequence, which feeds column %s of %s (lockstep reads its value; or --sequences none)",
					sc.role, quoteList([]string{f.col}), u.Source)}
		}
		d := dc.sequenceByName[f.seq.String()]
		switch {
		case d.seq.OID == 0:
			return &SchemaError{Side: "destination", Table: f.seq.String(),
				Why: fmt.Sprintf("sequence does not exist (on the source it feeds column %s of %s); create it, or use --sequences none",
					quoteList([]string{f.col}), u.Source)}
		case d.seq.Kind != "S":
			return &SchemaError{Side: "destination", Table: f.seq.String(),
				Why: fmt.Sprintf("is a %s, not a sequence (on the source a sequence of that name feeds column %s of %s)",
					kindName(d.seq.Kind), quoteList([]string{f.col}), u.Source)}
		case !d.read || !d.update:
			return &SchemaError{Side: "destination", Table: f.seq.String(),
				Why: fmt.Sprintf("role %s lacks the SELECT and UPDATE privileges on this sequence, which lockstep sets (setval) after copying %s; grant them, or use --sequences none",
					dc.role, u.Dest)}
		}
		s := at(d.seq)
		s.Source = f.seq
	}
	for _, f := range dc.sequences[u.Dest.OID] {
		if !copied(f.col) {
			continue
		}
		if o.Sequences == SequencesOnDest && !f.read {
			return &SchemaError{Side: "destination", Table: f.seq.String(),
				Why: fmt.Sprintf("role %s lacks the SELECT privilege on this sequence, which feeds column %s of %s (verify compares it with the column); grant it, or use --sequences none",
					dc.role, quoteList([]string{f.col}), u.Dest)}
		}
		s := at(f.seq)
		s.Columns = append(s.Columns, SequenceColumn{Name: f.col, Integer: integerColumn(dc.columns[u.Dest.OID], f.col)})
	}
	slices.SortFunc(out, func(a, b Sequence) int { return strings.Compare(a.Dest.String(), b.Dest.String()) })
	u.Sequences = out
	return nil
}

// integerColumn tells whether column name holds integers: its type, or the
// built-in base type of its domain, is smallint, integer, bigint or numeric.
func integerColumn(cols []Column, name string) bool {
	for _, c := range cols {
		if c.Name == name {
			switch c.TypeOID {
			case oidInt2, oidInt4, oidInt8, oidNumeric:
				return true
			}
			base, domain := strings.CutPrefix(c.Wire, "domain over ")
			return domain && (base == "smallint" || base == "integer" || base == "bigint" || base == "numeric" || strings.HasPrefix(base, "numeric("))
		}
	}
	return false
}
