package partition

import (
	"context"
	"fmt"
	"strings"
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

// checkExtraLeaves fails, naming them, when destination-only leaves of
// parent d hold rows.
func checkExtraLeaves(ctx context.Context, dst Querier, d Table, extra []Table) error {
	var full []string
	for _, l := range extra {
		// Under row_security = off a policy would make the check fail.
		if err := checkRowSecurity(ctx, dst, "destination", l); err != nil {
			return err
		}
		has, err := hasRows(ctx, dst, l)
		if err != nil {
			return fmt.Errorf("destination: rows of partition %s: %w", l, err)
		}
		if has {
			full = append(full, l.String())
		}
	}
	if len(full) == 0 {
		return nil
	}
	return &SchemaError{Side: "destination", Table: d.String(),
		Why: fmt.Sprintf("partition(s) %s hold rows but do not exist on the source, so the copy would leave those rows in place; "+
			"detach them (ALTER TABLE %s DETACH PARTITION ...) or empty them on the destination", strings.Join(full, ", "), d)}
}

// hasRows tells whether t itself (not its inheritance children) holds a row.
func hasRows(ctx context.Context, q Querier, t Table) (bool, error) {
	var has bool
	err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM ONLY "+t.String()+")").Scan(&has)
	return has, err
}

// planDestOnly makes the verify unit of a destination-only leaf: its
// source side is empty, so every row the leaf holds is a difference.
func planDestOnly(ctx context.Context, dst Querier, d Table, o Options) (Unit, error) {
	dc, err := Columns(ctx, dst, d)
	if err != nil {
		return Unit{}, fmt.Errorf("destination: columns of %s: %w", d, err)
	}
	u := Unit{Dest: d, DestOnly: true, FormatWhy: "the partition exists only on the destination",
		NoKey: "the partition exists only on the destination: every row in it is extra; detach it or empty it on the destination"}
	for _, c := range dc {
		if !c.Generated {
			u.Columns = append(u.Columns, c.Name)
		}
	}
	if err := checkPrivilege(ctx, dst, "destination", d, o); err != nil {
		return Unit{}, err
	}
	if err := checkRowSecurity(ctx, dst, "destination", d); err != nil {
		return Unit{}, err
	}
	if u.Estimate, err = estimate(ctx, dst, d, false); err != nil {
		return Unit{}, fmt.Errorf("destination: size of %s: %w", d, err)
	}
	return u, nil
}
