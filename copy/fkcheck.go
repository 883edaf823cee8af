package copy

import (
	"context"
	"fmt"
	"slices"

	"lockstep/partition"
)

// FKCheck is a foreign key that a --fk-mode replica copy did not check:
// the query that finds the referencing rows whose key the referenced table
// lacks, and, with Options.CheckFKs, how many it found.
type FKCheck struct {
	Constraint string `json:"constraint"`
	Table      string `json:"table"`
	References string `json:"references"`
	Query      string `json:"query"`
	Orphans    *int64 `json:"orphans,omitempty"` // nil: not run
}

func (c FKCheck) String() string {
	if c.Orphans == nil {
		return fmt.Sprintf("foreign key %s on %s -> %s was not checked (--fk-mode replica); find its orphans with: %s",
			c.Constraint, c.Table, c.References, c.Query)
	}
	return fmt.Sprintf("foreign key %s on %s -> %s: %d orphan row(s) on the destination", c.Constraint, c.Table, c.References, *c.Orphans)
}

// uncheckedKeys lists the foreign keys of the groups that committed and
// were copied without them being checked, each row to count once: a key
// checked over all of its referencing table stands for its checks over
// single partitions of it. The groups a resumed run skips count too: an
// earlier run copied them, and the orphans it left are still there.
func uncheckedKeys(groups []partition.Group, rep *Report) []partition.ForeignKey {
	var all []partition.ForeignKey
	for i := range groups {
		if s := rep.Units[i].Status; s == StatusOK || s == StatusSkipped {
			all = append(all, groups[i].Unchecked...)
		}
	}
	var out []partition.ForeignKey
	for i, k := range all {
		covered := slices.ContainsFunc(all[:i], func(x partition.ForeignKey) bool { return x.Covers(k) }) ||
			slices.ContainsFunc(all[i+1:], func(x partition.ForeignKey) bool { return x.Covers(k) && !k.Covers(x) })
		if !covered {
			out = append(out, k)
		}
	}
	return out
}

// checkForeignKeys records, after a --fk-mode replica run, the foreign keys
// it did not check, and with Options.CheckFKs counts their orphans on the
// destination (in one read-only snapshot). Orphans make the run's
// Orphans count, which is a verification failure.
func (p *Plan) checkForeignKeys(ctx context.Context, rep *Report) error {
	keys := uncheckedKeys(p.groups, rep)
	if len(keys) == 0 {
		return nil
	}
	for _, k := range keys {
		rep.ForeignKeys = append(rep.ForeignKeys, FKCheck{Constraint: k.Name, Table: k.Referencing.String(),
			References: k.Referenced.String(), Query: k.OrphansSQL()})
	}
	if !p.opts.CheckFKs {
		return nil
	}
	conn, err := p.dst.connect(ctx)
	if err != nil {
		return err
	}
	defer closeConn(ctx, conn)
	if err := exec(ctx, conn, beginSnapshot); err != nil {
		return fmt.Errorf("destination: check foreign keys: %w", err)
	}
	defer rollback(ctx, conn)
	for i := range rep.ForeignKeys {
		c := &rep.ForeignKeys[i]
		var n int64
		if err := conn.QueryRow(ctx, c.Query).Scan(&n); err != nil {
			return fmt.Errorf("destination: check foreign key %s on %s: %w", c.Constraint, c.Table, err)
		}
		c.Orphans = &n
		rep.Orphans += n
	}
	return nil
}
