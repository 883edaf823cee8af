package copy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"lockstep/copy"
	"lockstep/internal/pgtest"
	"lockstep/lock"
)

// groupSchema is two tables tied by a foreign key: one unit, whose LOCK
// names child before parent on each side.
const groupSchema = `
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, pid int REFERENCES parent);
INSERT INTO parent SELECT generate_series(1, 10);
INSERT INTO child SELECT g, g FROM generate_series(1, 10) g;`

// holdRowLock opens a transaction on dsn that writes to table (ROW
// EXCLUSIVE, as an application's writer) and returns its rollback.
func holdRowLock(t *testing.T, dsn, table string) func() {
	t.Helper()
	ctx := context.Background()
	tx, err := connect(t, dsn).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE "+table+" SET id = id WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	return func() { tx.Rollback(ctx) }
}

// A group's LOCK takes its tables one after another, and lock_timeout
// bounds each wait on its own: a first table granted after a wait, then
// a second that waits too, kept the first locked (its writers queued
// behind it) for the sum. The whole LOCK is bounded: with
// --max-write-block, a writer of the first table never waits longer than
// the cap from the LOCK.
func TestMaxWriteBlockBoundsAGroupsWholeLock(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, groupSchema)
	mustExec(t, dst, groupSchema)
	releaseChild := holdRowLock(t, src, "child")
	releaseParent := holdRowLock(t, src, "parent")
	defer releaseParent()
	o := opts(src, dst, "parent", "child")
	o.LockTimeout, o.MaxWriteBlock, o.AssumeMBps = 10*time.Second, 2*time.Second, 1e6
	done := start(testCtx(t), o)
	// lockstep queues on child; once that is granted, a writer of child
	// queues behind lockstep while it waits for parent.
	waitQueued(t, src, "child")
	time.Sleep(1200 * time.Millisecond)
	releaseChild()
	time.Sleep(100 * time.Millisecond)
	began := time.Now()
	if _, err := connect(t, src).Exec(context.Background(), "INSERT INTO child VALUES (100, NULL)"); err != nil {
		t.Fatal(err)
	}
	writer := time.Since(began)
	u := lockTimedOut(t, <-done, "source")
	t.Logf("writes blocked %s; a writer of child waited %s", u.WritesBlocked, writer)
	if u.WritesBlocked > 2500*time.Millisecond {
		t.Errorf("writes blocked %s with --max-write-block 2s", u.WritesBlocked)
	}
	if writer > 1300*time.Millisecond {
		t.Errorf("a writer of child waited %s, with --max-write-block 2s of which 1.3s had passed", writer)
	}
	assertUnlockedTable(t, src, "child")
	assertUnlockedTable(t, dst, "child")
}

// On the destination as well, a group's LOCK (ACCESS EXCLUSIVE: readers
// queue behind it too) is bounded as a whole by --lock-timeout.
func TestLockTimeoutBoundsAGroupsWholeDestinationLock(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, groupSchema)
	mustExec(t, dst, groupSchema)
	releaseChild := holdRowLock(t, dst, "child")
	releaseParent := holdRowLock(t, dst, "parent")
	defer releaseParent()
	o := opts(src, dst, "parent", "child")
	o.LockTimeout = 2 * time.Second
	done := start(testCtx(t), o)
	waitQueued(t, dst, "child")
	time.Sleep(1200 * time.Millisecond)
	releaseChild()
	time.Sleep(100 * time.Millisecond)
	began := time.Now()
	var n int64
	if err := connect(t, dst).QueryRow(context.Background(), "SELECT count(*) FROM child").Scan(&n); err != nil {
		t.Fatal(err)
	}
	reader := time.Since(began)
	u := lockTimedOut(t, <-done, "destination")
	t.Logf("destination lock wait %s; a reader of child waited %s", u.DestLockWait, reader)
	if u.DestLockWait > 2500*time.Millisecond {
		t.Errorf("destination lock wait %s with --lock-timeout 2s", u.DestLockWait)
	}
	if reader > 1300*time.Millisecond {
		t.Errorf("a reader of the destination's child waited %s, with --lock-timeout 2s of which 1.3s had passed", reader)
	}
	if got := count(t, dst, "child"); got != 10 {
		t.Errorf("destination child has %d rows, want its 10", got)
	}
	assertUnlockedTable(t, dst, "child")
}

// waitQueued waits until a session waits for a lock on table.
func waitQueued(t *testing.T, dsn, table string) {
	t.Helper()
	conn := connect(t, dsn)
	waitFor(t, "a lock request queued on "+table, func() bool {
		var n int
		err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
			WHERE c.relname = $1 AND NOT l.granted`, table).Scan(&n)
		return err == nil && n > 0
	})
}

// assertUnlockedTable fails unless table can be locked at once.
func assertUnlockedTable(t *testing.T, dsn, table string) {
	t.Helper()
	ctx := context.Background()
	tx, err := connect(t, dsn).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '2s'; LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Errorf("%s still locked: %v", table, err)
	}
}

// verify --lock waits for the source lock as a copy does: at most
// --max-write-block, however long --lock-timeout.
func TestVerifyLockMaxWriteBlockBoundsTheLockQueue(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, groupSchema)
	mustExec(t, dst, groupSchema)
	release := holdRowLock(t, src, "parent")
	defer release()
	o := opts(src, dst, "parent")
	o.VerifyOnly, o.Lock = true, true
	o.LockTimeout, o.MaxWriteBlock, o.AssumeMBps = 10*time.Second, 600*time.Millisecond, 1e6
	began := time.Now()
	u := check(t, o)
	elapsed := time.Since(began)
	var te *lock.TimeoutError
	if u.Status != copy.StatusFailed || !errors.As(u.Err, &te) || te.Side != "source" {
		t.Fatalf("status %s (%v), want a source lock timeout", u.Status, u.Err)
	}
	t.Logf("writes blocked %s; verify took %s", u.WritesBlocked, elapsed)
	if u.WritesBlocked > 900*time.Millisecond || elapsed > 4*time.Second {
		t.Errorf("writes blocked %s (verify took %s) with --max-write-block 600ms", u.WritesBlocked, elapsed)
	}
	release()
	assertUnlockedTable(t, src, "parent")
}

// verify --lock holds the source lock while it compares: --max-write-block
// bounds that hold as it bounds a copy's, from the LOCK.
func TestVerifyLockMaxWriteBlockBoundsTheHold(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, bigSchema+bigRows)
	mustExec(t, dst, bigSchema+bigRows)
	o := opts(src, dst, "big")
	o.VerifyOnly, o.Lock = true, true
	o.MaxWriteBlock, o.AssumeMBps = 100*time.Millisecond, 1e6 // admitted by the plan
	began := time.Now()
	u := check(t, o)
	t.Logf("status %s (%v); writes blocked %s, verify took %s", u.Status, u.Err, u.WritesBlocked, time.Since(began))
	if u.Status == copy.StatusOK {
		if u.Verify < 200*time.Millisecond {
			t.Skipf("the comparison took only %s: too fast to show the cap", u.Verify)
		}
		t.Fatalf("the comparison held the source lock %s with --max-write-block 100ms", u.SourceLockHeld)
	}
	if !errors.As(u.Err, new(*copy.WriteBlockError)) {
		t.Fatalf("error %v, want a *WriteBlockError", u.Err)
	}
	if u.WritesBlocked < 100*time.Millisecond || u.WritesBlocked > 600*time.Millisecond {
		t.Errorf("writes blocked %s, want about the 100ms of --max-write-block", u.WritesBlocked)
	}
	assertUnlockedTable(t, src, "big")
	assertUnlockedTable(t, dst, "big")
}

// lockTimedOut returns the one unit of r, which must have failed on a lock
// timeout on side.
func lockTimedOut(t *testing.T, r runResult, side string) copy.Result {
	t.Helper()
	if r.rep == nil {
		t.Fatalf("no report: %v", r.err)
	}
	u := r.rep.Units[0]
	var te *lock.TimeoutError
	if u.Status != copy.StatusFailed || !errors.As(u.Err, &te) || te.Side != side {
		t.Fatalf("status %s (%v), want a %s lock timeout", u.Status, u.Err, side)
	}
	return u
}
