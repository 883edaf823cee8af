package partition

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Destination-only leaf partitions: a partitioned parent selected with
// --table may have leaves (a DEFAULT partition, say) on the destination that
// the source lacks. Copying leaf by leaf never touches them, so rows in
// them would survive a copy as rows of the parent the source lacks.
//
// A copy accepts such leaves only while they are empty (they hold nothing
// stale) and refuses otherwise. Emptiness is checked at plan time and can
// change later, so verify compares each such leaf as a unit of its own
// whose source side is empty: any row in it is a difference.

// extraLeaves are the destination-only leaves of one parent.
type extraLeaves struct {
	parent Table
	leaves []Table
}

// checkExtraLeaves fails, naming them, when destination-only leaves of a
// parent hold rows, parent by parent in the order given. One query finds
// their row-level security (under row_security = off a policy would make
// the check fail) and one more, per chunk of leaves, which hold rows.
func checkExtraLeaves(ctx context.Context, dst Querier, extras []extraLeaves) error {
	var all []Table
	for _, e := range extras {
		all = append(all, e.leaves...)
	}
	if len(all) == 0 {
		return nil
	}
	rls, err := rowSecurityOf(ctx, dst, "destination", all)
	if err != nil {
		return fmt.Errorf("destination: row-level security: %w", err)
	}
	for _, l := range all {
		if err := rls[l.OID]; err != nil {
			return err
		}
	}
	has, err := hasRows(ctx, dst, all)
	if err != nil {
		return fmt.Errorf("destination: rows of destination-only partitions: %w", err)
	}
	for _, e := range extras {
		var full []string
		for _, l := range e.leaves {
			if has[l.OID] {
				full = append(full, l.String())
			}
		}
		if len(full) > 0 {
			return &SchemaError{Side: "destination", Table: e.parent.String(),
				Why: fmt.Sprintf("partition(s) %s hold rows but do not exist on the source, so the copy would leave those rows in place; "+
					"detach them (ALTER TABLE %s DETACH PARTITION ...) or empty them on the destination", strings.Join(full, ", "), e.parent)}
		}
	}
	return nil
}

// hasRows tells which tables themselves (not their inheritance children)
// hold a row, a chunk of tables per query.
func hasRows(ctx context.Context, q Querier, ts []Table) (map[uint32]bool, error) {
	out := make(map[uint32]bool, len(ts))
	for i := 0; i < len(ts); i += countChunk {
		var sql strings.Builder
		for j, t := range ts[i:min(i+countChunk, len(ts))] {
			if j > 0 {
				sql.WriteString(" UNION ALL ")
			}
			fmt.Fprintf(&sql, "SELECT %d::oid, EXISTS (SELECT 1 FROM %s)", t.OID, onlyName(t))
		}
		rows, err := q.Query(ctx, sql.String())
		if err != nil {
			return nil, err
		}
		var rel uint32
		var has bool
		if _, err := pgx.ForEachRow(rows, []any{&rel, &has}, func() error { out[rel] = has; return nil }); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// planDestOnly makes the verify unit of a destination-only leaf: its
// source side is empty, so every row the leaf holds is a difference.
func planDestOnly(d Table, dc *catalog, o Options) (Unit, error) {
	u := Unit{Dest: d, DestOnly: true, FormatWhy: "the partition exists only on the destination",
		NoKey: "the partition exists only on the destination: every row in it is extra; detach it or empty it on the destination"}
	for _, c := range dc.columns[d.OID] {
		if !c.Generated {
			u.Columns = append(u.Columns, c.Name)
		}
	}
	if err := checkPrivileges("destination", d, dc, o); err != nil {
		return Unit{}, err
	}
	if err := dc.rowSecurity[d.OID]; err != nil {
		return Unit{}, err
	}
	u.Estimate = dc.estimates[d.OID]
	return u, nil
}
