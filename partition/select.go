package partition

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Selection says which tables become units.
type Selection struct {
	Tables   []string // names as SQL writes them (--table, --tables-from)
	Matching []string // POSIX regexes over schema.table, run by the source server
	Exclude  []string // POSIX regexes over schema.table of the units, run by the source server
	Order    Order
}

// Order is the order units run in.
type Order string

const (
	// BySize runs the largest units first, so a run ends with short ones.
	BySize Order = "size"
	// ByName runs units in name order.
	ByName Order = "name"
)

// ParseOrder turns a flag value into an Order.
func ParseOrder(s string) (Order, error) {
	switch o := Order(s); o {
	case BySize, ByName:
		return o, nil
	}
	return "", fmt.Errorf("unknown order %q (want size or name)", s)
}

// Empty reports whether nothing at all was asked for.
func (s Selection) Empty() bool { return len(s.Tables) == 0 && len(s.Matching) == 0 }

// ReadNames reads one table name per line; blank lines and lines starting
// with # are skipped, and so is anything after an unquoted # on a line.
func ReadNames(r io.Reader) ([]string, error) {
	var names []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := stripComment(sc.Text())
		if line = strings.TrimSpace(line); line != "" {
			names = append(names, line)
		}
	}
	return names, sc.Err()
}

// stripComment cuts a line at the first # outside double quotes.
func stripComment(line string) string {
	quoted := false
	for i, r := range line {
		switch {
		case r == '"':
			quoted = !quoted
		case r == '#' && !quoted:
			return line[:i]
		}
	}
	return line
}

// matching lists the ordinary tables and leaf partitions whose schema.table
// matches re, as the source server evaluates the POSIX regex.
func matching(ctx context.Context, q Querier, re string) ([]Table, error) {
	rows, err := q.Query(ctx, `
		SELECT c.oid, n.nspname, c.relname, c.relkind::text
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r'
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
		  AND n.nspname || '.' || c.relname ~ $1
		ORDER BY n.nspname, c.relname`, re)
	if err != nil {
		return nil, regexError("--tables-matching", re, err)
	}
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Table, error) {
		var t Table
		err := r.Scan(&t.OID, &t.Schema, &t.Name, &t.Kind)
		return t, err
	})
	if err != nil {
		return nil, regexError("--tables-matching", re, err)
	}
	return found, nil
}

func regexError(flag, re string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "2201B" {
		return fmt.Errorf("source: %s %q: %s", flag, re, pgErr.Message)
	}
	return fmt.Errorf("source: %s %q: %w", flag, re, err)
}

// excluded returns which of names match any of res, on the source server.
func excluded(ctx context.Context, q Querier, names []string, res []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, re := range res {
		rows, err := q.Query(ctx, `SELECT n FROM unnest($1::text[]) n WHERE n ~ $2`, names, re)
		if err != nil {
			return nil, regexError("--exclude", re, err)
		}
		hit, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, regexError("--exclude", re, err)
		}
		for _, h := range hit {
			out[h] = true
		}
	}
	return out, nil
}

// qualified is schema.table without quotes, the text the regexes see.
func (t Table) qualified() string { return t.Schema + "." + t.Name }

// orderUnits sorts units in place.
func orderUnits(units []Unit, o Order) {
	slices.SortStableFunc(units, func(a, b Unit) int {
		if o == BySize && a.Estimate.Bytes != b.Estimate.Bytes {
			if a.Estimate.Bytes > b.Estimate.Bytes {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name(), b.Name())
	})
}
