package partition

import (
	"context"
	"fmt"
	"strings"
)

// Unit is one table (or leaf partition) to copy, with everything decided
// before anything is locked.
type Unit struct {
	Source, Dest Table
	Columns      []string // copied columns, by name, in source order
	Skipped      []string // columns left out, with the reason
	Binary       bool
	FormatWhy    string // why binary or text
	Freeze       bool   // COPY FREEZE is possible after TRUNCATE
}

// Name names the unit in messages: the source table, and the destination
// when it is a different table.
func (u Unit) Name() string {
	if u.Source.String() == u.Dest.String() {
		return u.Source.String()
	}
	return u.Source.String() + " -> " + u.Dest.String()
}

// Format is "binary" or "text".
func (u Unit) Format() string {
	if u.Binary {
		return "binary"
	}
	return "text"
}

// SchemaError says the two sides' tables cannot be copied one into the
// other (a missing column, an unsafe type change, a blocking foreign key).
// Not retryable: the schema has to change first.
type SchemaError struct {
	Side  string
	Table string
	Why   string
}

func (e *SchemaError) Error() string { return fmt.Sprintf("%s: %s: %s", e.Side, e.Table, e.Why) }

// Well-known built-in type OIDs; stable across PostgreSQL versions.
const (
	oidInt8    = 20
	oidInt2    = 21
	oidInt4    = 23
	oidText    = 25
	oidVarchar = 1043
	oidNumeric = 1700
)

// widens reports whether every value of src's type is stored by dst's type
// with the same text form, so a text-format copy and its checksum are exact.
func widens(src, dst Column) bool {
	s, d := src.TypeOID, dst.TypeOID
	rank := map[uint32]int{oidInt2: 1, oidInt4: 2, oidInt8: 3}
	switch {
	case rank[s] > 0 && rank[d] > rank[s]:
		return true
	case rank[s] > 0 && d == oidNumeric:
		return dst.TypMod == -1
	case s == oidNumeric && d == oidNumeric:
		if dst.TypMod == -1 {
			return true
		}
		if src.TypMod == -1 {
			return false
		}
		sp, ss := (src.TypMod-4)>>16, (src.TypMod-4)&0xffff
		dp, ds := (dst.TypMod-4)>>16, (dst.TypMod-4)&0xffff
		return ss == ds && dp >= sp
	case s == oidVarchar && d == oidVarchar:
		return dst.TypMod == -1 || (src.TypMod != -1 && dst.TypMod >= src.TypMod)
	case s == oidVarchar && d == oidText:
		return true
	case s == oidText && d == oidVarchar:
		return dst.TypMod == -1
	}
	return false
}

// MatchColumns matches the source's columns to the destination's by name.
// Generated columns are never copied (the destination computes its own);
// every other source column must exist on the destination with the same
// type or a type that widens it exactly; destination columns the source
// lacks must be nullable or have a default. Binary format is chosen only
// when every copied type is identical and built in and both servers run the
// same major version; otherwise text, and why says which column decided.
func MatchColumns(unit Table, dest Table, src, dst []Column, sameMajor bool) (cols, skipped []string, binary bool, why string, err error) {
	byName := make(map[string]Column, len(dst))
	for _, c := range dst {
		byName[c.Name] = c
	}
	binary, why = sameMajor, "every column type is identical and built in"
	if !sameMajor {
		why = "the servers run different major versions"
	}
	seen := make(map[string]bool, len(src))
	var missing, unsafe []string
	for _, s := range src {
		seen[s.Name] = true
		d, ok := byName[s.Name]
		switch {
		case s.Generated:
			skipped = append(skipped, s.Name+" (generated on the source)")
			continue
		case !ok:
			missing = append(missing, s.Name)
			continue
		case d.Generated:
			skipped = append(skipped, s.Name+" (generated on the destination)")
			continue
		}
		cols = append(cols, s.Name)
		switch {
		case s.Type == d.Type && s.BuiltIn && d.BuiltIn:
		case s.Type == d.Type:
			if binary {
				binary, why = false, fmt.Sprintf("column %s has type %s, which is not built in", quoteList([]string{s.Name}), s.Type)
			}
		case widens(s, d):
			if binary {
				binary, why = false, fmt.Sprintf("column %s is %s on the source and %s on the destination", quoteList([]string{s.Name}), s.Type, d.Type)
			}
		default:
			unsafe = append(unsafe, fmt.Sprintf("column %s is %s on the source but %s on the destination", quoteList([]string{s.Name}), s.Type, d.Type))
		}
	}
	if len(missing) > 0 {
		return nil, nil, false, "", &SchemaError{Side: "destination", Table: dest.String(),
			Why: fmt.Sprintf("has no column %s (the source %s has it)", quoteList(missing), unit)}
	}
	if len(unsafe) > 0 {
		return nil, nil, false, "", &SchemaError{Side: "destination", Table: dest.String(),
			Why: strings.Join(unsafe, "; ") + ": cannot be copied safely; make the types match"}
	}
	var required []string
	for _, d := range dst {
		if !seen[d.Name] && d.NotNull && !d.HasDefault && !d.Generated {
			required = append(required, d.Name)
		}
	}
	if len(required) > 0 {
		return nil, nil, false, "", &SchemaError{Side: "destination", Table: dest.String(),
			Why: fmt.Sprintf("column %s is NOT NULL without a default and the source %s has no such column", quoteList(required), unit)}
	}
	if len(cols) == 0 {
		return nil, nil, false, "", &SchemaError{Side: "source", Table: unit.String(), Why: "has no columns to copy"}
	}
	return cols, skipped, binary, why, nil
}

// Plan turns table names into units. src and dst are read-only
// transactions on each side; names are resolved first with each server's
// own search_path, then the search_path is pinned for type names.
// Selecting the same destination table twice yields one unit.
func Plan(ctx context.Context, src, dst Querier, names []string, sameMajor bool) ([]Unit, error) {
	var pairs []tablePair
	for _, n := range names {
		s, err := Resolve(ctx, src, "source", n)
		if err != nil {
			return nil, err
		}
		d, err := Resolve(ctx, dst, "destination", n)
		if err != nil {
			return nil, err
		}
		pairs = append(pairs, tablePair{s, d})
	}
	if err := PinCatalogPath(ctx, src); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if err := PinCatalogPath(ctx, dst); err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	var units []Unit
	seen := map[uint32]bool{}
	for _, p := range pairs {
		expanded, err := expand(ctx, src, dst, p.s, p.d)
		if err != nil {
			return nil, err
		}
		for _, e := range expanded {
			if seen[e.d.OID] {
				continue
			}
			seen[e.d.OID] = true
			u, err := planUnit(ctx, src, dst, e.s, e.d, sameMajor)
			if err != nil {
				return nil, err
			}
			units = append(units, u)
		}
	}
	return units, nil
}

type tablePair struct{ s, d Table }

// expand maps a selected table to its units: leaf by leaf when both sides
// are partitioned alike, the whole table otherwise.
func expand(ctx context.Context, src, dst Querier, s, d Table) ([]tablePair, error) {
	if !s.Partitioned() || !d.Partitioned() {
		return []tablePair{{s, d}}, nil
	}
	sl, err := Leaves(ctx, src, s)
	if err != nil {
		return nil, fmt.Errorf("source: list partitions of %s: %w", s, err)
	}
	dl, err := Leaves(ctx, dst, d)
	if err != nil {
		return nil, fmt.Errorf("destination: list partitions of %s: %w", d, err)
	}
	byName := map[string]Table{}
	for _, l := range dl {
		byName[l.String()] = l
	}
	var out []tablePair
	var missing []string
	for _, l := range sl {
		m, ok := byName[l.String()]
		if !ok {
			missing = append(missing, l.String())
			continue
		}
		out = append(out, tablePair{l, m})
	}
	if len(missing) > 0 {
		return nil, &SchemaError{Side: "destination", Table: d.String(),
			Why: fmt.Sprintf("lacks partition(s) %s that the source has; create them with the same bounds", strings.Join(missing, ", "))}
	}
	return out, nil
}

func planUnit(ctx context.Context, src, dst Querier, s, d Table, sameMajor bool) (Unit, error) {
	sc, err := Columns(ctx, src, s)
	if err != nil {
		return Unit{}, fmt.Errorf("source: columns of %s: %w", s, err)
	}
	dc, err := Columns(ctx, dst, d)
	if err != nil {
		return Unit{}, fmt.Errorf("destination: columns of %s: %w", d, err)
	}
	cols, skipped, binary, why, err := MatchColumns(s, d, sc, dc, sameMajor)
	if err != nil {
		return Unit{}, err
	}
	fks, err := ReferencedBy(ctx, dst, d)
	if err != nil {
		return Unit{}, fmt.Errorf("destination: foreign keys referencing %s: %w", d, err)
	}
	if len(fks) > 0 {
		var refs []string
		for _, f := range fks {
			refs = append(refs, fmt.Sprintf("%s on %s", f.Name, f.Referencing))
		}
		return Unit{}, &SchemaError{Side: "destination", Table: d.String(),
			Why: fmt.Sprintf("cannot be truncated: referenced by foreign key %s; drop the constraint for the move and re-add it afterwards (ADD ... NOT VALID, then VALIDATE CONSTRAINT)", strings.Join(refs, ", "))}
	}
	return Unit{Source: s, Dest: d, Columns: cols, Skipped: skipped, Binary: binary, FormatWhy: why, Freeze: d.Kind == "r"}, nil
}
