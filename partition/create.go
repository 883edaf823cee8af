package partition

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// What --create-missing creates. The selected tables the destination lacks
// are created from the source's definitions (by pg_dump, see package
// schema), together with what those definitions need and the destination
// lacks too. This file finds all of it and refuses, before anything is
// created, what cannot be created without touching an existing table or
// guessing:
//
//   - a table is created whole with its partition tree: a missing partition
//     brings its root and every other partition along, and is refused when
//     any table of that tree exists on the destination (creating it would
//     ATTACH it to an existing table);
//   - table inheritance children are refused (INHERITS alters the parent);
//   - sequences owned by a created table come with it; a sequence a default
//     uses that no table owns is created when missing; one owned by a table
//     that is not created is refused;
//   - a foreign key must reference a created table or one the destination
//     has (which is then locked while the constraint is added); anything
//     else is refused naming the constraint;
//   - enum, domain, composite and range types the columns need (through
//     arrays, domains, composites and ranges too) are created when the
//     destination lacks them; a missing type that belongs to an extension,
//     or a base type, is refused;
//   - schemas of all of these are created when missing, which needs the
//     CREATE privilege on the database; existing schemas need CREATE.
//
// Objects are matched between the servers by schema and name; an object of
// the same name on the destination is used as it is.

// Missing is what --create-missing creates on the destination. Tables are
// the source's; nothing here exists on the destination by name.
type Missing struct {
	Tables    []Table  // every table to create, partitions included, by name
	Sequences []Table  // sequences used by the tables' defaults, owned by none of them
	Types     []Type   // types the tables' columns need
	Schemas   []string // schemas to create, by name
	// FKTargets are destination tables the created foreign keys reference:
	// adding the constraint locks them SHARE ROW EXCLUSIVE.
	FKTargets []Table
	role      string
}

// Empty reports whether nothing is missing.
func (m *Missing) Empty() bool { return m == nil || len(m.Tables) == 0 }

// Type is a user-defined type to create.
type Type struct {
	OID    uint32
	Schema string
	Name   string
	Kind   string // enum, domain, composite or range
	// Constraints are a domain's NOT VALID constraints (pg_constraint
	// OIDs), which pg_dump adds with statements of their own; the others
	// are part of its CREATE DOMAIN.
	Constraints []uint32
}

// String is the type's name as SQL writes it.
func (t Type) String() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// firstNormalOID is where objects made after initdb begin: every OID below
// it is built in.
const firstNormalOID = 16384

// FindMissing resolves the selection as Plan does and works out what
// --create-missing must create on the destination for the selected tables
// it lacks, refusing what it cannot create (see above). src and dst are
// read-only transactions; nothing is locked or changed. --exclude drops
// missing tables it matches, but a partition tree is created whole.
func FindMissing(ctx context.Context, src, dst Querier, o Options) (*Missing, error) {
	o.SkipMissing = true
	pairs, err := selected(ctx, src, dst, o)
	if err != nil {
		return nil, err
	}
	seen := map[uint32]bool{}
	var sel []Table
	for _, p := range pairs {
		if p.d.OID == 0 && !seen[p.s.OID] {
			seen[p.s.OID] = true
			sel = append(sel, p.s)
		}
	}
	if len(sel) > 0 && len(o.Exclude) > 0 {
		names := make([]string, len(sel))
		for i, t := range sel {
			names[i] = t.qualified()
		}
		drop, err := excluded(ctx, src, names, o.Exclude)
		if err != nil {
			return nil, err
		}
		sel = slices.DeleteFunc(sel, func(t Table) bool { return drop[t.qualified()] })
	}
	m := &Missing{}
	if len(sel) == 0 {
		return m, nil
	}
	if err := m.trees(ctx, src, dst, sel); err != nil {
		return nil, err
	}
	creating := map[uint32]bool{}
	for _, t := range m.Tables {
		creating[t.OID] = true
	}
	if err := m.sequences(ctx, src, dst, creating); err != nil {
		return nil, err
	}
	if err := m.foreignKeys(ctx, src, dst, creating); err != nil {
		return nil, err
	}
	if err := m.types(ctx, src, dst, creating); err != nil {
		return nil, err
	}
	if err := m.schemas(ctx, dst); err != nil {
		return nil, err
	}
	return m, nil
}

// trees finds the partition tree of each selected table (the table alone
// when it is not partitioned) and checks no table of it exists on the
// destination.
func (m *Missing) trees(ctx context.Context, src, dst Querier, sel []Table) error {
	rows, err := src.Query(ctx, `
		SELECT r.root, c.oid, n.nspname, c.relname, c.relkind::text,
		       NOT c.relispartition AND EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid)
		FROM (SELECT DISTINCT COALESCE(pg_catalog.pg_partition_root(x)::oid, x) AS root FROM unnest($1::oid[]) x) r
		LEFT JOIN LATERAL pg_catalog.pg_partition_tree(r.root::regclass) t ON true
		JOIN pg_catalog.pg_class c ON c.oid = COALESCE(t.relid::oid, r.root)
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		ORDER BY n.nspname, c.relname`, oidsOf(sel))
	if err != nil {
		return fmt.Errorf("source: partition trees of the missing tables: %w", err)
	}
	type member struct {
		root     uint32
		t        Table
		inherits bool
	}
	var members []member
	var mb member
	_, err = pgx.ForEachRow(rows, []any{&mb.root, &mb.t.OID, &mb.t.Schema, &mb.t.Name, &mb.t.Kind, &mb.inherits}, func() error {
		members = append(members, mb)
		return nil
	})
	if err != nil {
		return fmt.Errorf("source: partition trees of the missing tables: %w", err)
	}
	all := make([]Table, len(members))
	byOID := map[uint32]Table{}
	for i, x := range members {
		all[i] = x.t
		byOID[x.t.OID] = x.t
	}
	exists, err := RelationsExist(ctx, dst, all)
	if err != nil {
		return fmt.Errorf("destination: look up the tables to create: %w", err)
	}
	selected := map[uint32]bool{}
	for _, t := range sel {
		selected[t.OID] = true
	}
	missingOf := map[uint32]string{} // root -> a missing member
	for i, x := range members {
		if !exists[i] && missingOf[x.root] == "" {
			missingOf[x.root] = x.t.String()
		}
	}
	for i, x := range members {
		root := byOID[x.root]
		switch {
		case x.inherits:
			return &SchemaError{Side: "source", Table: x.t.String(),
				Why: "inherits from another table (table inheritance): --create-missing does not create inheritance children; create it on the destination first"}
		case !exists[i]:
		case x.t.OID == x.root && selected[x.t.OID]:
			return &SchemaError{Side: "destination", Table: x.t.String(),
				Why: "exists there, but the name selecting it does not find it (another search_path?); name the table schema-qualified"}
		case x.t.OID == x.root:
			return &SchemaError{Side: "destination", Table: x.t.String(),
				Why: fmt.Sprintf("exists there but lacks partition(s) the source has (%s among them): --create-missing creates whole partition trees only and never alters an existing table; create them with the source's bounds",
					missingOf[x.root])}
		default:
			return &SchemaError{Side: "destination", Table: x.t.String(),
				Why: fmt.Sprintf("exists there while the partitioned table %s it belongs to on the source does not: --create-missing creates whole partition trees only; drop or rename it, or create the tree by hand", root)}
		}
	}
	m.Tables = all
	return nil
}

// RelationsExist says, for each table, whether the destination has a
// relation of its schema and name, in one query.
func RelationsExist(ctx context.Context, q Querier, ts []Table) ([]bool, error) {
	schemas, names := make([]string, len(ts)), make([]string, len(ts))
	for i, t := range ts {
		schemas[i], names[i] = t.Schema, t.Name
	}
	return existByName(ctx, q, `
		SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		               WHERE n.nspname = x.s AND c.relname = x.n)
		FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(s, n, i) ORDER BY x.i`, schemas, names)
}

func existByName(ctx context.Context, q Querier, sql string, schemas, names []string) ([]bool, error) {
	if len(names) == 0 {
		return nil, nil
	}
	rows, err := q.Query(ctx, sql, schemas, names)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[bool])
	if err == nil && len(out) != len(names) {
		err = fmt.Errorf("%d answers for %d names", len(out), len(names))
	}
	return out, err
}

// sequences finds the sequences the created tables' defaults use that no
// created table owns (pg_dump dumps owned ones, serial and identity, with
// their table).
func (m *Missing) sequences(ctx context.Context, src, dst Querier, creating map[uint32]bool) error {
	rows, err := src.Query(ctx, `
		SELECT DISTINCT ad.adrelid, s.oid, n.nspname, s.relname, COALESCE(o.refobjid, 0), COALESCE(on_.nspname || '.' || oc.relname, '')
		FROM pg_catalog.pg_attrdef ad
		JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_attrdef'::regclass AND d.objid = ad.oid
		     AND d.refclassid = 'pg_catalog.pg_class'::regclass
		JOIN pg_catalog.pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
		JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace
		LEFT JOIN pg_catalog.pg_depend o ON o.classid = 'pg_catalog.pg_class'::regclass AND o.objid = s.oid
		     AND o.refclassid = 'pg_catalog.pg_class'::regclass AND o.deptype IN ('a', 'i')
		LEFT JOIN pg_catalog.pg_class oc ON oc.oid = o.refobjid
		LEFT JOIN pg_catalog.pg_namespace on_ ON on_.oid = oc.relnamespace
		WHERE ad.adrelid = ANY($1::oid[])
		ORDER BY n.nspname, s.relname`, oidsOf(m.Tables))
	if err != nil {
		return fmt.Errorf("source: sequences of the missing tables: %w", err)
	}
	type use struct {
		table, owner uint32
		seq          Table
		ownerName    string
	}
	var uses []use
	var u use
	_, err = pgx.ForEachRow(rows, []any{&u.table, &u.seq.OID, &u.seq.Schema, &u.seq.Name, &u.owner, &u.ownerName}, func() error {
		if !creating[u.owner] {
			uses = append(uses, u)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("source: sequences of the missing tables: %w", err)
	}
	seqs := make([]Table, len(uses))
	for i, x := range uses {
		seqs[i] = x.seq
	}
	exists, err := RelationsExist(ctx, dst, seqs)
	if err != nil {
		return fmt.Errorf("destination: look up sequences: %w", err)
	}
	added := map[uint32]bool{}
	for i, x := range uses {
		switch {
		case exists[i], added[x.seq.OID]:
		case x.owner != 0:
			return &SchemaError{Side: "destination", Table: x.seq.String(),
				Why: fmt.Sprintf("is missing, and a default of %s uses it while it belongs to table %s, which --create-missing does not create: select that table too, or create the sequence on the destination",
					tableName(m.Tables, x.table), x.ownerName)}
		default:
			added[x.seq.OID] = true
			m.Sequences = append(m.Sequences, x.seq)
		}
	}
	return nil
}

func tableName(ts []Table, oid uint32) string {
	for _, t := range ts {
		if t.OID == oid {
			return t.String()
		}
	}
	return fmt.Sprintf("table %d", oid)
}

// foreignKeys checks that every foreign key of the created tables
// references a created table or one the destination has; the latter are
// FKTargets.
func (m *Missing) foreignKeys(ctx context.Context, src, dst Querier, creating map[uint32]bool) error {
	rows, err := src.Query(ctx, `
		SELECT con.conrelid, con.conname, con.confrelid, n.nspname, c.relname
		FROM pg_catalog.pg_constraint con
		JOIN pg_catalog.pg_class c ON c.oid = con.confrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE con.contype = 'f' AND con.conparentid = 0 AND con.conrelid = ANY($1::oid[])
		ORDER BY n.nspname, c.relname, con.conname`, oidsOf(m.Tables))
	if err != nil {
		return fmt.Errorf("source: foreign keys of the missing tables: %w", err)
	}
	type fk struct {
		table  uint32
		name   string
		target Table
	}
	var fks []fk
	var f fk
	_, err = pgx.ForEachRow(rows, []any{&f.table, &f.name, &f.target.OID, &f.target.Schema, &f.target.Name}, func() error {
		if !creating[f.target.OID] {
			fks = append(fks, f)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("source: foreign keys of the missing tables: %w", err)
	}
	targets := make([]Table, len(fks))
	for i, x := range fks {
		targets[i] = x.target
	}
	exists, err := RelationsExist(ctx, dst, targets)
	if err != nil {
		return fmt.Errorf("destination: look up the tables foreign keys reference: %w", err)
	}
	added := map[string]bool{}
	for i, x := range fks {
		if !exists[i] {
			return &SchemaError{Side: "destination", Table: tableName(m.Tables, x.table),
				Why: fmt.Sprintf("cannot be created: its foreign key %s references %s, which the destination lacks and the selection does not include: select %s too, or create it on the destination",
					quoteList([]string{x.name}), x.target, x.target)}
		}
		if t := x.target.String(); !added[t] {
			added[t] = true
			m.FKTargets = append(m.FKTargets, Table{Schema: x.target.Schema, Name: x.target.Name})
		}
	}
	return nil
}

// types finds the user-defined types the created tables' columns need
// (through array elements, domain base types, composite attributes and
// range subtypes too, and a typed table's type) that the destination lacks.
func (m *Missing) types(ctx context.Context, src, dst Querier, creating map[uint32]bool) error {
	rows, err := src.Query(ctx, `
		WITH RECURSIVE deps(oid) AS (
			SELECT a.atttypid FROM pg_catalog.pg_attribute a
			WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
			UNION
			SELECT c.reloftype FROM pg_catalog.pg_class c WHERE c.oid = ANY($1::oid[]) AND c.reloftype <> 0
			UNION
			SELECT x.oid FROM deps JOIN pg_catalog.pg_type ty ON ty.oid = deps.oid
			CROSS JOIN LATERAL (
				SELECT ty.typelem WHERE ty.typelem <> 0
				UNION ALL SELECT ty.typbasetype WHERE ty.typbasetype <> 0
				UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a
				          WHERE ty.typtype = 'c' AND a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped
				UNION ALL SELECT r.rngsubtype FROM pg_catalog.pg_range r WHERE r.rngtypid = ty.oid
				UNION ALL SELECT r.rngtypid FROM pg_catalog.pg_range r WHERE r.rngmultitypid = ty.oid -- a multirange needs its range
			) x(oid)
		)
		SELECT ty.oid, n.nspname, ty.typname, ty.typtype::text, COALESCE(ty.typrelid::oid, 0), COALESCE(rc.relkind::text, ''),
		       COALESCE((SELECT e.extname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
		                 WHERE d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = ty.oid
		                   AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e' LIMIT 1), ''),
		       COALESCE((SELECT pg_catalog.array_agg(con.oid ORDER BY con.oid) FROM pg_catalog.pg_constraint con
		                 WHERE con.contypid = ty.oid AND NOT con.convalidated), '{}')
		FROM deps JOIN pg_catalog.pg_type ty ON ty.oid = deps.oid
		JOIN pg_catalog.pg_namespace n ON n.oid = ty.typnamespace
		LEFT JOIN pg_catalog.pg_class rc ON rc.oid = ty.typrelid
		WHERE ty.oid >= $2
		  AND ty.typtype <> 'm' -- a multirange comes with its range
		  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type el WHERE el.typarray = ty.oid) -- an array comes with its element
		ORDER BY n.nspname, ty.typname`, oidsOf(m.Tables), firstNormalOID)
	if err != nil {
		return fmt.Errorf("source: types of the missing tables: %w", err)
	}
	type found struct {
		t            Type
		typtype      string
		rel          uint32
		relkind, ext string
	}
	var all []found
	var x found
	_, err = pgx.ForEachRow(rows, []any{&x.t.OID, &x.t.Schema, &x.t.Name, &x.typtype, &x.rel, &x.relkind, &x.ext, &x.t.Constraints}, func() error {
		if !creating[x.rel] { // a created table's row type comes with it
			all = append(all, x)
		}
		x.t.Constraints = nil
		return nil
	})
	if err != nil {
		return fmt.Errorf("source: types of the missing tables: %w", err)
	}
	schemas, names := make([]string, len(all)), make([]string, len(all))
	for i, f := range all {
		schemas[i], names[i] = f.t.Schema, f.t.Name
	}
	exists, err := existByName(ctx, dst, `
		SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
		               WHERE n.nspname = x.s AND t.typname = x.n)
		FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(s, n, i) ORDER BY x.i`, schemas, names)
	if err != nil {
		return fmt.Errorf("destination: look up types: %w", err)
	}
	for i, f := range all {
		if exists[i] {
			continue
		}
		refuse := func(why string) error {
			return &SchemaError{Side: "destination", Table: "type " + f.t.String(), Why: "is missing (a column of a table to create needs it): " + why}
		}
		switch {
		case f.ext != "":
			return refuse(fmt.Sprintf("it belongs to extension %s: install that extension on the destination first (CREATE EXTENSION %s)",
				pgx.Identifier{f.ext}.Sanitize(), pgx.Identifier{f.ext}.Sanitize()))
		case f.typtype == "e":
			f.t.Kind = "enum"
		case f.typtype == "d":
			f.t.Kind = "domain"
		case f.typtype == "r":
			f.t.Kind = "range"
		case f.typtype == "c" && f.relkind == "c":
			f.t.Kind = "composite"
		case f.typtype == "c":
			return refuse("it is the row type of a table that is neither selected nor on the destination: select that table too")
		default:
			return refuse("it is a base type, which needs its C functions: create it on the destination first")
		}
		m.Types = append(m.Types, f.t)
	}
	return nil
}

// schemas finds the schemas to create and checks the destination role may
// create them, and create in the existing ones.
func (m *Missing) schemas(ctx context.Context, dst Querier) error {
	var wanted []string
	add := func(s string) {
		if !slices.Contains(wanted, s) {
			wanted = append(wanted, s)
		}
	}
	for _, t := range m.Tables {
		add(t.Schema)
	}
	for _, t := range m.Sequences {
		add(t.Schema)
	}
	for _, t := range m.Types {
		add(t.Schema)
	}
	slices.Sort(wanted)
	rows, err := dst.Query(ctx, `
		SELECT x.s, n.oid IS NOT NULL, COALESCE(pg_catalog.has_schema_privilege(n.oid, 'CREATE'), false),
		       pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE'), current_user::text, pg_catalog.current_database()::text
		FROM unnest($1::text[]) WITH ORDINALITY AS x(s, i)
		LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = x.s
		ORDER BY x.i`, wanted)
	if err != nil {
		return fmt.Errorf("destination: look up schemas: %w", err)
	}
	var name, role, db string
	var exists, canCreateIn, canCreateSchema bool
	var noPriv []string
	_, err = pgx.ForEachRow(rows, []any{&name, &exists, &canCreateIn, &canCreateSchema, &role, &db}, func() error {
		switch {
		case !exists && !canCreateSchema:
			noPriv = append(noPriv, fmt.Sprintf("the CREATE privilege on database %s, to create schema %s", pgx.Identifier{db}.Sanitize(), pgx.Identifier{name}.Sanitize()))
		case !exists:
			m.Schemas = append(m.Schemas, name)
		case !canCreateIn:
			noPriv = append(noPriv, "the CREATE privilege on schema "+pgx.Identifier{name}.Sanitize())
		}
		m.role = role
		return nil
	})
	if err != nil {
		return fmt.Errorf("destination: look up schemas: %w", err)
	}
	if len(noPriv) > 0 {
		return &SchemaError{Side: "destination", Table: "--create-missing",
			Why: fmt.Sprintf("role %s lacks %s", pgx.Identifier{m.role}.Sanitize(), strings.Join(noPriv, "; "))}
	}
	return nil
}
