package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"
)

// The diff's costliest pass is summing every row of a big table on both
// servers. md5 over the row text runs at about 225k rows/s per core;
// hash_record_extended (PostgreSQL 14+) hashes the binary values several
// times faster, but by equality, not identity: numeric 1.0 and 1.00, float
// 0 and -0, intervals of 1 day and 24 hours, arrays with other lower
// bounds, text equal under a nondeterministic collation all hash alike, and
// a type without an extended hash function (json, xml, point, box,
// tsvector, ...) raises an error. So the diff uses it only
//
//   - where the caller says it may (Side.Sum and Side.Figures on both
//     sides): the unit's column types are identical on both servers, which
//     run one major version, and built in, enums or domains over built-in
//     types (the unit is copied in binary), and its checksums were computed;
//   - with text columns COLLATE "C" (equal means identical bytes), and
//     cast to text the columns of a type that is not built in (an enum,
//     copied in binary as its label, hashes by its value's OID, which
//     differs between servers) or has no extended hash function;
//   - when a canary row of varied values hashes alike on both servers
//     (another build or server encoding may hash them otherwise: every
//     segment would then differ);
//
// and it checks the result: rows in the segments whose rows were compared
// (by HashFunc over the row text, as always) are taken out of both whole
// tables' checksums, and what remains must be equal. If it is not, a
// difference hid in a segment that hash_record_extended summed alike, and
// the table is bisected again by HashFunc over the row text, so no
// difference is ever hidden.

// fastCanary is a row of values whose hashes depend on the build, the
// architecture or the server encoding (its text has characters every Latin
// encoding has, as the self-test's).
const fastCanary = `ROW(1::int4, -2::int8, 'ünïcødé'::text COLLATE "C", 1.50::numeric, 0.1::float8, '-0'::float4,
	'2001-02-03 04:05:06.789+00'::timestamptz, '1 mon -1 day'::interval, true, pg_catalog.decode('00ff5c', 'hex'),
	ARRAY[1, NULL, 3]::int4[], '{"a": [1, 2.5]}'::jsonb, '10.0.0.1/8'::inet, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid,
	'2024-02-29'::date, '12:34:56'::time, 'x'::char(3), 'name'::name)`

// fastHash returns the row hash to cut segments by when
// hash_record_extended may be used, or nil and, when the reason is worth
// telling, why not.
func (s Spec) fastHash(ctx context.Context, src, dst Side) (*serverHash, string, error) {
	if src.Sum == nil || dst.Sum == nil || src.Figures == nil || dst.Figures == nil {
		return nil, "", nil
	}
	var sp, dp *probe
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { sp, err = s.probe(gctx, src); return wrap("source", err) })
	g.Go(func() (err error) { dp, err = s.probe(gctx, dst); return wrap("destination", err) })
	if err := g.Wait(); err != nil {
		return nil, "", err
	}
	switch {
	case sp == nil || dp == nil:
		return nil, "", nil // a server older than PostgreSQL 14, or no column to hash this way
	case sp.canary != dp.canary:
		return nil, "hash_record_extended hashes the same values differently on the two servers (build, architecture or server encoding): segments summed by " + s.HashFunc, nil
	}
	vals := make([]string, len(s.Columns))
	for i, c := range s.Columns {
		vals[i] = pgx.Identifier{c}.Sanitize()
		switch {
		case sp.asText[i] || dp.asText[i]:
			vals[i] = "(" + vals[i] + `::text) COLLATE "C"`
		case sp.collatable[i] || dp.collatable[i]:
			vals[i] += ` COLLATE "C"`
		}
	}
	return &serverHash{name: "hash_record_extended", expr: "pg_catalog.hash_record_extended(ROW(" + strings.Join(vals, ", ") + "), 0)"}, "", nil
}

// probe is what one server says about hashing the table's columns.
type probe struct {
	canary     string
	collatable []bool
	// asText marks the columns hashed as text: those of a type that is not
	// built in (an enum's hash is its value's OID, which differs between
	// servers; a domain counts as its base type) or has no extended hash
	// function.
	asText []bool
}

// probe asks q whether it has hash_record_extended, how it hashes the
// canary, and how to hash each column. A column's type is found by an empty
// subquery on it, so no type name is needed; an extended hash function is
// looked up (and its absence is an error) even for a NULL value, and each
// such error is rolled back to a savepoint, which leaves the snapshot as it
// was. Nil when the server lacks hash_record_extended or would hash every
// column as text.
func (s Spec) probe(ctx context.Context, q Side) (*probe, error) {
	var has bool
	if err := q.Q.QueryRow(ctx, "SELECT pg_catalog.to_regprocedure('pg_catalog.hash_record_extended(record,bigint)') IS NOT NULL").Scan(&has); err != nil || !has {
		return nil, err
	}
	empty := make([]string, len(s.Columns))
	colls := make([]string, len(s.Columns))
	builtin := make([]string, len(s.Columns))
	for i, c := range s.Columns {
		empty[i] = fmt.Sprintf("(SELECT %s FROM %s LIMIT 0)", pgx.Identifier{c}.Sanitize(), q.Table)
		typ := "FROM pg_catalog.pg_type t WHERE t.oid = pg_catalog.pg_typeof(" + empty[i] + ")), false)"
		colls[i] = "COALESCE((SELECT t.typcollation <> 0 " + typ
		builtin[i] = "COALESCE((SELECT CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END < 16384 " + typ
	}
	p := &probe{}
	var native []bool
	err := q.Q.QueryRow(ctx, "SELECT pg_catalog.hash_record_extended("+fastCanary+", 0)::text, ARRAY["+
		strings.Join(colls, ", ")+"]::bool[], ARRAY["+strings.Join(builtin, ", ")+"]::bool[]").Scan(&p.canary, &p.collatable, &native)
	if err != nil {
		return nil, fmt.Errorf("probe the row hash of %s: %w", s.Unit, err)
	}
	if err := exec(ctx, q.Q, "SAVEPOINT lockstep_diff_probe"); err != nil {
		return nil, fmt.Errorf("probe the row hash of %s: %w", s.Unit, err)
	}
	hashable := func(cols []string) (bool, error) {
		var h int64
		err := q.Q.QueryRow(ctx, "SELECT pg_catalog.hash_record_extended(ROW("+strings.Join(cols, ", ")+"), 0)").Scan(&h)
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) {
			return false, exec(ctx, q.Q, "ROLLBACK TO SAVEPOINT lockstep_diff_probe")
		}
		return err == nil, err
	}
	// The built-in columns all at once first: most types have an extended
	// hash function.
	var probed []string
	p.asText = make([]bool, len(s.Columns))
	for i := range s.Columns {
		p.asText[i] = !native[i]
		if native[i] {
			probed = append(probed, empty[i])
		}
	}
	ok := len(probed) == 0
	if !ok {
		ok, err = hashable(probed)
	}
	for i := 0; err == nil && !ok && i < len(empty); i++ {
		if native[i] {
			var one bool
			one, err = hashable(empty[i : i+1])
			p.asText[i] = !one
		}
	}
	if err == nil {
		err = exec(ctx, q.Q, "RELEASE SAVEPOINT lockstep_diff_probe")
	}
	if err != nil {
		return nil, fmt.Errorf("probe the row hash of %s: %w", s.Unit, err)
	}
	if !slices.Contains(p.asText, false) {
		return nil, nil // nothing to gain, or the function may not be called
	}
	return p, nil
}

func exec(ctx context.Context, q Querier, sql string) error {
	rows, err := q.Query(ctx, sql)
	if err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}

// accounted reports whether the rows of leaves (the segments whose rows
// were compared one by one) and the destination's rows with a NULL
// key (outside every segment) explain the whole difference: taken out of
// both tables' checksums, they must leave equal figures. It also returns
// how many rows it read.
func (s Spec) accounted(ctx context.Context, src, dst Side, leaves []segment, nulls int64) (bool, int64, error) {
	var sl, dl Sum
	if nulls > 0 {
		f, err := dst.Figures(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE %s", columnList(s.Columns), dst.Table, s.nullKeySQL()))
		if err != nil {
			return false, 0, fmt.Errorf("check the diff of %s: destination: %w", s.Unit, err)
		}
		dl = f
	}
	for i := 0; i < len(leaves); i += maxSegmentsPerQuery {
		b := &binder{key: s.Key, literals: true}
		where := s.spansSQL(b, leaves[i:min(i+maxSegmentsPerQuery, len(leaves))])
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error {
			f, err := src.Figures(gctx, fmt.Sprintf("SELECT %s FROM %s WHERE %s", columnList(s.Columns), src.Table, where))
			sl = plus(sl, f)
			return wrap("source", err)
		})
		g.Go(func() error {
			f, err := dst.Figures(gctx, fmt.Sprintf("SELECT %s FROM %s WHERE %s", columnList(s.Columns), dst.Table, where))
			dl = plus(dl, f)
			return wrap("destination", err)
		})
		if err := g.Wait(); err != nil {
			return false, 0, fmt.Errorf("check the diff of %s: %w", s.Unit, err)
		}
	}
	return minus(*src.Sum, sl) == minus(*dst.Sum, dl), sl.Rows + dl.Rows, nil
}

// plus and minus add and take out rows' figures (mod 2^64, like the sums).
func plus(a, b Sum) Sum  { return Sum{Rows: a.Rows + b.Rows, A: a.A + b.A, B: a.B + b.B} }
func minus(a, b Sum) Sum { return Sum{Rows: a.Rows - b.Rows, A: a.A - b.A, B: a.B - b.B} }
