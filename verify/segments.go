package verify

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
)

// maxSegmentsPerQuery bounds the segments one level query sums, which keeps
// its parameters (one bound per segment and two per range) and its CASE
// tree small.
const maxSegmentsPerQuery = 256

// serverHash is how a level query hashes a row on the servers.
type serverHash struct {
	name string // reported as Diff.HashFunc
	expr string // the per-row SQL expression
	hex  bool   // expr is a hex digest (md5, sha256); otherwise a bigint
}

// textHash hashes the canonical row text with fn (md5 or sha256).
func textHash(fn string, cols []string) serverHash {
	return serverHash{name: fn, expr: RowHashSQL(fn, cols), hex: true}
}

// lanes are the two numbers a row adds to its segment's sums: the halves
// of a hex digest's first 128 bits, or the bigint hash and nothing.
func (h serverHash) lanes(v string) (string, string) {
	if !h.hex {
		return v, "0"
	}
	half := func(from int) string {
		return fmt.Sprintf("('x' || pg_catalog.substr(%s, %d, 16))::bit(64)::bigint", v, from)
	}
	return half(1), half(17)
}

// binder renders key bounds in SQL, cast to the key types: as parameters,
// collected in args, or as literals where no parameters can be sent (a
// COPY statement).
type binder struct {
	key      []KeyColumn
	args     []any
	literals bool
}

func (b *binder) bound(vals []string) string {
	out := make([]string, len(b.key))
	for i, k := range b.key {
		if b.literals {
			out[i] = literal(&vals[i])
		} else {
			b.args = append(b.args, vals[i])
			out[i] = "$" + strconv.Itoa(len(b.args))
		}
		out[i] += "::" + k.Type
		if k.Collatable {
			out[i] += ` COLLATE "C"`
		}
	}
	return "(" + strings.Join(out, ", ") + ")"
}

// keyRow is the key as one row value, comparable with a bound.
func (s Spec) keyRow() string { return "(" + strings.Join(s.keyExprs(), ", ") + ")" }

// rangeSQL is the predicate of the key range (lo, hi]; nil bounds are open.
func (s Spec) rangeSQL(b *binder, lo, hi []string) string {
	var conds []string
	if lo != nil {
		conds = append(conds, s.keyRow()+" > "+b.bound(lo))
	}
	if hi != nil {
		conds = append(conds, s.keyRow()+" <= "+b.bound(hi))
	}
	if len(conds) == 0 {
		// No key range holds a NULL key: a destination whose key column
		// allows NULL may hold such rows, and they are counted apart
		// (nullKeySQL).
		return s.keyRow() + " IS NOT NULL"
	}
	return strings.Join(conds, " AND ")
}

// nullKeySQL is the predicate of the rows outside every key range: those
// with a NULL in a key column. The source's key is NOT NULL; the
// destination's column may allow NULL.
func (s Spec) nullKeySQL() string {
	conds := make([]string, len(s.Key))
	for i, k := range s.Key {
		conds[i] = pgx.Identifier{k.Name}.Sanitize() + " IS NULL"
	}
	return strings.Join(conds, " OR ")
}

// spansSQL is the predicate of the union of segs (sorted, disjoint):
// neighbours that share a bound are one range, so the segments of one
// parent cost one range condition.
func (s Spec) spansSQL(b *binder, segs []segment) string {
	var ors []string
	for i := 0; i < len(segs); {
		j := i + 1
		for j < len(segs) && segs[j-1].hi != nil && segs[j].lo != nil && slices.Equal(segs[j-1].hi, segs[j].lo) {
			j++
		}
		ors = append(ors, "("+s.rangeSQL(b, segs[i].lo, segs[j-1].hi)+")")
		i = j
	}
	return strings.Join(ors, " OR ")
}

// caseTree is an expression giving the index (from lo) of the segment of
// segs[lo:hi] a row of their union falls in, by binary search over the
// segments' upper bounds: a row belongs to the first segment whose upper
// bound is not below its key (the WHERE clause keeps out rows between
// segments).
func (s Spec) caseTree(b *binder, segs []segment, lo, hi int) string {
	if hi-lo == 1 {
		return strconv.Itoa(lo)
	}
	mid := (lo + hi) / 2
	return "CASE WHEN " + s.keyRow() + " <= " + b.bound(segs[mid-1].hi) + " THEN " + s.caseTree(b, segs, lo, mid) +
		" ELSE " + s.caseTree(b, segs, mid, hi) + " END"
}

// levelSQL sums every segment of segs (sorted, disjoint, at most
// maxSegmentsPerQuery) in one scan: per segment index, the row count and
// the sums of the row hash lanes. Segments without rows return nothing.
// The segment index comes from a subquery kept apart with OFFSET 0: the
// planner then estimates a few hundred groups and aggregates by hashing,
// where it would otherwise take the CASE over a unique key for one group
// per row and sort the whole range.
func (s Spec) levelSQL(table string, segs []segment, h serverHash) (string, []any) {
	b := &binder{key: s.Key}
	where := s.spansSQL(b, segs)
	idx := s.caseTree(b, segs, 0, len(segs))
	la, lb := h.lanes("h__")
	sql := fmt.Sprintf(`SELECT s__, count(*), COALESCE(sum(%s), 0)::text, COALESCE(sum(%s), 0)::text
	                    FROM (SELECT %s AS s__, %s AS h__ FROM %s WHERE %s OFFSET 0) x GROUP BY s__`,
		la, lb, idx, h.expr, table, where)
	return sql, b.args
}

// levelSums are both sides' figures of every segment of a level, in one
// query per side for up to maxSegmentsPerQuery segments.
func (s Spec) levelSums(ctx context.Context, src, dst Side, segs []segment, h serverHash) (ss, ds []segSum, err error) {
	ss, ds = emptySums(len(segs)), emptySums(len(segs))
	for i := 0; i < len(segs); i += maxSegmentsPerQuery {
		chunk := segs[i:min(i+maxSegmentsPerQuery, len(segs))]
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return wrap("source", s.sideSums(gctx, src, chunk, h, ss[i:])) })
		g.Go(func() error { return wrap("destination", s.sideSums(gctx, dst, chunk, h, ds[i:])) })
		if err := g.Wait(); err != nil {
			return nil, nil, err
		}
	}
	return ss, ds, nil
}

func emptySums(n int) []segSum {
	out := make([]segSum, n)
	for i := range out {
		out[i] = segSum{a: "0", b: "0"}
	}
	return out
}

func (s Spec) sideSums(ctx context.Context, q Side, segs []segment, h serverHash, out []segSum) error {
	sql, args := s.levelSQL(q.Table, segs, h)
	rows, err := q.Q.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("sum %s: %w", s.Unit, err)
	}
	var i int
	var r segSum
	_, err = pgx.ForEachRow(rows, []any{&i, &r.rows, &r.a, &r.b}, func() error {
		if i < 0 || i >= len(segs) {
			return fmt.Errorf("segment %d of %d", i, len(segs))
		}
		out[i] = r
		return nil
	})
	if err != nil {
		return fmt.Errorf("sum %s: %w", s.Unit, err)
	}
	return nil
}

// split cuts a segment into parts of about equal row counts on the side
// that holds more of its rows: Fanout parts, or more for a segment of more
// than Fanout² leaves' rows, up to maxSegmentsPerQuery. One query sums all
// parts of a level, so more parts cost nothing there, and they save a
// level: a 10M-row table cut in 256 needs one pass of 3 × 39k rows after
// the first where 16 parts need one of 3 × 625k.
func (s Spec) split(ctx context.Context, src, dst Side, seg segment, srcRows, dstRows int64) ([]segment, error) {
	bigger, n, total := src, srcRows, s.SourceRows
	if dstRows > srcRows {
		bigger, n, total = dst, dstRows, s.DestRows
	}
	parts := int(min(max(n/int64(s.Fanout*s.LeafRows), int64(s.Fanout)), maxSegmentsPerQuery))
	bounds, err := s.splitPoints(ctx, bigger, seg, n, total, parts)
	if err != nil {
		return nil, err
	}
	var out []segment
	lo := seg.lo
	for _, b := range bounds {
		out = append(out, segment{lo: lo, hi: b, depth: seg.depth + 1})
		lo = b
	}
	return append(out, segment{lo: lo, hi: seg.hi, depth: seg.depth + 1}), nil
}

// splitPoints returns up to parts-1 keys that cut the segment into parts
// of about equal row counts on q (n rows in it, total in its table). The
// bounds only steer the search: any bounds give the same differences.
// Numbering every row of the segment in key order reads all of it (about
// 3 s for 10M rows through the key's index); a big segment whose rows a
// page sample finds cheaply is cut at the sample's quantiles instead.
func (s Spec) splitPoints(ctx context.Context, q Side, seg segment, n, total int64, parts int) ([][]string, error) {
	if target := min(max(65536, 1024*int64(parts)), n/16); n >= int64(s.SampleRows) && target*max(total, n)/n <= n/8 {
		bounds, ok, err := s.sampledSplitPoints(ctx, q, seg, 100*float64(target)/float64(n), parts)
		if err != nil || ok {
			return bounds, err
		}
	}
	step := max(n/int64(parts), 1)
	w, args := s.where(seg)
	sql := fmt.Sprintf(`SELECT %s FROM (SELECT %s, row_number() OVER (ORDER BY %s) AS rn__ FROM %s WHERE %s) s
	                    WHERE rn__ %% %d = 0 AND rn__ < %d ORDER BY rn__`,
		strings.Join(quoteAll(s.Key), ", "), strings.Join(keysText(s.Key), ", "), strings.Join(s.keyExprs(), ", "),
		q.Table, w, step, n)
	rows, err := q.Q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("split %s: %w", s.Unit, err)
	}
	return pgx.CollectRows(rows, scanTexts(len(s.Key)))
}

// sampledSplitPoints cuts the segment at the quantiles of the keys in a
// pct percent sample of the table's pages (TABLESAMPLE SYSTEM) into parts,
// and says whether the sample held enough of the segment's rows to use.
func (s Spec) sampledSplitPoints(ctx context.Context, q Side, seg segment, pct float64, parts int) ([][]string, bool, error) {
	w, args := s.where(seg)
	n := len(s.Key)
	sql := fmt.Sprintf(`SELECT %s, n__ FROM (SELECT %s, row_number() OVER (ORDER BY %s) AS rn__, count(*) OVER () AS n__
	                                         FROM %s TABLESAMPLE SYSTEM (%s) WHERE %s) s
	                    WHERE rn__ %% GREATEST(n__ / %d, 1) = 0 AND rn__ < n__ ORDER BY rn__`,
		strings.Join(quoteAll(s.Key), ", "), strings.Join(keysText(s.Key), ", "), strings.Join(s.keyExprs(), ", "),
		q.Table, strconv.FormatFloat(min(pct, 100), 'f', 6, 64), w, parts)
	rows, err := q.Q.Query(ctx, sql, args...)
	if err != nil {
		return nil, false, fmt.Errorf("split %s: %w", s.Unit, err)
	}
	var sampled int64
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]string, error) {
		v := make([]string, n)
		p := make([]any, n+1)
		for i := range v {
			p[i] = &v[i]
		}
		p[n] = &sampled
		return v, r.Scan(p...)
	})
	if err != nil {
		return nil, false, fmt.Errorf("split %s: %w", s.Unit, err)
	}
	return all, sampled >= int64(8*parts), nil
}
