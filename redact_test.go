package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lockstep/internal/pgtest"
)

// Another session's query text, reported as the blocker of a lock, may
// hold passwords (ALTER ROLE ... PASSWORD, a dblink connection string):
// neither the error line, the --report file nor the --verbose log shows
// them.
func TestBlockerQueryRedacted(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	role := fmt.Sprintf("blk_%d", time.Now().UnixNano())
	pgtest.Exec(t, src, "CREATE TABLE t (id int); INSERT INTO t VALUES (1); CREATE ROLE "+role)
	pgtest.Exec(t, dst, "CREATE TABLE t (id int)")
	t.Cleanup(func() { pgtest.Exec(t, src, "DROP ROLE IF EXISTS "+role) })
	const rolePW, linkPW = "Blk-s3cret-pw", "Dbl1nk-s3cret"

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	blocker := pgtest.Connect(t, src)
	if _, err := blocker.Exec(ctx, "BEGIN; LOCK TABLE t IN SHARE ROW EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	// The session's last query, which pg_stat_activity shows.
	if _, err := blocker.Exec(ctx, "ALTER ROLE "+role+" PASSWORD '"+rolePW+"'; SELECT 'dbname=app password="+linkPW+"' AS conn"); err != nil {
		t.Fatal(err)
	}
	defer blocker.Exec(ctx, "ROLLBACK")

	report := filepath.Join(t.TempDir(), "report.json")
	code, out, errOut := lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--table", "t",
		"--lock-timeout", "2s", "--lock-retries", "1", "--verbose", "--report", report)
	rep, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"stdout": out, "stderr": errOut, "report": string(rep)} {
		for _, pw := range []string{rolePW, linkPW} {
			if strings.Contains(text, pw) {
				t.Errorf("%s shows the password %s:\n%s", name, pw, text)
			}
		}
	}
	if code != 1 || !strings.Contains(out, "ALTER ROLE "+role+" PASSWORD 'xxxxx'; SELECT 'dbname=app password=xxxxx") ||
		!strings.Contains(errOut, "lock not granted; retrying") || !strings.Contains(string(rep), "PASSWORD 'xxxxx'") {
		t.Fatalf("exit %d, want 1 naming the blocker and its redacted query\nstdout: %s\nstderr: %s\nreport: %s", code, out, errOut, rep)
	}
}
