package copy

import (
	"strings"
	"testing"

	"lockstep/partition"
)

// The sequence statements quote every name and carry no value: values go
// as parameters.
func TestSequenceSQLBuilders(t *testing.T) {
	odd := partition.Table{Schema: "My Schema", Name: `odd "seq`, Kind: "S"}
	plain := partition.Table{Schema: "public", Name: "t_id_seq", Kind: "S"}
	seqs := []partition.Sequence{{Source: odd, Dest: odd}, {Source: plain, Dest: plain}}
	if got, want := readSequencesSQL(seqs),
		`SELECT 0, last_value, is_called FROM "My Schema"."odd ""seq" UNION ALL SELECT 1, last_value, is_called FROM "public"."t_id_seq"`; got != want {
		t.Errorf("readSequencesSQL:\n%s\nwant\n%s", got, want)
	}
	set := setSequencesSQL(seqs)
	for _, want := range []string{
		`SELECT 0 AS i, $3::pg_catalog.text::pg_catalog.regclass AS seq, c.last_value AS d_last, c.is_called AS d_called, $4::pg_catalog.int8 AS s_last, $5::pg_catalog.bool AS s_called ` +
			`FROM l CROSS JOIN LATERAL (SELECT q.last_value, q.is_called FROM "My Schema"."odd ""seq" AS q WHERE l.n IS NOT NULL OFFSET 0) AS c`,
		`SELECT 1 AS i, $6::pg_catalog.text::pg_catalog.regclass AS seq, c.last_value AS d_last, c.is_called AS d_called, $7::pg_catalog.int8 AS s_last, $8::pg_catalog.bool AS s_called ` +
			`FROM l CROSS JOIN LATERAL (SELECT q.last_value, q.is_called FROM "public"."t_id_seq" AS q WHERE l.n IS NOT NULL OFFSET 0) AS c`,
		`pg_catalog.unnest(ARRAY[$3::pg_catalog.text::pg_catalog.regclass::pg_catalog.oid, $6::pg_catalog.text::pg_catalog.regclass::pg_catalog.oid]) AS k WHERE $2::pg_catalog.bool ORDER BY k OFFSET 0`,
		`CASE WHEN $2::pg_catalog.bool AND moves THEN pg_catalog.setval(seq, new_last, new_called) END`,
	} {
		if !strings.Contains(set, want) {
			t.Errorf("setSequencesSQL lacks\n%s\nin\n%s", want, set)
		}
	}
	table := partition.Table{Schema: "My Schema", Name: `Odd "T"`, Kind: "r"}
	check := checkSequencesSQL(table, []seqColumn{{seq: seqs[0], col: `we"ird`}})
	for _, want := range []string{
		`(SELECT pg_catalog.max("we""ird")::pg_catalog.numeric FROM ONLY "My Schema"."Odd ""T""")`,
		`FROM "My Schema"."odd ""seq" AS c JOIN pg_catalog.pg_sequence p ON p.seqrelid = $1::pg_catalog.text::pg_catalog.regclass`,
	} {
		if !strings.Contains(check, want) {
			t.Errorf("checkSequencesSQL lacks\n%s\nin\n%s", want, check)
		}
	}
}
