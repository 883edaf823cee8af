package verify

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"lockstep/internal/redact"
)

// Querier is a transaction (or connection) on one side.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// KeyColumn is one column of a unique, not-null key.
type KeyColumn struct {
	Name       string
	Type       string // as format_type writes it: bound values are cast to it on both sides, so it must hold both sides' keys
	Collatable bool   // compared and sorted COLLATE "C" so both servers agree
}

// Side is one server's transaction, in its snapshot with lockstep's pinned
// session settings, and the table there (quoted, with ONLY where it
// applies).
type Side struct {
	Q     Querier
	Table string
	// Sum is the whole table's count and checksum in this snapshot, and
	// Figures computes those of the rows a SELECT returns the same way.
	// With both, on both sides, the diff may cut segments by
	// hash_record_extended and check that what it found explains the
	// checksums' difference (see fasthash.go); without, it hashes row text.
	Sum     *Sum
	Figures func(ctx context.Context, query string) (Sum, error)
}

// Spec is a table to pinpoint differences in.
type Spec struct {
	Unit     string
	Columns  []string
	Key      []KeyColumn
	LeafRows int // compare rows once a segment holds at most this many
	// SourceRows and DestRows are the whole table's counts, already known
	// to differ in count or checksum: the bisection starts by splitting.
	SourceRows, DestRows int64
	HashFunc             string // "md5" or "sha256" (FIPS builds lack md5)
	Fanout               int    // segments per split
	MaxListed            int    // keys listed per kind; further ones are only counted
	ChangedRows          int    // changed rows whose columns are compared one by one
	// SampleRows is the size from which a segment is cut at the quantiles
	// of a page sample rather than by numbering its rows (0: 1,000,000).
	SampleRows int
}

// Change is a row present on both sides with other values.
type Change struct {
	Key     []string `json:"key"`
	Columns []string `json:"columns"`
	// Source and Dest hold the differing columns' text, in Columns order
	// (nil for NULL), for repair SQL.
	Source []*string `json:"-"`
	Dest   []*string `json:"-"`
}

// Diff is what bisection found.
type Diff struct {
	Key          []string      `json:"key"`
	Missing      [][]string    `json:"missing_on_destination"`
	Extra        [][]string    `json:"extra_on_destination"`
	Duplicated   [][]string    `json:"duplicated_on_destination,omitempty"` // keys the destination holds more than once; surplus copies count in ExtraCount
	NullKeys     int64         `json:"null_keys_on_destination,omitempty"`  // destination rows with a NULL in a key column; they count in ExtraCount
	Changed      []Change      `json:"changed"`
	MissingCount int64         `json:"missing_count"`
	ExtraCount   int64         `json:"extra_count"`
	ChangedCount int64         `json:"changed_count"`
	Truncated    bool          `json:"truncated,omitempty"` // more differences than listed
	Segments     int           `json:"segments_compared"`
	Depth        int           `json:"depth"`
	RowsFetched  int64         `json:"rows_fetched"` // key/hash pairs and full rows read over the network
	Elapsed      time.Duration `json:"elapsed_ns"`
	HashFunc     string        `json:"hash_function"`
	Note         string        `json:"note,omitempty"`        // how the hash function was chosen, when it was not the first choice
	Unavailable  string        `json:"unavailable,omitempty"` // why no row-level diff was possible
	// Inserts holds the source rows of the Missing and then the Duplicated
	// keys (all columns' text), for repair SQL.
	Inserts [][]*string `json:"-"`
}

// Empty reports whether no difference was found.
func (d *Diff) Empty() bool { return d.MissingCount+d.ExtraCount+d.ChangedCount == 0 }

// segment is the key range (lo, hi]; nil bounds are open.
type segment struct {
	lo, hi []string
	depth  int
}

// segSum is one side's figures for a segment.
type segSum struct {
	rows int64
	a, b string // numeric sums of the hash halves, as text
}

// Bisect pinpoints the rows that differ between src and dst, whose whole
// tables are known to differ. Segments are summed on the servers by
// hash_record_extended where both sides allow it (see fastHash), and
// otherwise, or when that missed a difference, by HashFunc over the row
// text; rows are always compared by HashFunc over the row text.
func Bisect(ctx context.Context, src, dst Side, s Spec) (*Diff, error) {
	start := time.Now()
	if s.Fanout < 2 {
		s.Fanout = 16
	}
	if s.LeafRows < 1 {
		s.LeafRows = 1000
	}
	if s.MaxListed < 1 {
		s.MaxListed = 10000
	}
	if s.ChangedRows < 1 {
		s.ChangedRows = 1000
	}
	if s.SampleRows < 1 {
		s.SampleRows = 1000000
	}
	// Rows with a NULL key lie outside every key range: only the
	// destination can hold them (the source's key is NOT NULL), and they
	// are extra rows there.
	var nulls int64
	err := dst.Q.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE %s", dst.Table, s.nullKeySQL())).Scan(&nulls)
	if err != nil {
		return nil, fmt.Errorf("destination: count the rows of %s with a NULL key: %w", s.Unit, err)
	}
	// A table small enough to compare row by row sums no segment.
	var fast *serverHash
	var note string
	if max(s.SourceRows, s.DestRows) > int64(s.LeafRows) {
		if fast, note, err = s.fastHash(ctx, src, dst); err != nil {
			return nil, err
		}
	}
	var d, missed *Diff
	if fast != nil {
		var leaves []segment
		if d, leaves, err = s.bisect(ctx, src, dst, *fast); err != nil {
			return nil, err
		}
		ok, read, err := s.accounted(ctx, src, dst, leaves, nulls)
		if err != nil {
			return nil, err
		}
		d.RowsFetched += read
		if !ok {
			// A difference hash_record_extended cannot see (it hashes by
			// equality): start again on the row text.
			note = fmt.Sprintf("hash_record_extended missed a difference (values equal but not identical, such as 1.0 and 1.00, or 0 and -0) after %d segments: bisected again by %s of the row text", d.Segments, s.HashFunc)
			d, missed = nil, d
		}
	}
	if d == nil {
		if d, _, err = s.bisect(ctx, src, dst, textHash(s.HashFunc, s.Columns)); err != nil {
			return nil, err
		}
	}
	d.NullKeys = nulls
	d.ExtraCount += nulls
	if missed != nil { // its work counts too
		d.Segments += missed.Segments
		d.RowsFetched += missed.RowsFetched
	}
	d.Note = note
	d.Elapsed = time.Since(start)
	return d, nil
}

// bisect cuts the table into segments level by level, sums every segment
// of a level in one query per side, cuts those that differ further, and
// compares the rows of those small enough; it returns the segments whose
// rows it compared.
func (s Spec) bisect(ctx context.Context, src, dst Side, h serverHash) (*Diff, []segment, error) {
	d := &Diff{HashFunc: h.name}
	for _, k := range s.Key {
		d.Key = append(d.Key, k.Name)
	}
	// The whole table is known to differ (its checksums did): split it
	// without summing it again, which on a big table is the costliest pass.
	whole := segment{}
	if max(s.SourceRows, s.DestRows) <= int64(s.LeafRows) {
		return d, []segment{whole}, s.compareLeaf(ctx, src, dst, whole, d)
	}
	level, err := s.split(ctx, src, dst, whole, s.SourceRows, s.DestRows)
	if err != nil {
		return nil, nil, err
	}
	var leaves []segment
	for len(level) > 0 {
		ss, ds, err := s.levelSums(ctx, src, dst, level, h)
		if err != nil {
			return nil, nil, err
		}
		var next []segment
		for i, seg := range level {
			d.Segments++
			d.Depth = max(d.Depth, seg.depth)
			if ss[i] == ds[i] {
				continue
			}
			if max(ss[i].rows, ds[i].rows) <= int64(s.LeafRows) || seg.depth >= 64 {
				if err := s.compareLeaf(ctx, src, dst, seg, d); err != nil {
					return nil, nil, err
				}
				leaves = append(leaves, seg)
				continue
			}
			parts, err := s.split(ctx, src, dst, seg, ss[i].rows, ds[i].rows)
			if err != nil {
				return nil, nil, err
			}
			next = append(next, parts...)
		}
		level = next
	}
	return d, leaves, nil
}

func wrap(side string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", side, err)
}

// keyExprs is the key columns for SELECT lists and ORDER BY, text ones
// COLLATE "C".
func (s Spec) keyExprs() []string {
	out := make([]string, len(s.Key))
	for i, k := range s.Key {
		out[i] = pgx.Identifier{k.Name}.Sanitize()
		if k.Collatable {
			out[i] += ` COLLATE "C"`
		}
	}
	return out
}

// boundExprs are the parameters of a bound, cast to the key types.
func (s Spec) boundExprs(first int) []string {
	out := make([]string, len(s.Key))
	for i, k := range s.Key {
		out[i] = fmt.Sprintf("$%d::%s", first+i, k.Type)
		if k.Collatable {
			out[i] += ` COLLATE "C"`
		}
	}
	return out
}

// where renders a segment as a predicate and its arguments.
func (s Spec) where(seg segment) (string, []any) {
	b := &binder{key: s.Key}
	w := s.rangeSQL(b, seg.lo, seg.hi)
	return w, b.args
}

// RowHashSQL is the per-row hash over the row's canonical text: record
// output quotes every value that needs it, so NULL, ” and separators stay
// apart; the column list fixes the order whatever the physical layout.
func RowHashSQL(fn string, cols []string) string {
	row := "ROW(" + columnList(cols) + ")::text"
	if fn == "sha256" {
		return "pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(" + row + ", 'UTF8')), 'hex')"
	}
	return "pg_catalog.md5(pg_catalog.convert_to(" + row + ", 'UTF8'))"
}

func columnList(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(q, ", ")
}

func quoteAll(k []KeyColumn) []string {
	out := make([]string, len(k))
	for i, c := range k {
		out[i] = pgx.Identifier{c.Name}.Sanitize()
	}
	return out
}

// keysText selects the key columns as text under their own names, keeping
// the typed originals available for ordering through the outer table.
func keysText(k []KeyColumn) []string {
	out := make([]string, len(k))
	for i, c := range k {
		q := pgx.Identifier{c.Name}.Sanitize()
		out[i] = q + "::text AS " + q
	}
	return out
}

func scanTexts(n int) pgx.RowToFunc[[]string] {
	return func(r pgx.CollectableRow) ([]string, error) {
		v := make([]string, n)
		p := make([]any, n)
		for i := range v {
			p[i] = &v[i]
		}
		return v, r.Scan(p...)
	}
}

// compareLeaf streams (key, row hash) pairs of a segment from both sides,
// matches them by key, and fetches full rows only for keys that differ.
// A key may come more than once from a side without a unique index on it
// (the destination may lack the source's): per key, the rows whose hashes
// pair up match, other pairs are changed, and the rest are missing or extra.
func (s Spec) compareLeaf(ctx context.Context, src, dst Side, seg segment, d *Diff) error {
	var sh, dh map[string]*leafRows
	var sn, dn int
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { sh, sn, err = s.leafHashes(gctx, src, seg); return wrap("source", err) })
	g.Go(func() (err error) { dh, dn, err = s.leafHashes(gctx, dst, seg); return wrap("destination", err) })
	if err := g.Wait(); err != nil {
		return err
	}
	d.RowsFetched += int64(sn + dn)
	list := func(keys *[][]string, k []string) {
		if len(*keys) < s.MaxListed {
			*keys = append(*keys, k)
		} else {
			d.Truncated = true
		}
	}
	all := maps.Clone(sh)
	maps.Copy(all, dh)
	var changed [][]string
	for _, id := range slices.Sorted(maps.Keys(all)) {
		a, b := sh[id], dh[id]
		var key []string
		var rs, rd int64
		switch {
		case a == nil:
			key, rd = b.key, int64(len(b.hashes))
		case b == nil:
			key, rs = a.key, int64(len(a.hashes))
		default:
			key = a.key
			rs, rd = unmatched(a.hashes, b.hashes)
		}
		pairs := min(rs, rd)
		if pairs > 0 {
			d.ChangedCount += pairs
			if len(d.Changed)+len(changed) < s.ChangedRows {
				changed = append(changed, key)
			} else {
				d.Truncated = true
			}
		}
		if n := rs - pairs; n > 0 {
			d.MissingCount += n
			list(&d.Missing, key)
		}
		if n := rd - pairs; n > 0 {
			d.ExtraCount += n
			if a == nil {
				list(&d.Extra, key)
			} else {
				list(&d.Duplicated, key)
			}
		}
	}
	if len(changed) > 0 {
		if err := s.describeChanges(ctx, src, dst, changed, d); err != nil {
			return err
		}
	}
	return nil
}

// unmatched counts the hashes of a and of b left once equal hashes are
// paired off.
func unmatched(a, b []string) (ra, rb int64) {
	left := map[string]int{}
	for _, h := range a {
		left[h]++
	}
	for _, h := range b {
		if left[h] > 0 {
			left[h]--
		} else {
			rb++
		}
	}
	for _, n := range left {
		ra += int64(n)
	}
	return ra, rb
}

// leafRows are the row hashes of one key on one side.
type leafRows struct {
	key    []string
	hashes []string
}

// leafHashes reads a segment's (key, row hash) pairs, grouped by key, and
// how many rows they were.
func (s Spec) leafHashes(ctx context.Context, q Side, seg segment) (map[string]*leafRows, int, error) {
	w, args := s.where(seg)
	sql := fmt.Sprintf("SELECT %s, %s FROM %s WHERE %s", strings.Join(keysText(s.Key), ", "),
		RowHashSQL(s.HashFunc, s.Columns), q.Table, w)
	rows, err := q.Q.Query(ctx, sql, args...)
	if err != nil {
		return nil, 0, err
	}
	all, err := pgx.CollectRows(rows, scanTexts(len(s.Key)+1))
	out := map[string]*leafRows{}
	for _, v := range all {
		k := v[:len(s.Key)]
		id := strings.Join(k, "\x00")
		r := out[id]
		if r == nil {
			r = &leafRows{key: k}
			out[id] = r
		}
		r.hashes = append(r.hashes, v[len(s.Key)])
	}
	return out, len(all), err
}

// fetchRows reads full rows (every column as text) for the given keys,
// every row of a key that a side holds more than once, and how many rows
// it read.
func (s Spec) fetchRows(ctx context.Context, q Side, keys [][]string) (map[string][][]*string, int, error) {
	var vals []string
	var args []any
	for _, k := range keys {
		ps := s.boundExprs(len(args) + 1)
		vals = append(vals, "("+strings.Join(ps, ", ")+")")
		for _, v := range k {
			args = append(args, v)
		}
	}
	cols := make([]string, len(s.Columns))
	for i, c := range s.Columns {
		cols[i] = pgx.Identifier{c}.Sanitize() + "::text"
	}
	sql := fmt.Sprintf("SELECT %s, %s FROM %s WHERE (%s) IN (%s)", strings.Join(keysText(s.Key), ", "),
		strings.Join(cols, ", "), q.Table, strings.Join(s.keyExprs(), ", "), strings.Join(vals, ", "))
	rows, err := q.Q.Query(ctx, sql, args...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	out := map[string][][]*string{}
	n, read := len(s.Key), 0
	for rows.Next() {
		v := make([]*string, n+len(s.Columns))
		p := make([]any, len(v))
		for i := range v {
			p[i] = &v[i]
		}
		if err := rows.Scan(p...); err != nil {
			return nil, 0, err
		}
		k := make([]string, n)
		for i := range k {
			k[i] = *v[i]
		}
		id := strings.Join(k, "\x00")
		out[id] = append(out[id], v[n:])
		read++
	}
	return out, read, rows.Err()
}

// describeChanges names the differing columns of changed rows.
func (s Spec) describeChanges(ctx context.Context, src, dst Side, keys [][]string, d *Diff) error {
	var sr, dr map[string][][]*string
	var sn, dn int
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { sr, sn, err = s.fetchRows(gctx, src, keys); return wrap("source", err) })
	g.Go(func() (err error) { dr, dn, err = s.fetchRows(gctx, dst, keys); return wrap("destination", err) })
	if err := g.Wait(); err != nil {
		return err
	}
	d.RowsFetched += int64(sn + dn)
	for _, k := range keys {
		id := strings.Join(k, "\x00")
		if len(sr[id]) == 0 || len(dr[id]) == 0 {
			continue // gone from a side since the leaf was read (only without --lock)
		}
		// Of a key the destination holds more than once, describe a copy
		// that differs.
		a, b := sr[id][0], dr[id][0]
		for _, r := range dr[id] {
			if !slices.EqualFunc(a, r, sameText) {
				b = r
				break
			}
		}
		c := Change{Key: k}
		for i, col := range s.Columns {
			if !sameText(a[i], b[i]) {
				c.Columns = append(c.Columns, col)
				c.Source = append(c.Source, a[i])
				c.Dest = append(c.Dest, b[i])
			}
		}
		if len(c.Columns) == 0 {
			// Same text, different hash: a difference the text form
			// hides (it cannot be, given one canonical form; say so).
			c.Columns = []string{"(row text identical)"}
		}
		d.Changed = append(d.Changed, c)
	}
	return nil
}

func sameText(a, b *string) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

// FetchMissing reads the source rows of the keys missing on the
// destination and of those it holds more than once, for repair SQL.
func FetchMissing(ctx context.Context, src Side, s Spec, d *Diff) error {
	keys := slices.Concat(d.Missing, d.Duplicated)
	for i := 0; i < len(keys); i += 500 {
		batch := keys[i:min(i+500, len(keys))]
		rows, _, err := s.fetchRows(ctx, src, batch)
		if err != nil {
			return wrap("source", err)
		}
		for _, k := range batch {
			var row []*string // nil: gone from the source since (only without --lock)
			if r := rows[strings.Join(k, "\x00")]; len(r) > 0 {
				row = r[0]
			}
			d.Inserts = append(d.Inserts, row)
		}
	}
	return nil
}

// Summary renders the diff for a terminal: counts, then up to n keys of
// each kind. Key values and names are the table's data: their control
// characters are escaped.
func (d *Diff) Summary(n int) string {
	if d.Unavailable != "" {
		return "  diff: cannot pinpoint rows: " + redact.Control(d.Unavailable)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  diff on (%s): %d missing on the destination, %d extra on the destination, %d changed; %d segments compared, depth %d, %d rows fetched, %s (%s)",
		redact.Control(strings.Join(d.Key, ", ")), d.MissingCount, d.ExtraCount, d.ChangedCount, d.Segments, d.Depth, d.RowsFetched,
		d.Elapsed.Round(time.Millisecond), d.HashFunc)
	if d.Note != "" {
		fmt.Fprintf(&b, "\n    note: %s", d.Note)
	}
	list := func(what string, keys [][]string) {
		for i, k := range keys {
			if i == n {
				fmt.Fprintf(&b, "\n    ... %d more %s in the report", len(keys)-n, what)
				return
			}
			fmt.Fprintf(&b, "\n    %s: (%s)", what, redact.Control(strings.Join(k, ", ")))
		}
	}
	list("missing", d.Missing)
	list("extra", d.Extra)
	list("duplicated", d.Duplicated)
	if d.NullKeys > 0 {
		fmt.Fprintf(&b, "\n    extra: %d row(s) with a NULL key", d.NullKeys)
	}
	for i, c := range d.Changed {
		if i == n {
			fmt.Fprintf(&b, "\n    ... %d more changed in the report", len(d.Changed)-n)
			break
		}
		fmt.Fprintf(&b, "\n    changed: (%s) columns %s", redact.Control(strings.Join(c.Key, ", ")), redact.Control(strings.Join(c.Columns, ", ")))
	}
	return b.String()
}
