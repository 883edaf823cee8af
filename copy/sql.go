package copy

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"lockstep/partition"
)

func columnList(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(q, ", ")
}

func formatOption(binary bool) string {
	if binary {
		return " (FORMAT binary)"
	}
	return ""
}

// copyOutSQL reads a table's own rows (no inheritance children; all
// partitions of a partitioned table) as a COPY stream.
func copyOutSQL(t partition.Table, cols []string, binary bool) string {
	if t.Partitioned() {
		return fmt.Sprintf("COPY (SELECT %s FROM %s) TO STDOUT%s", columnList(cols), t, formatOption(binary))
	}
	return fmt.Sprintf("COPY %s (%s) TO STDOUT%s", t, columnList(cols), formatOption(binary))
}

func copyInSQL(t partition.Table, cols []string, binary, freeze bool) string {
	var opts []string
	if binary {
		opts = append(opts, "FORMAT binary")
	}
	if freeze {
		opts = append(opts, "FREEZE")
	}
	s := fmt.Sprintf("COPY %s (%s) FROM STDIN", t, columnList(cols))
	if len(opts) > 0 {
		s += " (" + strings.Join(opts, ", ") + ")"
	}
	return s
}

// only keeps a statement to the table itself where PostgreSQL allows it:
// inheritance children are other tables; a partitioned table is its
// partitions.
func only(t partition.Table) string {
	if t.Partitioned() {
		return t.String()
	}
	return "ONLY " + t.String()
}

func countSQL(t partition.Table) string { return "SELECT pg_catalog.count(*) FROM " + only(t) }

// Reads that are hashed and compared run with search_path pinned to
// pg_catalog, so values that print as object names (regclass and the like,
// also inside domains, arrays and composites) print schema-qualified on both
// servers whatever their search_path, and the destination parses the
// source's names to the same objects. Read-only transactions pin it from
// their start; the destination of a copy pins it only for the read-backs,
// after its loads, so its triggers and defaults run under its own search_path.
const qualifiedNamesSQL = "SET LOCAL search_path = pg_catalog, pg_temp"

// pinnedSQL is the session settings every connection gets once, outside
// any transaction (see setupSQL): those that keep a held lock alive
// whatever the server's defaults, and the output settings that make COPY
// text and the checksum identical on both servers.
func pinnedSQL(serverVersion int) string {
	s := []string{
		"SET statement_timeout = 0",
		"SET TimeZone = 'UTC'",
		"SET DateStyle = 'ISO, MDY'",
		"SET IntervalStyle = 'postgres'",
		"SET extra_float_digits = 3",
		"SET bytea_output = 'hex'",
		// Refuse, rather than silently filter, where a row-level security
		// policy would hide rows (as pg_dump does).
		"SET row_security = off",
		// money's text form (currency symbol, separators, fraction
		// digits) follows lc_monetary; C is on every server.
		"SET lc_monetary = 'C'",
		// How values are parsed: an XML content fragment (which
		// DOCUMENT refuses, in binary too), and an array's NULL
		// (which array_nulls off reads as the string 'NULL').
		"SET xmloption = content",
		"SET array_nulls = on",
		// Type and object names print unquoted where they can, for the
		// plan's comparison of types and for reg* values.
		"SET quote_all_identifiers = off",
	}
	if serverVersion >= 140000 {
		// A backend whose lockstep process died stops waiting promptly.
		s = append(s, "SET client_connection_check_interval = 1000")
	}
	if serverVersion >= 170000 {
		s = append(s, "SET transaction_timeout = 0")
	}
	return strings.Join(s, "; ")
}

// replaceSQL empties a group's destination tables: one TRUNCATE of its
// members and of the partitioned tables it truncates for later units, or,
// under --fk-mode replica for a table referenced from outside its unit,
// a DELETE (TRUNCATE checks foreign keys whatever the replication role).
// leavesCheckSQL fails the destination's transaction, before its TRUNCATE,
// when a partitioned table the group truncates for later units no longer
// has exactly the leaf partitions the plan found: a partition created or
// attached since would be emptied and copied by no unit. It runs after
// the locks, which keep the partitions as they are until the commit.
func leavesCheckSQL(g *partition.Group) []string {
	var out []string
	for i, t := range g.Truncate {
		if i >= len(g.TruncateLeaves) {
			break
		}
		oids := make([]string, len(g.TruncateLeaves[i]))
		for j, o := range g.TruncateLeaves[i] {
			oids[j] = strconv.FormatUint(uint64(o), 10)
		}
		out = append(out, fmt.Sprintf(`DO $lockstep$ BEGIN IF ARRAY(SELECT relid::pg_catalog.oid FROM pg_catalog.pg_partition_tree(%[1]d::pg_catalog.regclass) WHERE isleaf ORDER BY 1) <> '{%[2]s}'::pg_catalog.oid[] THEN `+
			`RAISE EXCEPTION 'the partitions of %% changed since the plan (TRUNCATE would empty partitions that no unit copies); run again to plan anew', %[1]d::pg_catalog.regclass; END IF; END $lockstep$`,
			t.OID, strings.Join(oids, ",")))
	}
	return out
}

func replaceSQL(g *partition.Group) string {
	if g.Delete {
		return "DELETE FROM " + only(g.Units[0].Dest)
	}
	names := make([]string, 0, len(g.Units)+len(g.Truncate))
	for _, u := range g.Units {
		names = append(names, only(u.Dest))
	}
	for _, t := range g.Truncate {
		names = append(names, t.String())
	}
	return "TRUNCATE " + strings.Join(names, ", ")
}
