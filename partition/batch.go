package partition

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The plan reads each side's catalog in a fixed number of queries, whatever
// the number of units: every read here takes the OIDs (or names) of the
// whole selection as one array, joined with unnest so that the server
// hash-joins it against its catalogs, and the answers are matched up in Go
// through maps. Nothing here may grow faster than the number of relations.

func oidsOf(ts []Table) []uint32 {
	out := make([]uint32, len(ts))
	for i, t := range ts {
		out[i] = t.OID
	}
	return out
}

// execQ runs a statement that returns nothing through a Querier.
func execQ(ctx context.Context, q Querier, sql string) error {
	rows, err := q.Query(ctx, sql)
	if err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}

// resolveAll looks names up as the server's regclass would (search_path,
// quoting and all), in one query. A name that is not found comes back as a
// Table with OID 0. A name that is not valid SQL makes the server reject
// the whole query; then the names are looked up one by one, after a
// savepoint, so the error names the culprit.
func resolveAll(ctx context.Context, q Querier, side string, names []string) ([]Table, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if err := execQ(ctx, q, "SAVEPOINT lockstep_resolve"); err != nil {
		return nil, fmt.Errorf("%s: resolve tables: %w", side, err)
	}
	rows, err := q.Query(ctx, `
		SELECT COALESCE(c.oid, 0), COALESCE(n.nspname, ''), COALESCE(c.relname, ''), COALESCE(c.relkind::text, '')
		FROM unnest($1::text[]) WITH ORDINALITY AS x(name, i)
		LEFT JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(x.name)
		LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		ORDER BY x.i`, names)
	var found []Table
	if err == nil {
		found, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Table, error) {
			var t Table
			err := r.Scan(&t.OID, &t.Schema, &t.Name, &t.Kind)
			return t, err
		})
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && ctx.Err() == nil {
		if rerr := execQ(ctx, q, "ROLLBACK TO SAVEPOINT lockstep_resolve"); rerr != nil {
			return nil, fmt.Errorf("%s: resolve tables: %w", side, rerr)
		}
		for _, n := range names {
			if _, err := Resolve(ctx, q, side, n); err != nil {
				var nf *NotFoundError
				if errors.As(err, &nf) && nf.Name == n {
					continue // merely missing: not what the server rejected
				}
				return nil, err
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: resolve tables: %w", side, err)
	}
	if len(found) != len(names) {
		return nil, fmt.Errorf("%s: resolve tables: %d answers for %d names", side, len(found), len(names))
	}
	return found, nil
}

// leavesOf lists, for each partitioned root, its leaf partitions
// (sub-partitions included) ordered by name, each with its bounds from the
// outermost level below the root down to the leaf, each bound after the
// partition key of its level (leaves of one name and bounds under other
// keys hold other rows). One query: the bounds are chained in Go from each
// node's parent.
func leavesOf(ctx context.Context, q Querier, roots []Table) (map[uint32][]Table, error) {
	out := make(map[uint32][]Table, len(roots))
	if len(roots) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `
		SELECT r.root, t.relid::oid, COALESCE(t.parentrelid::oid, 0), t.isleaf, n.nspname, c.relname, c.relkind::text,
		       COALESCE(pg_catalog.pg_get_expr(c.relpartbound, c.oid), ''),
		       CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) ELSE '' END
		FROM unnest($1::oid[]) AS r(root)
		CROSS JOIN LATERAL pg_catalog.pg_partition_tree(r.root::regclass) t
		JOIN pg_catalog.pg_class c ON c.oid = t.relid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		ORDER BY r.root, n.nspname, c.relname`, oidsOf(roots))
	if err != nil {
		return nil, err
	}
	type node struct {
		parent uint32
		bound  string
		key    string // a partitioned node's partition key
	}
	nodes := map[uint32]map[uint32]node{} // root -> relid -> node
	var leaves []struct {
		root uint32
		t    Table
	}
	var root, relid, parent uint32
	var leaf bool
	var t Table
	var key string
	_, err = pgx.ForEachRow(rows, []any{&root, &relid, &parent, &leaf, &t.Schema, &t.Name, &t.Kind, &t.Bound, &key}, func() error {
		if nodes[root] == nil {
			nodes[root] = map[uint32]node{}
		}
		nodes[root][relid] = node{parent: parent, bound: t.Bound, key: key}
		if leaf {
			t.OID = relid
			leaves = append(leaves, struct {
				root uint32
				t    Table
			}{root, t})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, l := range leaves {
		tree := nodes[l.root]
		var chain []string
		for id := l.t.OID; id != l.root && id != 0; id = tree[id].parent {
			chain = append(chain, tree[tree[id].parent].key+" "+tree[id].bound)
			if len(chain) > len(tree) {
				return nil, fmt.Errorf("partition tree of %d: a cycle at %s", l.root, l.t)
			}
		}
		bound := ""
		for i := len(chain) - 1; i >= 0; i-- { // outermost first
			if bound != "" {
				bound += " / "
			}
			bound += chain[i]
		}
		leafT := l.t
		leafT.Bound = bound
		out[l.root] = append(out[l.root], leafT)
	}
	return out, nil
}

// columnsOf lists the live columns of each table in physical order. Run it
// with search_path pinned (see PinCatalogPath) so that types outside
// pg_catalog come out schema-qualified.
func columnsOf(ctx context.Context, q Querier, ts []Table) (map[uint32][]Column, error) {
	rows, err := q.Query(ctx, `
		SELECT a.attrelid, a.attname, a.atttypid, a.atttypmod,
		       pg_catalog.format_type(a.atttypid, a.atttypmod),
		       a.atttypid < 16384 AND ty.typelem < 16384 AND ty.typbasetype = 0,
		       CASE WHEN ty.typtype = 'e' THEN 'enum'
		            WHEN ty.typtype = 'd' AND ty.typbasetype < 16384 AND bt.typelem < 16384
		            THEN 'domain over ' || pg_catalog.format_type(ty.typbasetype, ty.typtypmod)
		            ELSE '' END,
		       CASE WHEN ty.typtype = 'd' AND ty.typbasetype < 16384 AND bt.typelem < 16384 THEN ty.typbasetype ELSE 0 END,
		       CASE WHEN ty.typtype = 'd' AND ty.typbasetype < 16384 AND bt.typelem < 16384 THEN ty.typtypmod ELSE -1 END,
		       a.attgenerated <> '', a.attnotnull, a.atthasdef OR a.attidentity <> ''
		FROM unnest($1::oid[]) AS u(oid)
		JOIN pg_catalog.pg_attribute a ON a.attrelid = u.oid
		JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
		LEFT JOIN pg_catalog.pg_type bt ON bt.oid = ty.typbasetype
		WHERE a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attrelid, a.attnum`, oidsOf(ts))
	if err != nil {
		return nil, err
	}
	out := make(map[uint32][]Column, len(ts))
	var rel uint32
	var c Column
	user := map[uint32]bool{}
	_, err = pgx.ForEachRow(rows, []any{&rel, &c.Name, &c.TypeOID, &c.TypMod, &c.Type, &c.BuiltIn, &c.Wire, &c.BaseOID, &c.BaseTypMod, &c.Generated, &c.NotNull, &c.HasDefault},
		func() error {
			out[rel] = append(out[rel], c)
			if !c.BuiltIn {
				user[c.TypeOID] = true
			}
			return nil
		})
	if err != nil || len(user) == 0 {
		return out, err
	}
	composite, err := compositesOf(ctx, q, slices.Collect(maps.Keys(user)))
	if err != nil {
		return nil, fmt.Errorf("composite types: %w", err)
	}
	for _, cols := range out {
		for i := range cols {
			cols[i].Composite = composite[cols[i].TypeOID]
		}
	}
	return out, nil
}

// compositesOf describes, for each of the given types, the composite and
// user range types it is or holds (through arrays, domains, ranges,
// multiranges and the attributes of composites, to any depth): each by name
// with its live attributes in order, or its subtype, sorted by name. Types
// that hold neither are left out. One query; run with search_path pinned, like columnsOf.
func compositesOf(ctx context.Context, q Querier, types []uint32) (map[uint32]string, error) {
	rows, err := q.Query(ctx, `
		WITH RECURSIVE reach(root, t) AS (
		  SELECT u.t, u.t FROM unnest($1::oid[]) AS u(t)
		  UNION
		  SELECT r.root, n.t
		  FROM reach r
		  JOIN pg_catalog.pg_type ty ON ty.oid = r.t
		  CROSS JOIN LATERAL (
		    SELECT ty.typelem WHERE ty.typelem <> 0
		    UNION ALL SELECT ty.typbasetype WHERE ty.typbasetype <> 0
		    UNION ALL SELECT rg.rngsubtype FROM pg_catalog.pg_range rg WHERE rg.rngtypid = ty.oid
		    UNION ALL SELECT rg.rngtypid FROM pg_catalog.pg_range rg WHERE rg.rngmultitypid = ty.oid
		    UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a
		      WHERE ty.typtype = 'c' AND a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped
		  ) n(t)
		)
		SELECT r.root, pg_catalog.string_agg(pg_catalog.format_type(ty.oid, NULL) || ' (' || COALESCE(x.attrs, '') || ')', '; '
		                                     ORDER BY pg_catalog.format_type(ty.oid, NULL))
		FROM reach r
		JOIN pg_catalog.pg_type ty ON ty.oid = r.t AND (ty.typtype = 'c' OR ty.typtype = 'r' AND ty.oid >= 16384)
		CROSS JOIN LATERAL (
		  SELECT CASE WHEN ty.typtype = 'r'
		    THEN (SELECT 'range of ' || pg_catalog.format_type(rg.rngsubtype, NULL) FROM pg_catalog.pg_range rg WHERE rg.rngtypid = ty.oid)
		    ELSE (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname) || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
		          FROM pg_catalog.pg_attribute a
		          WHERE a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped) END
		) x(attrs)
		GROUP BY r.root`, types)
	if err != nil {
		return nil, err
	}
	out := map[uint32]string{}
	var root uint32
	var desc string
	_, err = pgx.ForEachRow(rows, []any{&root, &desc}, func() error {
		out[root] = desc
		return nil
	})
	return out, err
}

// privileges is what the current role may do with one table.
type privileges struct {
	read, lock, load bool // SELECT; UPDATE, DELETE or TRUNCATE (EXCLUSIVE lock); INSERT and TRUNCATE
}

// privilegesOf reads the current role's privileges on each table, and the
// role's name.
func privilegesOf(ctx context.Context, q Querier, ts []Table) (map[uint32]privileges, string, error) {
	var role string
	if err := q.QueryRow(ctx, "SELECT current_user::text").Scan(&role); err != nil {
		return nil, "", err
	}
	rows, err := q.Query(ctx, `
		SELECT u.oid, has_table_privilege(u.oid, 'SELECT'),
		       has_table_privilege(u.oid, 'UPDATE') OR has_table_privilege(u.oid, 'DELETE') OR has_table_privilege(u.oid, 'TRUNCATE'),
		       has_table_privilege(u.oid, 'INSERT') AND has_table_privilege(u.oid, 'TRUNCATE')
		FROM unnest($1::oid[]) AS u(oid)`, oidsOf(ts))
	if err != nil {
		return nil, "", err
	}
	out := make(map[uint32]privileges, len(ts))
	var rel uint32
	var p privileges
	_, err = pgx.ForEachRow(rows, []any{&rel, &p.read, &p.lock, &p.load}, func() error {
		out[rel] = p
		return nil
	})
	return out, role, err
}

// Trigger is a user trigger on a destination table.
type Trigger struct {
	Name string
	// Enabled is pg_trigger.tgenabled: O (fires normally), A (always),
	// R (only under session_replication_role = replica) or D (disabled).
	Enabled string
	// BeforeRow: a BEFORE INSERT FOR EACH ROW trigger, which can change or
	// drop the rows COPY loads.
	BeforeRow bool
	// Alterable: the role may disable it (it owns the table, or is a
	// superuser).
	Alterable bool
	// Deferrable: a constraint trigger that may fire at the end of the
	// transaction rather than with the statement (DEFERRABLE).
	Deferrable bool
}

// Fires reports whether the trigger runs for the rows a copy loads (in
// the default replication role).
func (t Trigger) Fires() bool { return t.Enabled == "O" || t.Enabled == "A" }

// extrasOf lists what slows or changes rows on their way into each table:
// its user triggers and its own foreign keys.
func extrasOf(ctx context.Context, q Querier, ts []Table) (triggers map[uint32][]Trigger, fks map[uint32][]string, err error) {
	rows, err := q.Query(ctx, `
		SELECT t.tgrelid, 'trigger', t.tgname::text, t.tgenabled::text,
		       t.tgtype & 7 = 7, -- ROW (1), BEFORE (2), INSERT (4)
		       pg_catalog.pg_has_role(c.relowner, 'USAGE'), t.tgdeferrable
		FROM unnest($1::oid[]) AS u(oid) JOIN pg_catalog.pg_trigger t ON t.tgrelid = u.oid
		JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
		WHERE NOT t.tgisinternal
		UNION ALL
		SELECT c.conrelid, 'fk', c.conname || ' -> ' || c.confrelid::regclass::text, '', false, false, false
		FROM unnest($1::oid[]) AS u(oid) JOIN pg_catalog.pg_constraint c ON c.conrelid = u.oid
		WHERE c.contype = 'f'
		ORDER BY 1, 2, 3`, oidsOf(ts))
	if err != nil {
		return nil, nil, err
	}
	triggers, fks = map[uint32][]Trigger{}, map[uint32][]string{}
	var rel uint32
	var kind, name, enabled string
	var beforeRow, alterable, deferrable bool
	_, err = pgx.ForEachRow(rows, []any{&rel, &kind, &name, &enabled, &beforeRow, &alterable, &deferrable}, func() error {
		if kind == "trigger" {
			triggers[rel] = append(triggers[rel], Trigger{Name: name, Enabled: enabled, BeforeRow: beforeRow, Alterable: alterable,
				Deferrable: deferrable})
		} else {
			fks[rel] = append(fks[rel], name)
		}
		return nil
	})
	return triggers, fks, err
}

// estimatesOf reads catalog statistics for each unit's table: its own for
// an ordinary table, summed over its leaf partitions for a partitioned one.
func estimatesOf(ctx context.Context, q Querier, ts []Table) (map[uint32]Estimate, error) {
	var plain, parents []uint32
	for _, t := range ts {
		if t.Partitioned() {
			parents = append(parents, t.OID)
		} else {
			plain = append(plain, t.OID)
		}
	}
	rows, err := q.Query(ctx, `
		SELECT x.unit, CASE WHEN bool_or(c.reltuples < 0) THEN -1 ELSE sum(c.reltuples)::bigint END,
		       COALESCE(sum(pg_catalog.pg_table_size(c.oid)), 0)::bigint
		FROM (SELECT p AS unit, p AS relid FROM unnest($1::oid[]) AS p
		      UNION ALL
		      SELECT r, t.relid FROM unnest($2::oid[]) AS r, pg_catalog.pg_partition_tree(r::regclass) t WHERE t.isleaf) x
		JOIN pg_catalog.pg_class c ON c.oid = x.relid
		GROUP BY x.unit`, plain, parents)
	if err != nil {
		return nil, err
	}
	out := make(map[uint32]Estimate, len(ts))
	var rel uint32
	var e Estimate
	_, err = pgx.ForEachRow(rows, []any{&rel, &e.Rows, &e.Bytes}, func() error {
		out[rel] = e
		return nil
	})
	return out, err
}

// countChunk is how many tables one exact-count query counts.
const countChunk = 200

// countRows counts each table's rows (ONLY the table itself unless it is
// partitioned, as its COPY reads it), a chunk of tables per query.
func countRows(ctx context.Context, q Querier, ts []Table) (map[uint32]int64, error) {
	out := make(map[uint32]int64, len(ts))
	for i := 0; i < len(ts); i += countChunk {
		chunk := ts[i:min(i+countChunk, len(ts))]
		sql := ""
		for j, t := range chunk {
			if j > 0 {
				sql += " UNION ALL "
			}
			sql += fmt.Sprintf("SELECT %d::oid, pg_catalog.count(*) FROM %s", t.OID, onlyName(t))
		}
		rows, err := q.Query(ctx, sql)
		if err != nil {
			return nil, err
		}
		var rel uint32
		var n int64
		if _, err := pgx.ForEachRow(rows, []any{&rel, &n}, func() error { out[rel] = n; return nil }); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// onlyName is the table as a FROM clause reads only its own rows: a
// partitioned table is all its partitions; an ordinary one without its
// inheritance children.
func onlyName(t Table) string {
	if t.Partitioned() {
		return t.String()
	}
	return "ONLY " + t.String()
}
