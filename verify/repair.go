package verify

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"lockstep/internal/redact"
)

// literal quotes text as an SQL literal that means the same whatever
// standard_conforming_strings is, so a statement stays safe when it is
// copied out of the file on its own: text with a backslash becomes an
// E'...' literal with the backslashes doubled. nil is NULL. The destination
// coerces the literal to the column's type.
func literal(v *string) string {
	if v == nil {
		return "NULL"
	}
	s := strings.ReplaceAll(*v, "'", "''")
	if strings.Contains(s, `\`) {
		return "E'" + strings.ReplaceAll(s, `\`, `\\`) + "'"
	}
	return "'" + s + "'"
}

// keyPredicate matches the rows whose key is the one the diff listed: equal
// to it (which an index can serve) and with the same text. Values equal
// under their type's equality may differ (numeric 7 and 7.0, float 0 and
// -0, text under a nondeterministic collation), the diff tells them apart
// by their text, and a destination without the source's unique index may
// hold both. Both texts are rendered in the session that runs the
// statement, so its settings do not matter.
func keyPredicate(key []KeyColumn, vals []string) string {
	parts := make([]string, len(key))
	for i, k := range key {
		v := vals[i]
		c, lit := pgx.Identifier{k.Name}.Sanitize(), literal(&v)
		parts[i] = fmt.Sprintf(`%s = %s AND %s::text COLLATE "C" = (%s::%s)::text`, c, lit, c, lit, k.Type)
	}
	return strings.Join(parts, " AND ")
}

// WriteRepairSQL writes statements that would make the destination table
// match the source for the differences found (not executed by lockstep).
// destTable is the quoted table name; only says the diff compared the
// table's own rows (not a partitioned table's), so that DELETE and UPDATE
// must not reach inheritance children either. Names and values are quoted
// (identifiers) or literals; the comment's copy of the name has its
// control characters escaped, so that no name can end the comment.
func (d *Diff) WriteRepairSQL(w io.Writer, destTable string, only bool, cols []string, key []KeyColumn) error {
	fmt.Fprintf(w, "-- table %s: %d missing, %d extra, %d changed on the destination\n",
		redact.Control(destTable), d.MissingCount, d.ExtraCount, d.ChangedCount)
	if d.Truncated {
		fmt.Fprintf(w, "-- only the differences listed were written; re-run after applying these\n")
	}
	target := destTable
	if only {
		target = "ONLY " + destTable
	}
	// A key held more than once loses every copy here; Inserts holds its
	// source row.
	for _, k := range slices.Concat(d.Extra, d.Duplicated) {
		fmt.Fprintf(w, "DELETE FROM %s WHERE %s;\n", target, keyPredicate(key, k))
	}
	if d.NullKeys > 0 {
		fmt.Fprintf(w, "DELETE FROM %s WHERE %s;\n", target, Spec{Key: key}.nullKeySQL())
	}
	for _, row := range d.Inserts {
		if row == nil {
			continue
		}
		vals := make([]string, len(row))
		for i, v := range row {
			vals[i] = literal(v)
		}
		// An identity column GENERATED ALWAYS takes the source's value
		// only so (COPY, which the copy uses, needs no such clause).
		fmt.Fprintf(w, "INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE VALUES (%s);\n", destTable, columnList(cols), strings.Join(vals, ", "))
	}
	for _, c := range d.Changed {
		if c.Source == nil {
			continue
		}
		sets := make([]string, len(c.Columns))
		for i, col := range c.Columns {
			sets[i] = pgx.Identifier{col}.Sanitize() + " = " + literal(c.Source[i])
		}
		fmt.Fprintf(w, "UPDATE %s SET %s WHERE %s;\n", target, strings.Join(sets, ", "), keyPredicate(key, c.Key))
	}
	_, err := fmt.Fprintln(w)
	return err
}
