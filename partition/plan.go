package partition

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"lockstep/verify"
)

// TriggerNames lists the destination's user triggers.
func (u Unit) TriggerNames() []string {
	out := make([]string, len(u.DestTriggers))
	for i, t := range u.DestTriggers {
		out[i] = t.Name
		if !t.Fires() {
			out[i] += " (disabled)"
		}
	}
	return out
}

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
	DestTriggers    []Trigger          // user triggers on the destination table
	DestForeignKeys []string           // foreign keys of the destination table
	Key             []verify.KeyColumn // with Options.WithKey: the key that pinpoints rows
	NoKey           string             // with Options.WithKey: why there is no key
	// DestOnly marks a leaf partition that exists only on the destination
	// (verify only): Source is empty, and every row of Dest is a difference.
	DestOnly bool
	// Shape fingerprints the columns of both sides (see Shape).
	Shape string
	// Sequences feed the copied columns (see sequences.go); read only
	// when Options.Sequences asks for them.
	Sequences []Sequence
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
// Generated columns are never copied (COPY cannot read them): a column
// generated on the source must be generated on the destination too (which
// computes its own) or absent there; every other source column must exist
// on the destination with the same type (for a composite or a user range,
// or a type holding one, the same attributes in the same order or the same
// subtype on both sides) or a type that
// widens it exactly; destination columns the source
// lacks must be nullable or have a default. Binary format is chosen only
// when every copied type is identical and built in and both servers run the
// same major version, and none is an OID that names an object (regclass and
// the like); otherwise text, and why says which column decided.
func MatchColumns(unit Table, dest Table, src, dst []Column, sameMajor bool) (cols, skipped []string, binary bool, why string, err error) {
	byName := make(map[string]Column, len(dst))
	for _, c := range dst {
		byName[c.Name] = c
	}
	binary, why = sameMajor, "every column type is identical and built in, or an enum or a domain over a built-in type"
	if !sameMajor {
		why = "the servers run different major versions"
	}
	seen := make(map[string]bool, len(src))
	var missing, unsafe, generated []string
	for _, s := range src {
		seen[s.Name] = true
		d, ok := byName[s.Name]
		switch {
		case s.Generated && ok && !d.Generated:
			// COPY cannot read it: the destination's column would be
			// left NULL (or its default) while the checksums agree.
			generated = append(generated, s.Name)
			continue
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
		case s.Type == d.Type && s.Composite != d.Composite:
			// A composite's text form fills its attributes by position.
			unsafe = append(unsafe, fmt.Sprintf("column %s has type %s, whose composite attributes or range subtype differ: %s on the source but %s on the destination",
				quoteList([]string{s.Name}), s.Type, orNone(s.Composite), orNone(d.Composite)))
		case s.Type == d.Type && s.BaseOID == d.BaseOID && textOnly(s) != "":
			if binary {
				binary, why = false, fmt.Sprintf("column %s has type %s, %s", quoteList([]string{s.Name}), s.Type, textOnly(s))
			}
		case s.Type == d.Type && s.BuiltIn && d.BuiltIn:
		case s.Type == d.Type && s.Wire != "" && s.Wire == d.Wire:
			// An enum's binary form is its label, a domain's its base
			// type's: no OID travels, so binary is exact.
		case s.Type == d.Type && s.BaseOID != 0 && d.BaseOID != 0 && !widens(Column{TypeOID: s.BaseOID, TypMod: s.BaseTypMod}, Column{TypeOID: d.BaseOID, TypMod: d.BaseTypMod}):
			// One domain name over built-in bases that differ (identical
			// ones went binary above): as for a plain column, only a
			// widening is exact.
			unsafe = append(unsafe, fmt.Sprintf("column %s has type %s, a %s on the source but a %s on the destination",
				quoteList([]string{s.Name}), s.Type, s.Wire, d.Wire))
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
	if len(generated) > 0 {
		return nil, nil, false, "", &SchemaError{Side: "destination", Table: dest.String(),
			Why: fmt.Sprintf("column %s is generated on the source %s but not on the destination, and COPY cannot read a generated column: "+
				"the destination's would be left NULL or at its default; make it generated there too, or drop it there", quoteList(generated), unit)}
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

func orNone(composite string) string {
	if composite == "" {
		return "no composite or range"
	}
	return composite
}

// Options is what Plan needs besides the two catalogs.
type Options struct {
	Selection
	SameMajor   bool // both servers run one major version: binary is possible
	ExactCounts bool // count(*) each unit on the source instead of catalog estimates
	Copy        bool // units will be copied: check the privileges that needs
	Lock        bool // units will be locked on both sides (copy, or verify --lock)
	// ReadOnly plans the units a copy would (Copy and Lock shape them) for
	// a reader of the ledger (status): SELECT is the only privilege checked.
	ReadOnly bool
	WithKey  bool     // find each unit's key (for pinpointing differences)
	Key      []string // the key columns to use instead of the primary key
	FKMode   FKMode   // how foreign keys referencing selected tables are handled (copy only)
	// DisableTriggers: the copy disables the destination tables' user
	// triggers while it loads them; the role must be able to.
	DisableTriggers bool
	// SkipMissing leaves out, without an error, the selected tables the
	// destination lacks: --create-missing plans the rest before creating
	// them (see create.go), and a plan of it lists them instead of units.
	SkipMissing bool
	// Sequences says which sequences feeding the copied columns to read.
	Sequences SequenceMode
	// Progress, when set, is told each stage as planning enters it.
	Progress func(stage string)
	// Warn, when set, is told what the plan goes on despite (foreign keys
	// among the selected tables that differ between the sides).
	Warn func(msg string)
}

func (o Options) stage(s string) {
	if o.Progress != nil {
		o.Progress(s)
	}
}

// Plan turns a selection into groups of units (see groups.go; for a
// verify, or a table nothing references, a group of one). src and dst are read-only
// transactions on each side; names are resolved first with each server's
// own search_path, then the search_path is pinned for type names. A table
// selected twice yields one unit. An empty selection is an error.
//
// Each side's catalog is read in a fixed number of queries whatever the
// number of units (one per regex, and --exact-counts counts in chunks);
// the answers are matched up in Go.
func Plan(ctx context.Context, src, dst Querier, o Options) ([]Group, error) {
	o.stage("resolving names")
	pairs, err := selected(ctx, src, dst, o)
	if err != nil {
		return nil, err
	}
	if err := PinCatalogPath(ctx, src); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if err := PinCatalogPath(ctx, dst); err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	o.stage("listing partitions")
	all, err := expandAll(ctx, src, dst, pairs, o)
	if err != nil {
		return nil, err
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
	if o.SkipMissing { // --create-missing: see create.go
		n := len(all)
		if all = slices.DeleteFunc(all, func(p tablePair) bool { return p.d.OID == 0 }); len(all) == 0 && n > 0 {
			return nil, nil
		}
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
	o.stage(fmt.Sprintf("reading the catalogs of %d tables", len(all)))
	sc, dc, err := readCatalogs(ctx, src, dst, all, o)
	if err != nil {
		return nil, err
	}
	if o.Sequences != SequencesNone {
		o.stage("reading the sequences that feed the tables")
		if err := sequenceCatalogs(ctx, src, dst, all, sc, dc, o.Sequences); err != nil {
			return nil, err
		}
	}
	o.stage(fmt.Sprintf("checking %d units", len(all)))
	units := make([]Unit, 0, len(all))
	for _, p := range all {
		var u Unit
		var err error
		if p.destOnly {
			u, err = planDestOnly(p.d, dc, o)
		} else {
			u, err = planUnit(p.s, p.d, sc, dc, o)
		}
		if err != nil {
			return nil, err
		}
		units = append(units, u)
	}
	if !o.Copy {
		groups := make([]Group, len(units))
		for i, u := range units {
			groups[i] = Group{Units: []Unit{u}}
		}
		return orderGroups(groups, o.Order), nil
	}
	if o.Warn != nil {
		for _, w := range keysDiffer(all, sc.keys, dc.fks.keys) {
			o.Warn(w)
		}
	}
	return groupUnits(units, dc.fks, o.FKMode, o.Order)
}

// keysDiffer lists the foreign keys among the selected tables that one side
// has and the other lacks (by constraint and table names). The groups follow
// the destination's, where TRUNCATE runs; a difference is worth a look.
func keysDiffer(pairs []tablePair, src, dst []ForeignKey) []string {
	selected := map[string]bool{}
	for _, p := range pairs {
		selected[p.s.String()], selected[p.d.String()] = true, true
	}
	sig := func(keys []ForeignKey) map[string]bool {
		out := map[string]bool{}
		for _, k := range keys {
			if !k.PartitionClone && selected[k.Referencing.String()] && selected[k.Referenced.String()] {
				out[fmt.Sprintf("%s on %s -> %s", pgx.Identifier{k.Name}.Sanitize(), k.Referencing, k.Referenced)] = true
			}
		}
		return out
	}
	s, d := sig(src), sig(dst)
	var out []string
	for _, k := range slices.Sorted(maps.Keys(s)) {
		if !d[k] {
			out = append(out, "destination: lacks the source's foreign key "+k+" (units are grouped by the destination's foreign keys)")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(d)) {
		if !s[k] {
			out = append(out, "source: lacks the destination's foreign key "+k+" (the source's rows may not satisfy it)")
		}
	}
	return out
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

// selected resolves the selection's names on both sides and runs its
// regexes on the source, matching each found table by name on the
// destination (OID 0 there: missing, unless excluded later).
func selected(ctx context.Context, src, dst Querier, o Options) ([]tablePair, error) {
	var pairs []tablePair
	if len(o.Tables) > 0 {
		ss, err := resolveAll(ctx, src, "source", o.Tables)
		if err != nil {
			return nil, err
		}
		ds, err := resolveAll(ctx, dst, "destination", o.Tables)
		if err != nil {
			return nil, err
		}
		for i, n := range o.Tables {
			if err := usable("source", n, ss[i]); err != nil {
				return nil, err
			}
			if ds[i].OID == 0 && o.SkipMissing { // --create-missing: see create.go
				pairs = append(pairs, tablePair{s: ss[i], d: ds[i]})
				continue
			}
			if err := usable("destination", n, ds[i]); err != nil {
				return nil, err
			}
			pairs = append(pairs, tablePair{s: ss[i], d: ds[i]})
		}
	}
	var found []Table
	for _, re := range o.Matching {
		f, err := matching(ctx, src, re)
		if err != nil {
			return nil, err
		}
		found = append(found, f...)
	}
	if len(found) > 0 {
		names := make([]string, len(found))
		for i, s := range found {
			names[i] = s.String()
		}
		ds, err := resolveAll(ctx, dst, "destination", names)
		if err != nil {
			return nil, err
		}
		for i, s := range found {
			if ds[i].OID != 0 {
				if err := usable("destination", names[i], ds[i]); err != nil {
					return nil, err
				}
			}
			pairs = append(pairs, tablePair{s: s, d: ds[i]})
		}
	}
	return pairs, nil
}

// usable says why a resolved name cannot be a unit: not found, or not a
// table.
func usable(side, name string, t Table) error {
	switch {
	case t.OID == 0:
		return &NotFoundError{Side: side, Name: name}
	case t.Kind == "r", t.Kind == "p":
		return nil
	}
	return &UnsupportedError{Side: side, Table: t.String(), Why: "is a " + kindName(t.Kind) + ", not a table"}
}

// expandAll maps each selected pair to its units, leaf by leaf where both
// sides are partitioned, and drops repeats. Leaves only the destination has
// are refused for a copy when they hold rows (see extra.go), and become
// destination-only units for a verify.
func expandAll(ctx context.Context, src, dst Querier, pairs []tablePair, o Options) ([]tablePair, error) {
	var sRoots, dRoots []Table
	for _, p := range pairs {
		if p.d.OID != 0 && p.s.Partitioned() && p.d.Partitioned() {
			sRoots, dRoots = append(sRoots, p.s), append(dRoots, p.d)
		}
	}
	var sLeaves, dLeaves map[uint32][]Table
	var g errgroup.Group
	g.Go(func() (err error) {
		sLeaves, err = leavesOf(ctx, src, sRoots)
		return wrapSide("source", "list partitions", err)
	})
	g.Go(func() (err error) {
		dLeaves, err = leavesOf(ctx, dst, dRoots)
		return wrapSide("destination", "list partitions", err)
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var all []tablePair
	var extras []extraLeaves
	seen := map[uint32]Table{} // destination OID -> its source table
	for _, p := range pairs {
		if p.d.OID == 0 {
			all = append(all, p)
			continue
		}
		expanded := []tablePair{p}
		if p.s.Partitioned() && p.d.Partitioned() {
			var extra []Table
			var err error
			if expanded, extra, err = matchLeaves(p.d, sLeaves[p.s.OID], dLeaves[p.d.OID]); err != nil {
				return nil, err
			}
			if len(extra) > 0 && o.Copy {
				extras = append(extras, extraLeaves{parent: p.d, leaves: extra})
			} else {
				for _, l := range extra {
					expanded = append(expanded, tablePair{d: l, destOnly: true})
				}
			}
		}
		for _, e := range expanded {
			prev, dup := seen[e.d.OID]
			switch {
			case !dup:
				seen[e.d.OID] = e.s
				all = append(all, e)
			case prev.OID != e.s.OID && prev.OID != 0 && e.s.OID != 0:
				// Each server resolves names with its own search_path:
				// two source tables cannot both be copied into one.
				return nil, &SchemaError{Side: "destination", Table: e.d.String(),
					Why: fmt.Sprintf("is selected for two source tables, %s and %s (each server resolves a name with its own search_path); "+
						"select them by schema-qualified names", prev, e.s)}
			}
		}
	}
	if err := checkExtraLeaves(ctx, dst, extras); err != nil {
		return nil, err
	}
	return all, nil
}

// matchLeaves pairs a partitioned table's leaves by name; every source leaf
// must exist on the destination with the same bounds. extra lists the
// destination's leaves that the source lacks.
func matchLeaves(d Table, sl, dl []Table) (pairs []tablePair, extra []Table, err error) {
	byName := make(map[string]Table, len(dl))
	for _, l := range dl {
		byName[l.String()] = l
	}
	inSource := make(map[string]bool, len(sl))
	var missing, differ []string
	for _, l := range sl {
		inSource[l.String()] = true
		m, ok := byName[l.String()]
		switch {
		case !ok:
			missing = append(missing, l.String())
		case l.Bound != m.Bound:
			differ = append(differ, fmt.Sprintf("%s is %s on the source but %s on the destination", l, l.Bound, m.Bound))
		default:
			l.Bound, m.Bound = "", "" // matched: not needed again
			pairs = append(pairs, tablePair{s: l, d: m})
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
	return pairs, extra, nil
}

// catalog is what one side's catalog says about the units' tables.
type catalog struct {
	columns     map[uint32][]Column
	privileges  map[uint32]privileges
	role        string
	rowSecurity map[uint32]error     // the tables whose row-level security would hide rows
	fks         *fkGraph             // destination, for a copy
	keys        []ForeignKey         // source, for a copy: to compare with the destination's
	triggers    map[uint32][]Trigger // destination
	foreignKeys map[uint32][]string  // destination
	estimates   map[uint32]Estimate  // source; destination for destination-only leaves
	counts      map[uint32]int64     // source, with ExactCounts
	indexes     map[uint32][]index   // source, with WithKey
	// sequences feed each unit's table (with Options.Sequences); on the
	// destination, sequenceByName also holds the source's by name.
	sequences      map[uint32][]feed
	sequenceByName map[string]feed
}

// readCatalogs reads both sides' catalogs for the units' tables, a fixed
// number of queries per side, the two sides at once.
func readCatalogs(ctx context.Context, src, dst Querier, all []tablePair, o Options) (sc, dc *catalog, err error) {
	var ss, ds, destOnly []Table
	for _, p := range all {
		ds = append(ds, p.d)
		if p.destOnly {
			destOnly = append(destOnly, p.d)
		} else {
			ss = append(ss, p.s)
		}
	}
	sc, dc = &catalog{}, &catalog{}
	var g errgroup.Group
	g.Go(func() (err error) {
		if sc.columns, err = columnsOf(ctx, src, ss); err != nil {
			return wrapSide("source", "columns", err)
		}
		if o.Copy && o.Warn != nil {
			if sc.keys, err = foreignKeysOf(ctx, src, ss, false); err != nil {
				return wrapSide("source", "foreign keys referencing the tables", err)
			}
		}
		if sc.privileges, sc.role, err = privilegesOf(ctx, src, ss); err != nil {
			return wrapSide("source", "privileges", err)
		}
		if sc.rowSecurity, err = rowSecurityOf(ctx, src, "source", ss); err != nil {
			return wrapSide("source", "row-level security", err)
		}
		if sc.estimates, err = estimatesOf(ctx, src, ss); err != nil {
			return wrapSide("source", "sizes", err)
		}
		if o.ExactCounts {
			if sc.counts, err = countRows(ctx, src, ss); err != nil {
				return wrapSide("source", "count rows", err)
			}
		}
		if o.WithKey {
			if sc.indexes, err = indexesOf(ctx, src, ss); err != nil {
				return wrapSide("source", "unique indexes", err)
			}
		}
		return nil
	})
	g.Go(func() (err error) {
		if dc.columns, err = columnsOf(ctx, dst, ds); err != nil {
			return wrapSide("destination", "columns", err)
		}
		if o.Copy {
			if dc.fks, err = readFKGraph(ctx, dst, ds, o.FKMode); err != nil {
				return wrapSide("destination", "foreign keys referencing the tables", err)
			}
		}
		if o.Copy && o.FKMode == FKReplica {
			var super bool
			if err := dst.QueryRow(ctx, "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").Scan(&super); err != nil {
				return wrapSide("destination", "role", err)
			}
			if !super {
				return &SchemaError{Side: "destination", Table: "--fk-mode replica",
					Why: "needs a superuser (it sets session_replication_role = replica so that foreign keys are not checked); use --fk-mode group"}
			}
		}
		if dc.privileges, dc.role, err = privilegesOf(ctx, dst, ds); err != nil {
			return wrapSide("destination", "privileges", err)
		}
		if dc.rowSecurity, err = rowSecurityOf(ctx, dst, "destination", ds); err != nil {
			return wrapSide("destination", "row-level security", err)
		}
		if dc.triggers, dc.foreignKeys, err = extrasOf(ctx, dst, ds); err != nil {
			return wrapSide("destination", "triggers and foreign keys", err)
		}
		if len(destOnly) > 0 {
			if dc.estimates, err = estimatesOf(ctx, dst, destOnly); err != nil {
				return wrapSide("destination", "sizes", err)
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	return sc, dc, nil
}

func wrapSide(side, what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %s: %w", side, what, err)
}

// planUnit decides one unit from both sides' catalogs.
func planUnit(s, d Table, sc, dc *catalog, o Options) (Unit, error) {
	cols, skipped, binary, why, err := MatchColumns(s, d, sc.columns[s.OID], dc.columns[d.OID], o.SameMajor)
	if err != nil {
		return Unit{}, err
	}
	if err := checkPrivileges("source", s, sc, o); err != nil {
		return Unit{}, err
	}
	if err := checkPrivileges("destination", d, dc, o); err != nil {
		return Unit{}, err
	}
	if err := sc.rowSecurity[s.OID]; err != nil {
		return Unit{}, err
	}
	if err := dc.rowSecurity[d.OID]; err != nil {
		return Unit{}, err
	}
	u := Unit{Source: s, Dest: d, Columns: cols, Skipped: skipped, Binary: binary, FormatWhy: why, Freeze: d.Kind == "r",
		Estimate: sc.estimates[s.OID], DestTriggers: dc.triggers[d.OID], DestForeignKeys: dc.foreignKeys[d.OID],
		Shape: Shape(s, d, sc.columns[s.OID], dc.columns[d.OID])}

	if n, ok := sc.counts[s.OID]; ok {
		u.Estimate.Rows, u.Estimate.Exact = n, true
	}
	if o.DisableTriggers {
		for _, t := range u.DestTriggers {
			if t.Fires() && !t.Alterable {
				return Unit{}, &SchemaError{Side: "destination", Table: d.String(),
					Why: fmt.Sprintf("--disable-triggers: role %s may not disable trigger %s (ALTER TABLE … DISABLE TRIGGER needs the table's owner or a superuser)",
						dc.role, quoteList([]string{t.Name}))}
			}
		}
	}
	if o.WithKey {
		if u.Key, u.NoKey, err = Key(s, sc.indexes[s.OID], o.Key); err != nil {
			return Unit{}, err
		}
		for _, k := range u.Key {
			if !slices.Contains(u.Columns, k.Name) {
				return Unit{}, &SchemaError{Side: "destination", Table: d.String(), Why: fmt.Sprintf("key column %q is not copied to it", k.Name)}
			}
		}
		u.Key = boundTypes(u.Key, dc.columns[d.OID])
	}
	if o.Sequences != SequencesNone {
		if err := planSequences(&u, sc, dc, o); err != nil {
			return Unit{}, err
		}
	}
	return u, nil
}

// Estimate is a unit's expected size on the source.
type Estimate struct {
	Rows  int64 // -1: unknown (never analyzed)
	Exact bool  // Rows was counted, not estimated
	Bytes int64 // on-disk size of the table (and its partitions), TOAST included
}

// checkPrivileges fails early, naming the side, the role and what is
// missing, where the run would fail after taking locks.
func checkPrivileges(side string, t Table, c *catalog, o Options) error {
	p := c.privileges[t.OID]
	var missing string
	switch {
	case !p.read:
		missing = "the SELECT privilege"
	case o.ReadOnly:
		// status: the copy's units, but only read
	case o.Copy && side == "destination" && !p.load:
		missing = "the INSERT and TRUNCATE privileges (the copy replaces its rows)"
	case o.Lock && !p.lock:
		missing = "the UPDATE, DELETE or TRUNCATE privilege, which PostgreSQL requires for an EXCLUSIVE lock (lockstep never writes with it)"
	}
	if missing != "" {
		return &SchemaError{Side: side, Table: t.String(), Why: fmt.Sprintf("role %s lacks %s", c.role, missing)}
	}
	return nil
}
