package main

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/jackc/pgx/v5"

	"lockstep/internal/pgtest"
)

// verify --recheck-locked run repeatedly while the application dual-writes
// two equal sides: a difference seen without locks is only the writes in
// flight between the source and the destination, and the re-check under
// locks must find the sides equal every time; a real difference must still
// be a mismatch.
func TestVerifyRecheckLockedUnderDualWrite(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE TABLE acct (id int PRIMARY KEY, balance bigint NOT NULL);`
	data := `INSERT INTO acct SELECT g, g * 10 FROM generate_series(1, 2000) g;`
	pgtest.Exec(t, src, schema+data)
	pgtest.Exec(t, dst, schema+data)
	cols := []string{"id", "balance"}
	a := &app{clients: 4, op: func(ctx context.Context, s, d *pgx.Conn, c int, rnd *rand.Rand) error {
		return dualWrite(ctx, s, d, "acct", cols, `UPDATE acct SET balance = balance + 1 WHERE id = $1 RETURNING id, balance`,
			key(rnd, c, 4, 2000))
	}}
	stop := a.run(t, src, dst)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	// A destination write delayed more than the 50ms grace after its
	// source commit can still show as a (false) mismatch, which a loaded
	// machine may do now and then: at most 2 of 15 are tolerated. Without
	// the re-read, nearly every locked comparison under these writes differs.
	mismatches := 0
	for i := range 15 {
		code, out, errOut := lockstep(t, context.Background(), "verify", "--source", src, "--dest", dst, "--table", "acct",
			"--recheck-locked", "--sequences", "none", "--progress-interval", "0")
		switch code {
		case 0:
		case 4:
			mismatches++
			t.Logf("verify --recheck-locked #%d under dual writes: a mismatch\n%s", i, out)
		default:
			t.Fatalf("verify --recheck-locked #%d under dual writes: exit %d\n%s\n%s", i, code, out, errOut)
		}
	}
	if mismatches > 2 {
		t.Fatalf("%d of 15 locked comparisons under dual writes reported a mismatch of equal sides", mismatches)
	}
	// A real difference, on a row no client writes, stays a mismatch.
	pgtest.Exec(t, src, `INSERT INTO acct VALUES (5000, 0)`)
	for i := range 3 {
		code, out, errOut := lockstep(t, context.Background(), "verify", "--source", src, "--dest", dst, "--table", "acct",
			"--recheck-locked", "--sequences", "none", "--progress-interval", "0")
		if code != 4 {
			t.Fatalf("verify --recheck-locked #%d of a real difference under dual writes: exit %d, want 4\n%s\n%s", i, code, out, errOut)
		}
	}
	stopped = true
	if err := stop(); err != nil {
		t.Fatalf("application: %v", err)
	}
	t.Logf("%d application writes", a.writes.Load())
}
