package copy

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"lockstep/partition"
)

// Sequences that feed the copied columns (see partition/sequences.go).
//
// A copy reads the source's sequences in the round trip that takes the
// source lock, right after the LOCK: the snapshot is taken by that read, so
// every value in the copied rows was handed out before it, and sequences
// are not transactional, so the read sees each sequence's current value.
// After the last member is verified, one statement on the destination sets
// each of its sequences to the source's value, unless the destination's own
// is already as far along (dual writes may have moved it): never backwards
// in the sequence's direction, and within its MINVALUE and MAXVALUE. The
// comparison and the setval run server-side, in one statement, against the
// destination's value as it is then. setval is not transactional: a unit
// rolled back afterwards leaves the sequence moved forward, which only
// skips values.

// SequencesMode says what a run does with the sequences that feed the
// copied columns.
type SequencesMode string

const (
	// SequencesCopy: a copy sets each destination sequence from the
	// source's (the default for copy).
	SequencesCopy SequencesMode = "copy"
	// SequencesCheck: verify reports a destination sequence that would
	// hand out a value its column already holds (the default for verify).
	SequencesCheck SequencesMode = "check"
	// SequencesNone leaves sequences alone.
	SequencesNone SequencesMode = "none"
)

// SequenceValue is a sequence's state: the last value it handed out, or,
// when not called, the next one it hands out.
type SequenceValue struct {
	LastValue int64 `json:"last_value"`
	IsCalled  bool  `json:"is_called"`
}

func (v SequenceValue) String() string {
	if v.IsCalled {
		return strconv.FormatInt(v.LastValue, 10)
	}
	return strconv.FormatInt(v.LastValue, 10) + " (not called)"
}

// SequenceSet is what a copy or sync-sequences did (or, dry, would do) to
// one destination sequence.
type SequenceSet struct {
	Sequence string        `json:"sequence"`
	Source   SequenceValue `json:"source"`
	Before   SequenceValue `json:"destination_before"`
	After    SequenceValue `json:"destination_after"`
	// Set: moved forward to the source's value (plus any margin); false:
	// the destination's was already as far along, and was left alone.
	Set bool `json:"set"`
	// Clamped: the value lies beyond the destination sequence's MINVALUE
	// or MAXVALUE; it was set to that bound.
	Clamped bool `json:"clamped,omitempty"`
}

// SequenceBehindError says a destination sequence would hand out a value
// its column already holds: an INSERT that takes its default would fail
// with a duplicate key (or duplicate a value). A verification failure:
// set the sequence (lockstep sync-sequences) and verify again.
type SequenceBehindError struct {
	Unit   string
	Behind []SequenceBehind
}

// SequenceBehind is one sequence behind its column.
type SequenceBehind struct {
	Sequence, Column string
	Next             string // the value nextval would return
	ColumnEdge       string // the column's largest value (smallest, for a descending sequence)
	Descending       bool
}

func (e *SequenceBehindError) Error() string {
	parts := make([]string, len(e.Behind))
	for i, b := range e.Behind {
		edge := "largest"
		if b.Descending {
			edge = "smallest"
		}
		parts[i] = fmt.Sprintf("sequence %s would hand out %s next, but column %s already holds %s as its %s value",
			b.Sequence, b.Next, b.Column, b.ColumnEdge, edge)
	}
	return fmt.Sprintf("%s: %s on the destination (run lockstep sync-sequences)", e.Unit, strings.Join(parts, "; "))
}

// setSequences are the sequences a copy of g sets: those of its members
// that the source has by the same name, each once.
func setSequences(g *partition.Group) []partition.Sequence {
	var out []partition.Sequence
	seen := map[uint32]bool{}
	for _, u := range g.Units {
		for _, s := range u.Sequences {
			if s.Source.OID != 0 && !seen[s.Dest.OID] {
				seen[s.Dest.OID] = true
				out = append(out, s)
			}
		}
	}
	return out
}

// readSequencesSQL reads the source's sequences, one row each: index,
// last_value, is_called.
func readSequencesSQL(seqs []partition.Sequence) string {
	parts := make([]string, len(seqs))
	for i, s := range seqs {
		parts[i] = fmt.Sprintf("SELECT %d, last_value, is_called FROM %s", i, s.Source)
	}
	return strings.Join(parts, " UNION ALL ")
}

// sourceSequencesSQL is what the source's lock round trip runs after the
// LOCK for group g: the read of its sequences, if it has any to set.
func (w *worker) sourceSequencesSQL(g *partition.Group) []string {
	if w.opts.Sequences != SequencesCopy {
		return nil
	}
	if seqs := setSequences(g); len(seqs) > 0 {
		return []string{readSequencesSQL(seqs)}
	}
	return nil
}

// parseSequenceRows turns the text rows of readSequencesSQL into values, in
// the order of the sequences.
func parseSequenceRows(rows [][][]byte, n int) ([]SequenceValue, error) {
	if len(rows) != n {
		return nil, fmt.Errorf("read sequences: %d rows for %d sequences", len(rows), n)
	}
	out := make([]SequenceValue, n)
	for _, r := range rows {
		if len(r) != 3 {
			return nil, fmt.Errorf("read sequences: a row of %d columns", len(r))
		}
		i, err := strconv.Atoi(string(r[0]))
		if err != nil || i < 0 || i >= n {
			return nil, fmt.Errorf("read sequences: bad index %q", r[0])
		}
		if out[i].LastValue, err = strconv.ParseInt(string(r[1]), 10, 64); err != nil {
			return nil, fmt.Errorf("read sequences: last_value %q: %w", r[1], err)
		}
		out[i].IsCalled = string(r[2]) == "t"
	}
	return out, nil
}

// setSequencesSQL sets each destination sequence from a source value, in
// one statement: never backwards in the sequence's direction (the
// destination's own value, read in the same statement, wins when it is as
// far along), moved on by the margin ($1, in the sequence's direction),
// and kept within MINVALUE..MAXVALUE. A value past the end the sequence
// moves towards is set as that bound, called (nextval then fails rather
// than repeat a value, unless the sequence cycles: checkSequencesSQL sees
// that); one before its start, as that bound, not called.
// $2 says whether to set (false: only compute, for a dry run). Then for
// sequence i: $(3i+3) its name, $(3i+4) and $(3i+5) the source's
// last_value and is_called. Rows: index, destination before (last_value,
// is_called), after, whether it moves, whether the value was clamped.
//
// Reading a destination value and setting the sequence from it must not
// let another session's statement set it in between (two processes
// copying two partitions of the table that owns it, or a copy beside
// sync-sequences), or the one that read the lower source value could set
// it last, below ids the other copied. So when it sets, the statement first
// takes an advisory lock on each sequence (in the order of their OIDs, held
// until the transaction ends): l takes them all before it yields its row,
// and each sequence is read in a subquery that refers to that row, which
// the executor therefore runs after it.
func setSequencesSQL(seqs []partition.Sequence) string {
	parts := make([]string, len(seqs))
	names := make([]string, len(seqs))
	for i, s := range seqs {
		n := 3*i + 3
		parts[i] = fmt.Sprintf("SELECT %d AS i, $%d::pg_catalog.text::pg_catalog.regclass AS seq, c.last_value AS d_last, c.is_called AS d_called, "+
			"$%d::pg_catalog.int8 AS s_last, $%d::pg_catalog.bool AS s_called "+
			"FROM l CROSS JOIN LATERAL (SELECT q.last_value, q.is_called FROM %s AS q WHERE l.n IS NOT NULL OFFSET 0) AS c", i, n, n+1, n+2, s.Dest)
		names[i] = fmt.Sprintf("$%d::pg_catalog.text::pg_catalog.regclass::pg_catalog.oid", n)
	}
	return fmt.Sprintf(`WITH l AS MATERIALIZED (
	  SELECT pg_catalog.count(pg_catalog.pg_advisory_xact_lock(%d, (k::pg_catalog.int8 - 2147483648)::pg_catalog.int4)) AS n
	  FROM (SELECT k FROM pg_catalog.unnest(ARRAY[%s]) AS k WHERE $2::pg_catalog.bool ORDER BY k OFFSET 0) AS s
	), x AS MATERIALIZED (`, setvalLockClass, strings.Join(names, ", ")) + strings.Join(parts, " UNION ALL ") + `),
	y AS (
	  SELECT x.*, p.seqincrement AS inc, p.seqmin AS lo, p.seqmax AS hi,
	         x.s_last::pg_catalog.numeric + CASE WHEN p.seqincrement > 0 THEN $1::pg_catalog.int8 ELSE -$1::pg_catalog.int8 END AS want
	  FROM x JOIN pg_catalog.pg_sequence p ON p.seqrelid = x.seq
	), z AS (
	  SELECT y.*, LEAST(GREATEST(want, lo), hi)::pg_catalog.int8 AS new_last,
	         CASE WHEN (inc > 0 AND want > hi) OR (inc < 0 AND want < lo) THEN true
	              WHEN want < lo OR want > hi THEN false
	              ELSE s_called END AS new_called,
	         want < lo OR want > hi AS clamped
	  FROM y
	), v AS (
	  SELECT z.*, (new_last::pg_catalog.numeric + CASE WHEN new_called THEN inc ELSE 0 END) AS new_next,
	              (d_last::pg_catalog.numeric + CASE WHEN d_called THEN inc ELSE 0 END) AS d_next
	  FROM z
	), m AS (
	  SELECT v.*, (inc > 0 AND new_next > d_next) OR (inc < 0 AND new_next < d_next) AS moves FROM v
	)
	SELECT i, d_last, d_called, new_last, new_called, moves, clamped,
	       CASE WHEN $2::pg_catalog.bool AND moves THEN pg_catalog.setval(seq, new_last, new_called) END
	FROM m ORDER BY i`
}

// setvalLockClass is the first key of the advisory locks (of two int4
// keys, the second from a sequence's OID) that setSequencesSQL takes.
const setvalLockClass = 0x6c6b7371 // "lksq"

// applySequences runs setSequencesSQL on conn (one round trip) and
// returns what it did to each sequence. To set (apply), conn must be in a
// transaction, whose end releases the statement's advisory locks.
func applySequences(ctx context.Context, conn *pgx.Conn, seqs []partition.Sequence, src []SequenceValue, margin int64, apply bool) ([]SequenceSet, error) {
	args := []any{pgx.QueryExecModeExec, margin, apply}
	for i, s := range seqs {
		args = append(args, s.Dest.String(), src[i].LastValue, src[i].IsCalled)
	}
	rows, err := conn.Query(ctx, setSequencesSQL(seqs), args...)
	if err != nil {
		return nil, err
	}
	out := make([]SequenceSet, len(seqs))
	var i int
	var r SequenceSet
	var set *int64
	_, err = pgx.ForEachRow(rows, []any{&i, &r.Before.LastValue, &r.Before.IsCalled, &r.After.LastValue, &r.After.IsCalled, &r.Set, &r.Clamped, &set},
		func() error {
			if i < 0 || i >= len(seqs) {
				return fmt.Errorf("set sequences: bad index %d", i)
			}
			if !r.Set {
				r.After = r.Before
			}
			r.Sequence, r.Source = seqs[i].Dest.String(), src[i]
			out[i] = r
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// setGroupSequences sets the destination's sequences of group g, inside
// its transaction, from the source's values that the source's lock round
// trip read (rows). A server silent for the stall timeout ends it with a
// *StallError.
func (w *worker) setGroupSequences(ctx context.Context, g *partition.Group, rows [][][]byte, res *Result, log *slog.Logger) error {
	if w.opts.Sequences != SequencesCopy {
		return nil
	}
	seqs := setSequences(g)
	if len(seqs) == 0 {
		return nil
	}
	src, err := parseSequenceRows(rows, len(seqs))
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	// Each statement compares with the destination's value and sets it
	// from there; two units sharing a sequence (the partitions of one
	// table) must not interleave, or the one that read the lower source
	// value could set it last, below ids the other one copied.
	w.opts.setvals.Lock()
	defer w.opts.setvals.Unlock()
	sctx, cancel := bounded(ctx, w.dst.name, "to set the sequences", w.opts.StallTimeout)
	defer cancel()
	sets, err := applySequences(sctx, w.dstConn, seqs, src, 0, true)
	if err != nil {
		if se := stalled(sctx, err); se != err {
			return se
		}
		return fmt.Errorf("destination: set sequences: %w", err)
	}
	res.Sequences = sets
	for _, s := range sets {
		log.Debug("sequence", "sequence", s.Sequence, "source", s.Source.String(), "before", s.Before.String(), "after", s.After.String(),
			"set", s.Set, "clamped", s.Clamped)
		if s.Clamped {
			log.Warn("sequence value beyond the destination sequence's bounds; set to the bound", "sequence", s.Sequence,
				"source", s.Source.String(), "after", s.After.String())
		}
	}
	return nil
}

// checkSequencesSQL reads, for each pair of a sequence and an integer
// column it feeds, the value nextval would return (a cycling sequence at
// the end it moves towards wraps to its other bound) and the column's
// largest value (smallest, for a descending sequence), and whether the
// sequence is behind it; $i+1 names the sequence of pair i.
func checkSequencesSQL(t partition.Table, pairs []seqColumn) string {
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		col := pgx.Identifier{p.col}.Sanitize()
		parts[i] = fmt.Sprintf("SELECT %d AS i, CASE WHEN NOT c.is_called THEN c.last_value::pg_catalog.numeric "+
			"WHEN p.seqcycle AND p.seqincrement > 0 AND c.last_value::pg_catalog.numeric + p.seqincrement > p.seqmax THEN p.seqmin "+
			"WHEN p.seqcycle AND p.seqincrement < 0 AND c.last_value::pg_catalog.numeric + p.seqincrement < p.seqmin THEN p.seqmax "+
			"ELSE c.last_value::pg_catalog.numeric + p.seqincrement END AS next, "+
			"p.seqincrement < 0 AS descending, "+
			"CASE WHEN p.seqincrement > 0 THEN (SELECT pg_catalog.max(%s)::pg_catalog.numeric FROM %s) "+
			"ELSE (SELECT pg_catalog.min(%s)::pg_catalog.numeric FROM %s) END AS edge "+
			"FROM %s AS c JOIN pg_catalog.pg_sequence p ON p.seqrelid = $%d::pg_catalog.text::pg_catalog.regclass",
			i, col, only(t), col, only(t), p.seq.Dest, i+1)
	}
	return "SELECT i, next::pg_catalog.text, descending, edge::pg_catalog.text, " +
		"edge IS NOT NULL AND ((NOT descending AND next <= edge) OR (descending AND next >= edge)) FROM (" +
		strings.Join(parts, " UNION ALL ") + ") s ORDER BY i"
}

type seqColumn struct {
	seq partition.Sequence
	col string
}

// checkSequences reports, as a *SequenceBehindError, the destination
// sequences of u that would hand out a value their column already holds, in
// conn's snapshot (one round trip).
func checkSequences(ctx context.Context, conn *pgx.Conn, u *partition.Unit) error {
	var pairs []seqColumn
	for _, s := range u.Sequences {
		for _, c := range s.Columns {
			if c.Integer {
				pairs = append(pairs, seqColumn{seq: s, col: c.Name})
			}
		}
	}
	if len(pairs) == 0 {
		return nil
	}
	args := []any{pgx.QueryExecModeExec}
	for _, p := range pairs {
		args = append(args, p.seq.Dest.String())
	}
	rows, err := conn.Query(ctx, checkSequencesSQL(u.Dest, pairs), args...)
	if err != nil {
		return fmt.Errorf("destination: check sequences of %s: %w", u.Dest, err)
	}
	var behind []SequenceBehind
	var i int
	var next string
	var desc, late bool
	var edge *string
	_, err = pgx.ForEachRow(rows, []any{&i, &next, &desc, &edge, &late}, func() error {
		if late && i >= 0 && i < len(pairs) {
			behind = append(behind, SequenceBehind{Sequence: pairs[i].seq.Dest.String(), Column: pgx.Identifier{pairs[i].col}.Sanitize(),
				Next: next, ColumnEdge: *edge, Descending: desc})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("destination: check sequences of %s: %w", u.Dest, err)
	}
	if len(behind) > 0 {
		return &SequenceBehindError{Unit: u.Name(), Behind: behind}
	}
	return nil
}

// sequenceCounts says how many of a unit's sequences were set, left alone
// and clamped.
func sequenceCounts(sets []SequenceSet) (set, ahead, clamped int) {
	for _, s := range sets {
		if s.Set {
			set++
		} else {
			ahead++
		}
		if s.Clamped {
			clamped++
		}
	}
	return set, ahead, clamped
}
