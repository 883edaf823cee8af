package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Record is a unit's latest attempt in the ledger.
type Record struct {
	ID       int64     `json:"id"`
	Run      string    `json:"run"`
	Host     string    `json:"host"`
	Outcome  string    `json:"outcome"`
	Verify   string    `json:"verify"`
	Finished time.Time `json:"finished"`
	Shape    string    `json:"-"`
	Checksum string    `json:"checksum,omitempty"`
	Error    string    `json:"error,omitempty"`
}

const recordCols = `u.id, u.run_id, r.host, u.outcome, u.verify, u.finished, u.shape, coalesce(u.checksum, ''), coalesce(u.error, '')`

// scanKeyed scans a row of latestSQL's shape: a unit's key and its record.
func scanKeyed(rows pgx.Rows) (string, *Record, error) {
	var key string
	var r Record
	err := rows.Scan(&key, &r.ID, &r.Run, &r.Host, &r.Outcome, &r.Verify, &r.Finished, &r.Shape, &r.Checksum, &r.Error)
	return key, &r, err
}

// latestSQL reads the latest attempt of each of the units keyed $1, one
// index probe per unit, among the attempts cond admits (a condition on
// the units row u; "true" admits every attempt).
func latestSQL(schema, cond string) string {
	return `SELECT k.key, ` + recordCols + `
		FROM pg_catalog.unnest($1::text[]) AS k(key)
		CROSS JOIN LATERAL (SELECT * FROM ` + schema + `.units u WHERE u.unit_key = k.key AND ` + cond + ` ORDER BY u.id DESC LIMIT 1) u
		JOIN ` + schema + `.runs r ON r.id = u.run_id`
}

// Latest reads the latest attempt of each unit, in keys' order (nil for a
// unit never attempted).
func (l *Ledger) Latest(ctx context.Context, keys []string) ([]*Record, error) {
	out := make([]*Record, len(keys))
	err := l.do(ctx, func(c *pgx.Conn) error {
		var err error
		out, err = latest(ctx, c, l.schema, keys)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("destination: ledger: read earlier runs: %w", err)
	}
	return out, nil
}

func latest(ctx context.Context, q Querier, schema string, keys []string) ([]*Record, error) {
	return latestWhere(ctx, q, schema, keys, "true")
}

// latestWhere is latest restricted to the attempts cond admits.
func latestWhere(ctx context.Context, q Querier, schema string, keys []string, cond string) ([]*Record, error) {
	out := make([]*Record, len(keys))
	at := make(map[string]int, len(keys))
	for i, k := range keys {
		at[k] = i
	}
	rows, err := q.Query(ctx, latestSQL(schema, cond), keys)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		key, r, err := scanKeyed(rows)
		if err != nil {
			return nil, err
		}
		out[at[key]] = r
	}
	return out, rows.Err()
}

// Want is what a record must show for this run to trust it.
type Want struct {
	Shape string // the unit's columns on both sides now
	// After is the ledger id of the latest copy of each unit this one must
	// follow: a copy of those truncates this one's tables, so this one's
	// record counts only if it is newer.
	After []int64
	// Emptied is the ledger id of the latest copy, by any unit of any
	// selection, that emptied a partitioned table the unit's tables belong
	// to (see Attempt.Emptied; 0: none): this one's record counts only if
	// it is newer.
	Emptied int64
}

// strength orders verification modes: a record verified at least as
// strongly as this run would verify is trusted.
func strength(mode string) int {
	switch mode {
	case "checksum":
		return 2
	case "count":
		return 1
	}
	return 0
}

// Trusted tells whether rec is a copy this run may skip the unit for: a
// success, verified at least as strongly as this run verifies, of the
// unit's current shape, within --since (and made during this run with
// --redo), and newer than the copies of the units it must follow. The
// reason says why not.
func (l *Ledger) Trusted(rec *Record, want Want) (bool, string) {
	return trusted(rec, want, l.verify, l.cutoff)
}

func trusted(rec *Record, want Want, verify string, cutoff *time.Time) (bool, string) {
	switch {
	case rec == nil:
		return false, "never copied"
	case rec.Outcome != OutcomeOK:
		return false, "its latest attempt " + rec.Outcome
	case strength(rec.Verify) < strength(verify):
		return false, fmt.Sprintf("copied with --verify %s, this run verifies by %s", rec.Verify, verify)
	case rec.Shape != want.Shape:
		return false, "its columns changed since it was copied"
	case cutoff != nil && rec.Finished.Before(*cutoff):
		return false, "copied before " + cutoff.UTC().Format(time.RFC3339)
	case want.Emptied > rec.ID:
		return false, "a unit that truncates its partitioned table was copied after it"
	}
	for _, a := range want.After {
		if a > rec.ID {
			return false, "a unit it must follow was copied again after it"
		}
	}
	return true, ""
}

// emptiedSQL reads, for destination tables $1 (OIDs) of units $2 (their
// indexes), the id of the latest success row that emptied (see
// Attempt.Emptied) a partitioned table each unit's tables belong to; %s
// is the ledger's quoted schema. Names are compared as
// pgx.Identifier.Sanitize writes them.
const emptiedSQL = `SELECT x.i, max(u.id)
	FROM ROWS FROM (pg_catalog.unnest($1::int8[]), pg_catalog.unnest($2::int4[])) AS x(rel, i)
	CROSS JOIN LATERAL pg_catalog.pg_partition_ancestors(x.rel::oid::regclass) a
	JOIN pg_catalog.pg_class c ON c.oid = a.relid
	JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	JOIN %s.units u ON u.outcome = 'ok' AND u.emptied IS NOT NULL
		AND u.emptied @> ARRAY['"' || pg_catalog.replace(n.nspname, '"', '""') || '"."' || pg_catalog.replace(c.relname, '"', '""') || '"']
	GROUP BY x.i`

// Emptied reads, for each unit given by its destination tables' OIDs, the
// ledger id of the latest copy that emptied a partitioned table they
// belong to (0: none; see Want.Emptied).
func (l *Ledger) Emptied(ctx context.Context, tables [][]uint32) ([]int64, error) {
	var out []int64
	err := l.do(ctx, func(c *pgx.Conn) error {
		var err error
		out, err = emptied(ctx, c, l.schema, tables)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("destination: ledger: read earlier runs: %w", err)
	}
	return out, nil
}

func emptied(ctx context.Context, q Querier, schema string, tables [][]uint32) ([]int64, error) {
	out := make([]int64, len(tables))
	var rels []int64
	var idx []int32
	for i, ts := range tables {
		for _, t := range ts {
			rels, idx = append(rels, int64(t)), append(idx, int32(i))
		}
	}
	if len(rels) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, fmt.Sprintf(emptiedSQL, schema), rels, idx)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var i int32
		var id int64
		if err := rows.Scan(&i, &id); err != nil {
			return nil, err
		}
		out[i] = id
	}
	return out, rows.Err()
}
