package partition

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"lockstep/verify"
)

// Unit is one table (or leaf partition) to copy, with everything decided
// before anything is locked.
type Unit struct {
	Source, Dest    Table
	Columns         []string // copied columns, by name, in source order
	Skipped         []string // columns left out, with the reason
	Binary          bool
	FormatWhy       string // why binary or text
	Freeze          bool   // COPY FREEZE is possible after TRUNCATE
	Estimate        Estimate
	DestTriggers    []string           // user triggers on the destination table
	DestForeignKeys []string           // foreign keys of the destination table
	Key             []verify.KeyColumn // with Options.WithKey: the key that pinpoints rows
	NoKey           string             // with Options.WithKey: why there is no key
	// DestOnly marks a leaf partition that exists only on the destination
	// (verify only): Source is empty, and every row of Dest is a difference.
	DestOnly bool
}

// Name names the unit in messages: the source table, and the destination
// when it is a different table.
func (u Unit) Name() string {
	if u.DestOnly {
		return u.Dest.String() + " (destination only)"
	}
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
// same major version, and none is an OID that names an object (regclass and
// the like); otherwise text, and why says which column decided.
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
		case s.Type == d.Type && namesByOID(s):
			if binary {
				binary, why = false, fmt.Sprintf("column %s has type %s, whose values are object OIDs: binary would carry the source's OIDs, "+
					"which name other objects on the destination; text carries the names", quoteList([]string{s.Name}), s.Type)
			}
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

// Options is what Plan needs besides the two catalogs.
type Options struct {
	Selection
	SameMajor   bool     // both servers run one major version: binary is possible
	ExactCounts bool     // count(*) each unit on the source instead of catalog estimates
	Copy        bool     // units will be copied: check the privileges that needs
	Lock        bool     // units will be locked on both sides (copy, or verify --lock)
	WithKey     bool     // find each unit's key (for pinpointing differences)
	Key         []string // the key columns to use instead of the primary key
}

// Plan turns a selection into units. src and dst are read-only
// transactions on each side; names are resolved first with each server's
// own search_path, then the search_path is pinned for type names. A table
// selected twice yields one unit. An empty selection is an error.
func Plan(ctx context.Context, src, dst Querier, o Options) ([]Unit, error) {
	var pairs []tablePair
	for _, n := range o.Tables {
		s, err := Resolve(ctx, src, "source", n)
		if err != nil {
			return nil, err
		}
		d, err := Resolve(ctx, dst, "destination", n)
		if err != nil {
			return nil, err
		}
		pairs = append(pairs, tablePair{s: s, d: d})
	}
	for _, re := range o.Matching {
		found, err := matching(ctx, src, re)
		if err != nil {
			return nil, err
		}
		for _, s := range found {
			d, err := Resolve(ctx, dst, "destination", s.String())
			var nf *NotFoundError
			if err != nil && !errors.As(err, &nf) {
				return nil, err
			}
			pairs = append(pairs, tablePair{s: s, d: d}) // d.OID == 0: missing, unless excluded below
		}
	}
	if err := PinCatalogPath(ctx, src); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if err := PinCatalogPath(ctx, dst); err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	var all []tablePair
	seen := map[uint32]bool{}
	for _, p := range pairs {
		if p.d.OID == 0 {
			all = append(all, p)
			continue
		}
		expanded, extra, err := expand(ctx, src, dst, p.s, p.d)
		if err != nil {
			return nil, err
		}
		if len(extra) > 0 && o.Copy {
			if err := checkExtraLeaves(ctx, dst, p.d, extra); err != nil {
				return nil, err
			}
		} else {
			for _, l := range extra {
				expanded = append(expanded, tablePair{d: l, destOnly: true})
			}
		}
		for _, e := range expanded {
			if !seen[e.d.OID] {
				seen[e.d.OID] = true
				all = append(all, e)
			}
		}
	}
	if len(o.Exclude) > 0 && len(all) > 0 {
		names := make([]string, len(all))
		for i, p := range all {
			names[i] = p.qualified()
		}
		drop, err := excluded(ctx, src, names, o.Exclude)
		if err != nil {
			return nil, err
		}
		all = slices.DeleteFunc(all, func(p tablePair) bool { return drop[p.qualified()] })
	}
	var missing []string
	for _, p := range all {
		if p.d.OID == 0 {
			missing = append(missing, p.s.String())
		}
	}
	if len(missing) > 0 {
		return nil, &SchemaError{Side: "destination", Table: "--tables-matching " + strings.Join(o.Matching, ", "),
			Why: fmt.Sprintf("%d matching table(s) missing: %s", len(missing), strings.Join(missing, ", "))}
	}
	if len(all) == 0 {
		return nil, errors.New("source: the selection matches no table")
	}
	units := make([]Unit, 0, len(all))
	for _, p := range all {
		var u Unit
		var err error
		if p.destOnly {
			u, err = planDestOnly(ctx, dst, p.d, o)
		} else {
			u, err = planUnit(ctx, src, dst, p.s, p.d, o)
		}
		if err != nil {
			return nil, err
		}
		units = append(units, u)
	}
	orderUnits(units, o.Order)
	return units, nil
}

type tablePair struct {
	s, d     Table
	destOnly bool // a leaf of the destination's parent that the source lacks
}

// qualified is the name --exclude matches: the source table's, or the
// destination's for a destination-only leaf.
func (p tablePair) qualified() string {
	if p.destOnly {
		return p.d.qualified()
	}
	return p.s.qualified()
}

// expand maps a selected table to its units: leaf by leaf when both sides
// are partitioned alike, the whole table otherwise. extra lists the
// destination's leaves that the source lacks (see extra.go).
func expand(ctx context.Context, src, dst Querier, s, d Table) (pairs []tablePair, extra []Table, err error) {
	if !s.Partitioned() || !d.Partitioned() {
		return []tablePair{{s: s, d: d}}, nil, nil
	}
	sl, err := Leaves(ctx, src, s)
	if err != nil {
		return nil, nil, fmt.Errorf("source: list partitions of %s: %w", s, err)
	}
	dl, err := Leaves(ctx, dst, d)
	if err != nil {
		return nil, nil, fmt.Errorf("destination: list partitions of %s: %w", d, err)
	}
	byName := map[string]Table{}
	for _, l := range dl {
		byName[l.String()] = l
	}
	var out []tablePair
	var missing, differ []string
	inSource := map[string]bool{}
	for _, l := range sl {
		inSource[l.String()] = true
		m, ok := byName[l.String()]
		switch {
		case !ok:
			missing = append(missing, l.String())
		case l.Bound != m.Bound:
			differ = append(differ, fmt.Sprintf("%s is %s on the source but %s on the destination", l, l.Bound, m.Bound))
		default:
			out = append(out, tablePair{s: l, d: m})
		}
	}
	if len(missing) > 0 {
		return nil, nil, &SchemaError{Side: "destination", Table: d.String(),
			Why: fmt.Sprintf("lacks partition(s) %s that the source has; create them with the same bounds", strings.Join(missing, ", "))}
	}
	if len(differ) > 0 {
		return nil, nil, &SchemaError{Side: "destination", Table: d.String(),
			Why: "partition bounds differ: " + strings.Join(differ, "; ")}
	}
	for _, l := range dl {
		if !inSource[l.String()] {
			extra = append(extra, l)
		}
	}
	return out, extra, nil
}

func planUnit(ctx context.Context, src, dst Querier, s, d Table, o Options) (Unit, error) {
	sc, err := Columns(ctx, src, s)
	if err != nil {
		return Unit{}, fmt.Errorf("source: columns of %s: %w", s, err)
	}
	dc, err := Columns(ctx, dst, d)
	if err != nil {
		return Unit{}, fmt.Errorf("destination: columns of %s: %w", d, err)
	}
	cols, skipped, binary, why, err := MatchColumns(s, d, sc, dc, o.SameMajor)
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
	if err := checkPrivileges(ctx, src, dst, s, d, o); err != nil {
		return Unit{}, err
	}
	if err := checkRowSecurity(ctx, src, "source", s); err != nil {
		return Unit{}, err
	}
	if err := checkRowSecurity(ctx, dst, "destination", d); err != nil {
		return Unit{}, err
	}
	u := Unit{Source: s, Dest: d, Columns: cols, Skipped: skipped, Binary: binary, FormatWhy: why, Freeze: d.Kind == "r"}
	if u.Estimate, err = estimate(ctx, src, s, o.ExactCounts); err != nil {
		return Unit{}, fmt.Errorf("source: size of %s: %w", s, err)
	}
	if u.DestTriggers, u.DestForeignKeys, err = destinationExtras(ctx, dst, d); err != nil {
		return Unit{}, fmt.Errorf("destination: triggers and foreign keys of %s: %w", d, err)
	}
	if o.WithKey {
		if u.Key, u.NoKey, err = Key(ctx, src, s, o.Key); err != nil {
			return Unit{}, err
		}
		for _, k := range u.Key {
			if !slices.Contains(u.Columns, k.Name) {
				return Unit{}, &SchemaError{Side: "destination", Table: d.String(), Why: fmt.Sprintf("key column %q is not copied to it", k.Name)}
			}
		}
		u.Key = boundTypes(u.Key, dc)
	}
	return u, nil
}

// Estimate is a unit's expected size on the source.
type Estimate struct {
	Rows  int64 // -1: unknown (never analyzed)
	Exact bool  // Rows was counted, not estimated
	Bytes int64 // on-disk size of the table (and its partitions), TOAST included
}

// estimate reads catalog statistics for t (summed over its partitions), or
// counts its rows when exact is set.
func estimate(ctx context.Context, q Querier, t Table, exact bool) (Estimate, error) {
	var e Estimate
	err := q.QueryRow(ctx, `
		SELECT CASE WHEN bool_or(c.reltuples < 0) THEN -1 ELSE sum(c.reltuples)::bigint END,
		       COALESCE(sum(pg_catalog.pg_table_size(c.oid)), 0)::bigint
		FROM pg_catalog.pg_class c
		WHERE (c.oid = $1 AND c.relkind = 'r')
		   OR c.oid IN (SELECT relid FROM pg_catalog.pg_partition_tree($1::oid::regclass) WHERE isleaf)`, t.OID).Scan(&e.Rows, &e.Bytes)
	if err != nil || !exact {
		return e, err
	}
	e.Exact = true
	err = q.QueryRow(ctx, "SELECT pg_catalog.count(*) FROM "+t.String()).Scan(&e.Rows)
	return e, err
}

// destinationExtras lists what slows or changes rows on their way into the
// destination table: its user triggers and its own foreign keys.
func destinationExtras(ctx context.Context, q Querier, t Table) (triggers, fks []string, err error) {
	rows, err := q.Query(ctx, `
		SELECT 'trigger', tgname::text FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal
		UNION ALL
		SELECT 'fk', conname || ' -> ' || confrelid::regclass::text FROM pg_catalog.pg_constraint WHERE conrelid = $1 AND contype = 'f'
		ORDER BY 1, 2`, t.OID)
	if err != nil {
		return nil, nil, err
	}
	var kind, name string
	_, err = pgx.ForEachRow(rows, []any{&kind, &name}, func() error {
		if kind == "trigger" {
			triggers = append(triggers, name)
		} else {
			fks = append(fks, name)
		}
		return nil
	})
	return triggers, fks, err
}

// checkPrivileges fails early, naming the side, the role and what is
// missing, where the run would fail after taking locks.
func checkPrivileges(ctx context.Context, src, dst Querier, s, d Table, o Options) error {
	if err := checkPrivilege(ctx, src, "source", s, o); err != nil {
		return err
	}
	return checkPrivilege(ctx, dst, "destination", d, o)
}

// checkPrivilege checks one side's privileges on its table.
func checkPrivilege(ctx context.Context, q Querier, side string, t Table, o Options) error {
	var role string
	var read, lock, load bool
	err := q.QueryRow(ctx, `SELECT current_user::text,
	       has_table_privilege($1::oid, 'SELECT'),
	       has_table_privilege($1::oid, 'UPDATE') OR has_table_privilege($1::oid, 'DELETE') OR has_table_privilege($1::oid, 'TRUNCATE'),
	       has_table_privilege($1::oid, 'INSERT') AND has_table_privilege($1::oid, 'TRUNCATE')`, t.OID).Scan(&role, &read, &lock, &load)
	if err != nil {
		return fmt.Errorf("%s: privileges on %s: %w", side, t, err)
	}
	var missing string
	switch {
	case !read:
		missing = "the SELECT privilege"
	case o.Copy && side == "destination" && !load:
		missing = "the INSERT and TRUNCATE privileges (the copy replaces its rows)"
	case o.Lock && !lock:
		missing = "the UPDATE, DELETE or TRUNCATE privilege, which PostgreSQL requires for an EXCLUSIVE lock (lockstep never writes with it)"
	}
	if missing != "" {
		return &SchemaError{Side: side, Table: t.String(), Why: fmt.Sprintf("role %s lacks %s", role, missing)}
	}
	return nil
}
