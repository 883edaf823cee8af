package verify

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// literal quotes text as an SQL literal (standard_conforming_strings on);
// nil is NULL. The destination coerces it to the column's type.
func literal(v *string) string {
	if v == nil {
		return "NULL"
	}
	return "'" + strings.ReplaceAll(*v, "'", "''") + "'"
}

func keyPredicate(key []KeyColumn, vals []string) string {
	parts := make([]string, len(key))
	for i, k := range key {
		v := vals[i]
		parts[i] = pgx.Identifier{k.Name}.Sanitize() + " = " + literal(&v)
	}
	return strings.Join(parts, " AND ")
}

// WriteRepairSQL writes statements that would make the destination table
// match the source for the differences found (not executed by lockstep).
func (d *Diff) WriteRepairSQL(w io.Writer, destTable string, cols []string, key []KeyColumn) error {
	fmt.Fprintf(w, "-- %s: %d missing, %d extra, %d changed on the destination\n", destTable, d.MissingCount, d.ExtraCount, d.ChangedCount)
	if d.Truncated {
		fmt.Fprintf(w, "-- only the differences listed were written; re-run after applying these\n")
	}
	// A key held more than once loses every copy here; Inserts holds its
	// source row.
	for _, k := range slices.Concat(d.Extra, d.Duplicated) {
		fmt.Fprintf(w, "DELETE FROM %s WHERE %s;\n", destTable, keyPredicate(key, k))
	}
	for _, row := range d.Inserts {
		if row == nil {
			continue
		}
		vals := make([]string, len(row))
		for i, v := range row {
			vals[i] = literal(v)
		}
		fmt.Fprintf(w, "INSERT INTO %s (%s) VALUES (%s);\n", destTable, columnList(cols), strings.Join(vals, ", "))
	}
	for _, c := range d.Changed {
		if c.Source == nil {
			continue
		}
		sets := make([]string, len(c.Columns))
		for i, col := range c.Columns {
			sets[i] = pgx.Identifier{col}.Sanitize() + " = " + literal(c.Source[i])
		}
		fmt.Fprintf(w, "UPDATE %s SET %s WHERE %s;\n", destTable, strings.Join(sets, ", "), keyPredicate(key, c.Key))
	}
	_, err := fmt.Fprintln(w)
	return err
}
