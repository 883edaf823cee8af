package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lockstep/internal/pgtest"
)

// copyWholeSchema copies every table matching re with one command, checks
// the two sides equal with verify --lock, and copies again on two jobs
// (re-running is always safe).
func copyWholeSchema(t *testing.T, src, dst, re string) string {
	t.Helper()
	ctx := context.Background()
	began := time.Now()
	code, out, errOut := lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--tables-matching", re, "--progress-interval", "0")
	if code != 0 {
		t.Fatalf("copy: exit %d\n%s\n%s", code, out, errOut)
	}
	took := time.Since(began)
	if code, out, errOut := lockstep(t, ctx, "verify", "--source", src, "--dest", dst, "--tables-matching", re, "--lock", "--progress-interval", "0"); code != 0 {
		t.Fatalf("verify --lock: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut := lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--tables-matching", re, "--jobs", "2", "--progress-interval", "0"); code != 0 {
		t.Fatalf("second copy on two jobs: exit %d\n%s\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	t.Logf("first copy in %s: %s", took.Round(time.Millisecond), lines[len(lines)-1])
	return out
}

// pgbench's own schema with its foreign keys (no one here wrote it):
// branches referenced by tellers, by the partitions of accounts and by
// history, which also references the partitions of accounts, so all of it
// is one unit.
func TestRealSchemaPgbenchForeignKeys(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgbench(t, src, "-i", "-q", "-s", "1", "--partitions=4", "-I", "dtgvpf")
	pgbench(t, dst, "-i", "-q", "-s", "1", "--partitions=4", "-I", "dtpf")
	pgtest.Exec(t, src, `INSERT INTO pgbench_history SELECT 1 + aid % 10, 1, aid, aid % 100, now() FROM pgbench_accounts WHERE aid <= 5000`)
	out := copyWholeSchema(t, src, dst, `^public\.pgbench_`)
	if !strings.Contains(out, `"public"."pgbench_branches" (+6 more)`) {
		t.Errorf("want the seven tables in one unit:\n%s", out)
	}
}

// pagila's public schema: 15 tables tied by foreign keys, payments
// partitioned by month (six of them with foreign keys of their own), an
// enum, domains, a tsvector kept by a trigger, serial ids: the schema as
// pagila publishes it (testdata/pagila/README.md), or the file named by
// LOCKSTEP_TEST_PAGILA (another version of it).
func TestRealSchemaPagila(t *testing.T) {
	t.Parallel()
	path := os.Getenv("LOCKSTEP_TEST_PAGILA")
	if path == "" {
		path = filepath.Join("testdata", "pagila", "pagila-schema.sql")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	schema := pagilaFor15(string(b))
	data, err := os.ReadFile(filepath.Join("testdata", "pagila", "data.sql"))
	if err != nil {
		t.Fatal(err)
	}
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, schema)
	pgtest.Exec(t, dst, schema)
	pgtest.Exec(t, src, string(data))
	out := copyWholeSchema(t, src, dst, `^public\.`)
	if !strings.Contains(out, "total: 50 units ok") {
		t.Errorf("want 50 units (one group of 20 tables, 49 payment partitions of their own):\n%s", out)
	}
	// The sequences caught up: new rows on the destination take their ids
	// from them without a duplicate key, in a plain table and in the
	// partitioned one.
	pgtest.Exec(t, dst, `INSERT INTO public.actor (first_name, last_name) VALUES ('NEW', 'ACTOR')`)
	pgtest.Exec(t, dst, `INSERT INTO public.payment (customer_id, staff_id, rental_id, amount, payment_date)
		SELECT customer_id, staff_id, rental_id, 1.99, rental_date + interval '2 hours' FROM public.rental WHERE rental_id = 1`)
}

// pagilaFor15 patches only what PostgreSQL 15 lacks.
func pagilaFor15(s string) string {
	s = strings.ReplaceAll(s, "uuidv7()", "gen_random_uuid()")
	s = strings.ReplaceAll(s, ") VIRTUAL", ") STORED")
	var keep []string
	for _, stmt := range strings.Split(s, ";\n") {
		if strings.Contains(stmt, "film_embedding") || strings.Contains(stmt, "EXTENSION vector") ||
			strings.Contains(stmt, "EXTENSION IF NOT EXISTS vector") {
			continue
		}
		keep = append(keep, stmt)
	}
	return strings.Join(keep, ";\n")
}
