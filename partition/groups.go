package partition

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Foreign keys and unit groups.
//
// TRUNCATE of a table fails while another table references it through a
// foreign key, unless that table is truncated in the same statement. So the
// selected tables that reference one another are one unit group, copied in
// one pair of transactions: every member locked on the destination
// (referencing tables first: see copy's lockOrder), then on the source, one TRUNCATE of
// them all, a COPY of each member with referenced tables before the tables
// that reference them (so the foreign keys are checked as rows arrive),
// each member verified, one commit point. Groups are the connected
// components of the foreign keys among the selected tables.
//
// A partitioned table whose partitions reference a group's tables (monthly
// partitions of payment referencing customer) is not swallowed whole into
// the group, which would block writes to every partition at once:
// PostgreSQL requires TRUNCATE customer to name the partitioned table, so
// the group truncates it (all its partitions) on the destination, and each
// partition is then copied as a unit of its own once the group has
// committed. Until its unit commits a partition is empty on the
// destination, which is harmless while the application still reads the
// source. This is done only when every partition of that table is selected
// and no partition is referenced by a selected table or has foreign keys of
// its own; otherwise, and always with FKGroupStrict, the partitions join
// the group. A foreign-key cycle is one group whose constraints are
// deferred to the commit (they must be DEFERRABLE). Self-references need
// nothing: the foreign keys of a COPY are checked at its end.

// FKMode says how foreign keys that reference selected tables are handled.
type FKMode string

const (
	// FKGroup copies tables that must be truncated together as one group,
	// splitting out the partitions of referencing partitioned tables.
	FKGroup FKMode = "group"
	// FKGroupStrict keeps such partitions in the group.
	FKGroupStrict FKMode = "group-strict"
	// FKReplica copies every table as its own unit with
	// session_replication_role = replica on the destination, so foreign-key
	// triggers do not fire; a table referenced from outside its unit is
	// emptied with DELETE, since TRUNCATE checks foreign keys anyway.
	FKReplica FKMode = "replica"
)

// ParseFKMode turns a flag value into an FKMode.
func ParseFKMode(s string) (FKMode, error) {
	switch m := FKMode(s); m {
	case FKGroup, FKGroupStrict, FKReplica:
		return m, nil
	}
	return "", fmt.Errorf("unknown --fk-mode %q (want group, group-strict or replica)", s)
}

// Group is what one pair of transactions copies: a single unit, or units
// whose destination tables must be truncated together.
type Group struct {
	Units []Unit // members in copy order: referenced before referencing
	// Truncate lists partitioned tables truncated on the destination with
	// the group whose partitions are units of their own, copied after it.
	Truncate []Table
	// TruncateLeaves holds, for each Truncate table, the OIDs of the leaf
	// partitions the plan found (and copies), in ascending order: a
	// partition created since would be emptied and never copied.
	TruncateLeaves [][]uint32
	// Why says why the members are one group; empty for a lone table.
	Why string
	// After lists groups (indexes into the plan's groups) that must have
	// committed before this one starts.
	After []int
	// Deferred: the members' foreign keys form a cycle; they are checked
	// at the commit (SET CONSTRAINTS ALL DEFERRED).
	Deferred bool
	// Delete: --fk-mode replica, and something references the table: it is
	// emptied with DELETE rather than TRUNCATE.
	Delete bool
	// Unchecked lists, under --fk-mode replica, the foreign keys from and
	// to the unit's table that the copy did not check (see OrphansSQL).
	Unchecked []ForeignKey
}

// Name names the group in messages: its lone unit, or its first member and
// how many more.
func (g *Group) Name() string {
	if len(g.Units) == 1 {
		return g.Units[0].Name()
	}
	return fmt.Sprintf("%s (+%d more)", g.Units[0].Name(), len(g.Units)-1)
}

// Estimate sums the members' estimates.
func (g *Group) Estimate() Estimate {
	var e Estimate
	e.Exact = true
	for _, u := range g.Units {
		if u.Estimate.Rows < 0 || e.Rows < 0 {
			e.Rows = -1
		} else {
			e.Rows += u.Estimate.Rows
		}
		e.Bytes += u.Estimate.Bytes
		e.Exact = e.Exact && u.Estimate.Exact
	}
	return e
}

// ForeignKey is a foreign key that references one of the selected tables.
type ForeignKey struct {
	OID         uint32
	Name        string
	Referencing Table // the table whose rows hold the key
	Referenced  Table
	Deferrable  bool
	// PartitionClone: the constraint is the copy, on a partition, of its
	// partitioned table's constraint, which stands for it.
	PartitionClone bool
	Columns        []string // referencing columns
	RefColumns     []string // referenced columns
	// Root is the foreign key as declared: the constraint that this one
	// is a partition's clone of (through any number of levels), or this
	// one. Its referenced table is the one every referencing row must find
	// its key in (a partitioned table, not one of its partitions). Nil:
	// this one.
	Root *ForeignKey
}

func (f ForeignKey) declared() ForeignKey {
	if f.Root == nil {
		return f
	}
	return *f.Root
}

// Unchecked is the check that a --fk-mode replica copy of one end of f
// leaves to do: the declared key's, over all of its referencing table when
// the copied table is the referenced one, or over just the copied
// referencing table (a partition of the declared one, say).
func (f ForeignKey) Unchecked(copiedReferenced bool) ForeignKey {
	d := f.declared()
	c := d
	if !copiedReferenced {
		c.Referencing = f.Referencing
	}
	c.Root = &d
	return c
}

// Covers reports whether check f (see Unchecked) counts every row that
// check x counts: the same declared key, over all of its referencing table
// or over the same table.
func (f ForeignKey) Covers(x ForeignKey) bool {
	return f.OID == x.OID && (f.Referencing.OID == x.Referencing.OID || f.Referencing.OID == f.declared().Referencing.OID)
}

func (f ForeignKey) String() string {
	return fmt.Sprintf("%s on %s", pgx.Identifier{f.Name}.Sanitize(), f.Referencing)
}

// foreignKeysOf lists the foreign keys that reference any of ts, and with
// from also those that any of ts hold.
func foreignKeysOf(ctx context.Context, q Querier, ts []Table, from bool) ([]ForeignKey, error) {
	join := "c.confrelid = u.oid"
	if from {
		join = "(c.confrelid = u.oid OR c.conrelid = u.oid)"
	}
	rows, err := q.Query(ctx, `
		SELECT c.oid, c.conname, r.oid, rn.nspname, r.relname, r.relkind::text,
		       f.oid, fn.nspname, f.relname, f.relkind::text, c.condeferrable,
		       c.conparentid <> 0 AND p.conrelid IS DISTINCT FROM c.conrelid,
		       ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(n, i)
		             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
		       ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS k(n, i)
		             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i),
		       tc.oid, tc.conname, tr.oid, trn.nspname, tr.relname, tr.relkind::text,
		       tf.oid, tfn.nspname, tf.relname, tf.relkind::text
		FROM unnest($1::oid[]) AS u(oid)
		JOIN pg_catalog.pg_constraint c ON `+join+` AND c.contype = 'f'
		JOIN pg_catalog.pg_class r ON r.oid = c.conrelid
		JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
		JOIN pg_catalog.pg_class f ON f.oid = c.confrelid
		JOIN pg_catalog.pg_namespace fn ON fn.oid = f.relnamespace
		LEFT JOIN pg_catalog.pg_constraint p ON p.oid = c.conparentid
		JOIN LATERAL (
			WITH RECURSIVE up(oid, parent) AS (
				SELECT c.oid, c.conparentid
				UNION ALL
				SELECT a.oid, a.conparentid FROM up JOIN pg_catalog.pg_constraint a ON a.oid = up.parent)
			SELECT oid FROM up WHERE parent = 0) t ON true
		JOIN pg_catalog.pg_constraint tc ON tc.oid = t.oid
		JOIN pg_catalog.pg_class tr ON tr.oid = tc.conrelid
		JOIN pg_catalog.pg_namespace trn ON trn.oid = tr.relnamespace
		JOIN pg_catalog.pg_class tf ON tf.oid = tc.confrelid
		JOIN pg_catalog.pg_namespace tfn ON tfn.oid = tf.relnamespace
		GROUP BY c.oid, r.oid, rn.nspname, f.oid, fn.nspname, p.conrelid, tc.oid, tr.oid, trn.nspname, tf.oid, tfn.nspname
		ORDER BY rn.nspname, r.relname, c.conname`, oidsOf(ts))
	if err != nil {
		return nil, err
	}
	var out []ForeignKey
	var f, root ForeignKey
	_, err = pgx.ForEachRow(rows, []any{&f.OID, &f.Name, &f.Referencing.OID, &f.Referencing.Schema, &f.Referencing.Name, &f.Referencing.Kind,
		&f.Referenced.OID, &f.Referenced.Schema, &f.Referenced.Name, &f.Referenced.Kind, &f.Deferrable, &f.PartitionClone,
		&f.Columns, &f.RefColumns, &root.OID, &root.Name, &root.Referencing.OID, &root.Referencing.Schema, &root.Referencing.Name,
		&root.Referencing.Kind, &root.Referenced.OID, &root.Referenced.Schema, &root.Referenced.Name, &root.Referenced.Kind}, func() error {
		r := root
		r.Deferrable, r.Columns, r.RefColumns = f.Deferrable, f.Columns, f.RefColumns
		f.Root = &r
		out = append(out, f)
		f, root = ForeignKey{}, ForeignKey{}
		return nil
	})
	return out, err
}

// fkGraph is what grouping needs from the destination's catalog.
type fkGraph struct {
	keys   []ForeignKey
	leaves map[uint32][]Table // leaves of each partitioned referencing table
}

// readFKGraph reads the foreign keys referencing the units' destination
// tables, and the leaves of the partitioned tables among their referencing
// tables: two queries.
func readFKGraph(ctx context.Context, q Querier, ds []Table, mode FKMode) (*fkGraph, error) {
	keys, err := foreignKeysOf(ctx, q, ds, mode == FKReplica)
	if err != nil {
		return nil, err
	}
	var roots []Table
	seen := map[uint32]bool{}
	for _, k := range keys {
		if k.Referencing.Partitioned() && !k.PartitionClone && !seen[k.Referencing.OID] {
			seen[k.Referencing.OID] = true
			roots = append(roots, k.Referencing)
		}
	}
	leaves, err := leavesOf(ctx, q, roots)
	if err != nil {
		return nil, err
	}
	return &fkGraph{keys: keys, leaves: leaves}, nil
}

// groupUnits turns units into groups by the destination's foreign keys,
// ordered by o (largest or first name first) but never before a group it
// must follow.
func groupUnits(units []Unit, g *fkGraph, mode FKMode, o Order) ([]Group, error) {
	idx := make(map[uint32]int, len(units)) // destination OID -> unit
	for i, u := range units {
		idx[u.Dest.OID] = i
	}
	uf := newUnionFind(len(units))
	type edge struct{ from, to int } // from is referenced, to references it
	var edges []edge
	linked := make([]bool, len(units)) // referenced by, or referencing, a selected unit directly
	type split struct {
		parent Table
		leaves []int
		refs   []int // the units its partitions reference
		keys   []string
	}
	splits := map[uint32]*split{}
	var splitOrder []uint32
	var outside []string
	deletes := make([]bool, len(units))
	why := map[int][]string{} // by referenced unit: the keys that tie it
	var unchecked [][]ForeignKey
	if mode == FKReplica {
		unchecked = make([][]ForeignKey, len(units))
	}
	for _, k := range g.keys {
		if mode == FKReplica {
			// Clones included: a partition's own foreign-key triggers did
			// not fire either. Each is checked against the declared key's
			// referenced table (all its partitions).
			for _, end := range []uint32{k.Referencing.OID, k.Referenced.OID} {
				if i, ok := idx[end]; ok {
					c := k.Unchecked(end == k.Referenced.OID)
					if !slices.ContainsFunc(unchecked[i], func(x ForeignKey) bool { return x.Covers(c) }) {
						unchecked[i] = append(unchecked[i], c)
					}
				}
			}
		}
		f, ok := idx[k.Referenced.OID]
		if !ok || k.PartitionClone || k.Referencing.OID == k.Referenced.OID {
			continue
		}
		if mode == FKReplica {
			deletes[f] = true
			continue
		}
		if r, ok := idx[k.Referencing.OID]; ok {
			uf.union(f, r)
			edges = append(edges, edge{f, r})
			linked[f], linked[r] = true, true
			why[f] = append(why[f], k.String())
			continue
		}
		if k.Referencing.Partitioned() {
			var ls, missing []int
			var missingNames []string
			for _, l := range g.leaves[k.Referencing.OID] {
				if i, ok := idx[l.OID]; ok {
					ls = append(ls, i)
				} else {
					missing = append(missing, 0)
					missingNames = append(missingNames, l.String())
				}
			}
			if len(missing) > 0 {
				outside = append(outside, fmt.Sprintf("%s is referenced by foreign key %s, and TRUNCATE %s would empty its partitions %s, which are not selected",
					k.Referenced, k, k.Referencing, strings.Join(missingNames, ", ")))
				continue
			}
			s := splits[k.Referencing.OID]
			if s == nil {
				s = &split{parent: k.Referencing, leaves: ls}
				splits[k.Referencing.OID] = s
				splitOrder = append(splitOrder, k.Referencing.OID)
			}
			s.refs = append(s.refs, f)
			s.keys = append(s.keys, k.String())
			linked[f] = true
			continue
		}
		outside = append(outside, fmt.Sprintf("%s is referenced by foreign key %s, which is not selected", k.Referenced, k))
	}
	if len(outside) > 0 {
		return nil, &SchemaError{Side: "destination", Table: "foreign keys",
			Why: "a selected table cannot be truncated: " + strings.Join(outside, "; ") +
				"; select the referencing tables too, or use --fk-mode replica (superuser: foreign keys are not checked during the copy)"}
	}
	// Partitions that reference the group are split out unless something
	// ties a partition to a selected table directly.
	splitOut := map[uint32]bool{} // parent OIDs whose partitions are units of their own
	var joined []*split           // partitioned tables whose partitions joined the group
	for _, p := range splitOrder {
		s := splits[p]
		keep := mode == FKGroup
		for _, l := range s.leaves {
			if linked[l] {
				keep = false
			}
		}
		if keep {
			splitOut[p] = true
			continue
		}
		for _, l := range s.leaves {
			for _, f := range s.refs {
				uf.union(f, l)
				edges = append(edges, edge{f, l})
			}
		}
		for _, f := range s.refs {
			why[f] = append(why[f], s.keys...)
		}
		joined = append(joined, s)
	}

	// Components become groups.
	comp := map[int]int{} // union-find root -> group
	var groups []Group
	memberOf := make([]int, len(units))
	for i := range units {
		root := uf.find(i)
		gi, ok := comp[root]
		if !ok {
			gi = len(groups)
			comp[root] = gi
			groups = append(groups, Group{})
		}
		groups[gi].Units = append(groups[gi].Units, units[i])
		memberOf[i] = gi
	}
	for gi := range groups {
		if unchecked != nil {
			groups[gi].Unchecked = unchecked[idxOf(idx, groups[gi].Units[0])]
		}
		if len(groups[gi].Units) == 1 && deletes[idxOf(idx, groups[gi].Units[0])] {
			// COPY FREEZE needs the table truncated in its transaction.
			groups[gi].Delete, groups[gi].Units[0].Freeze = true, false
		}
	}
	// Order each group's members: referenced before referencing.
	byGroup := map[int][]edge{}
	for _, e := range edges {
		byGroup[memberOf[e.from]] = append(byGroup[memberOf[e.from]], e)
	}
	for gi := range groups {
		if len(groups[gi].Units) == 1 {
			continue
		}
		var ge [][2]uint32
		var keys []string
		for _, e := range byGroup[gi] {
			ge = append(ge, [2]uint32{units[e.from].Dest.OID, units[e.to].Dest.OID})
			keys = append(keys, why[e.from]...)
		}
		groups[gi].Units, groups[gi].Deferred = topoOrder(groups[gi].Units, ge)
		slices.Sort(keys)
		keys = slices.Compact(keys)
		groups[gi].Why = "foreign keys tie these tables: TRUNCATE must name them together (" + strings.Join(keys, ", ") + ")"
		if groups[gi].Deferred {
			groups[gi].Why += "; the keys form a cycle, so they are checked at the commit and must be DEFERRABLE"
		}
	}
	// TRUNCATE of a referenced table must name the partitioned table that
	// references it, not only its partitions.
	for _, s := range joined {
		gi := memberOf[s.refs[0]]
		groups[gi].Truncate = append(groups[gi].Truncate, s.parent)
		groups[gi].TruncateLeaves = append(groups[gi].TruncateLeaves, leafOIDs(units, s.leaves))
	}
	for _, p := range splitOrder {
		if !splitOut[p] {
			continue
		}
		s := splits[p]
		var after []int
		for _, f := range s.refs {
			gi := memberOf[f]
			if !slices.Contains(after, gi) {
				after = append(after, gi)
				groups[gi].Truncate = append(groups[gi].Truncate, s.parent)
				groups[gi].TruncateLeaves = append(groups[gi].TruncateLeaves, leafOIDs(units, s.leaves))
				note := fmt.Sprintf("it also truncates %s, whose partitions reference it (%s) and are copied one by one after it commits; "+
					"until then they are empty on the destination", s.parent, strings.Join(s.keys, ", "))
				if groups[gi].Why == "" {
					groups[gi].Why = note
				} else {
					groups[gi].Why += "; " + note
				}
			}
		}
		for _, l := range s.leaves {
			lg := memberOf[l]
			for _, a := range after {
				if !slices.Contains(groups[lg].After, a) {
					groups[lg].After = append(groups[lg].After, a)
				}
			}
		}
	}
	return orderGroups(groups, o), nil
}

func idxOf(idx map[uint32]int, u Unit) int { return idx[u.Dest.OID] }

// leafOIDs are the destination OIDs of units ls, in ascending order.
func leafOIDs(units []Unit, ls []int) []uint32 {
	out := make([]uint32, len(ls))
	for i, l := range ls {
		out[i] = units[l].Dest.OID
	}
	slices.Sort(out)
	return out
}

// topoOrder orders units so that every referenced unit (edge[0]) comes
// before the units that reference it (edge[1]); ties and cycles in name
// order. It reports whether there was a cycle.
func topoOrder(units []Unit, edges [][2]uint32) ([]Unit, bool) {
	slices.SortFunc(units, func(a, b Unit) int { return strings.Compare(a.Dest.String(), b.Dest.String()) })
	pos := make(map[uint32]int, len(units))
	for i, u := range units {
		pos[u.Dest.OID] = i
	}
	indeg := make([]int, len(units))
	next := make([][]int, len(units))
	for _, e := range edges {
		a, b := pos[e[0]], pos[e[1]]
		if a == b {
			continue
		}
		next[a] = append(next[a], b)
		indeg[b]++
	}
	done := make([]bool, len(units))
	var out []Unit
	cycle := false
	for len(out) < len(units) {
		pick := -1
		for i := range units {
			if !done[i] && indeg[i] == 0 {
				pick = i
				break
			}
		}
		if pick < 0 { // a cycle: take the first remaining by name
			cycle = true
			for i := range units {
				if !done[i] {
					pick = i
					break
				}
			}
		}
		done[pick] = true
		out = append(out, units[pick])
		for _, n := range next[pick] {
			indeg[n]--
		}
	}
	return out, cycle
}

// orderGroups sorts groups by o, but never a group before one it must
// follow; After is rewritten to the new indexes.
func orderGroups(groups []Group, o Order) []Group {
	n := len(groups)
	rank := make([]int, n) // position in the preferred order
	pref := make([]int, n)
	for i := range pref {
		pref[i] = i
	}
	slices.SortStableFunc(pref, func(a, b int) int {
		ga, gb := &groups[a], &groups[b]
		if o == BySize {
			if c := cmp.Compare(gb.Estimate().Bytes, ga.Estimate().Bytes); c != 0 {
				return c
			}
		}
		return strings.Compare(ga.Name(), gb.Name())
	})
	for r, g := range pref {
		rank[g] = r
	}
	indeg := make([]int, n)
	dependents := make([][]int, n)
	for g := range groups {
		for _, a := range groups[g].After {
			indeg[g]++
			dependents[a] = append(dependents[a], g)
		}
	}
	ready := &rankHeap{rank: rank}
	for g := range groups {
		if indeg[g] == 0 {
			heap.Push(ready, g)
		}
	}
	newIndex := make([]int, n)
	out := make([]Group, 0, n)
	for ready.Len() > 0 {
		g := heap.Pop(ready).(int)
		newIndex[g] = len(out)
		out = append(out, groups[g])
		for _, d := range dependents[g] {
			if indeg[d]--; indeg[d] == 0 {
				heap.Push(ready, d)
			}
		}
	}
	for i := range out {
		for j, a := range out[i].After {
			out[i].After[j] = newIndex[a]
		}
		slices.Sort(out[i].After)
	}
	return out
}

type rankHeap struct {
	rank  []int
	items []int
}

func (h *rankHeap) Len() int           { return len(h.items) }
func (h *rankHeap) Less(i, j int) bool { return h.rank[h.items[i]] < h.rank[h.items[j]] }
func (h *rankHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *rankHeap) Push(x any)         { h.items = append(h.items, x.(int)) }
func (h *rankHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}

type unionFind struct{ parent []int }

func newUnionFind(n int) *unionFind {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	return &unionFind{parent: p}
}

func (u *unionFind) find(i int) int {
	for u.parent[i] != i {
		u.parent[i] = u.parent[u.parent[i]]
		i = u.parent[i]
	}
	return i
}

func (u *unionFind) union(a, b int) {
	ra, rb := u.find(a), u.find(b)
	if ra != rb {
		u.parent[rb] = ra
	}
}

// OrphansSQL counts the rows of the referencing table whose key the
// referenced table lacks (MATCH SIMPLE: a key with a NULL column references
// nothing). Zero means the foreign key holds.
func (f ForeignKey) OrphansSQL() string {
	var has, match []string
	for i, c := range f.Columns {
		col := pgx.Identifier{c}.Sanitize()
		has = append(has, "r."+col+" IS NOT NULL")
		match = append(match, "f."+pgx.Identifier{f.RefColumns[i]}.Sanitize()+" = r."+col)
	}
	return fmt.Sprintf("SELECT pg_catalog.count(*) FROM %s r WHERE %s AND NOT EXISTS (SELECT FROM %s f WHERE %s)",
		f.Referencing, strings.Join(has, " AND "), f.Referenced, strings.Join(match, " AND "))
}
