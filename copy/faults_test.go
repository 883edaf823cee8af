package copy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"lockstep/copy"
	"lockstep/internal/pgtest"
	"lockstep/ledger"
	"lockstep/lock"
	"lockstep/verify"
)

// bigSchema is a table large enough (about 20 MB as COPY text) that a
// copy is still streaming when a fault is injected.
const bigSchema = `CREATE TABLE big (id int PRIMARY KEY, filler text);`

const bigRows = `INSERT INTO big SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, 100000) g;`

// slowTrigger makes the destination's COPY FROM take about a second, so a
// test can act while the unit holds its locks.
const slowTrigger = `
CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.id % 5000 = 0 THEN PERFORM pg_sleep(0.05); END IF; RETURN NEW; END $$;
CREATE TRIGGER slow BEFORE INSERT ON big FOR EACH ROW EXECUTE FUNCTION slow();`

// preexisting rows on the destination, which every failed unit must leave
// exactly as they were.
const preexisting = `INSERT INTO big VALUES (-1, 'before'), (-2, 'the copy');`

type fixture struct {
	src, dst  string
	srcBefore string
	dstBefore string
}

func newFixture(t *testing.T, dstExtra string) *fixture {
	t.Helper()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, bigSchema+bigRows)
	mustExec(t, dst, bigSchema+preexisting+dstExtra)
	return &fixture{src: src, dst: dst, srcBefore: digest(t, src), dstBefore: digest(t, dst)}
}

func digest(t *testing.T, dsn string) string {
	t.Helper()
	var s string
	q := "SELECT count(*) || ':' || md5(coalesce(string_agg(b::text, ',' ORDER BY id), '')) FROM big b"
	if err := connect(t, dsn).QueryRow(context.Background(), q).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// assertUntouched checks the protocol's promise after a failed unit: the
// destination exactly as before, the source unchanged, and neither table
// locked by anyone.
func (f *fixture) assertUntouched(t *testing.T) {
	t.Helper()
	if got := digest(t, f.dst); got != f.dstBefore {
		t.Errorf("destination changed: %s, was %s", got, f.dstBefore)
	}
	if got := digest(t, f.src); got != f.srcBefore {
		t.Errorf("source changed: %s, was %s", got, f.srcBefore)
	}
	assertUnlocked(t, f.src, "source")
	assertUnlocked(t, f.dst, "destination")
}

func assertUnlocked(t *testing.T, dsn, side string) {
	t.Helper()
	conn := connect(t, dsn)
	ctx := context.Background()
	// A terminated backend may take a moment to go away.
	deadline := time.Now().Add(5 * time.Second)
	for {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, "SET LOCAL lock_timeout = '200ms'; LOCK TABLE big IN ACCESS EXCLUSIVE MODE")
		tx.Rollback(ctx)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: big is still locked: %v", side, err)
		}
	}
}

// waitFor polls cond until it holds or fails the test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockstepBackend returns the pid of lockstep's backend running a query
// like pattern, or 0.
func lockstepBackend(t *testing.T, dsn, pattern string) int {
	t.Helper()
	var pid int
	err := connect(t, dsn).QueryRow(context.Background(), `
		SELECT coalesce(max(pid), 0) FROM pg_stat_activity
		WHERE application_name = 'lockstep' AND state = 'active' AND query LIKE $1 AND datname = current_database()`, pattern).Scan(&pid)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// copyingRows reports whether the destination's COPY has loaded rows yet.
func copyingRows(t *testing.T, dst string) bool {
	var n int64
	connect(t, dst).QueryRow(context.Background(),
		`SELECT coalesce(max(tuples_processed), 0) FROM pg_stat_progress_copy WHERE command = 'COPY FROM' AND datname = current_database()`).Scan(&n)
	return n > 0
}

type runResult struct {
	rep *copy.Report
	err error
	at  time.Time
}

func start(ctx context.Context, o copy.Options) chan runResult {
	done := make(chan runResult, 1)
	go func() {
		rep, err := copy.Run(ctx, o)
		done <- runResult{rep, err, time.Now()}
	}()
	return done
}

func terminate(t *testing.T, dsn string, pid int) {
	t.Helper()
	mustExec(t, dsn, "SELECT pg_terminate_backend($1)", pid)
}

func oneFailed(t *testing.T, r runResult, status copy.Status, mention string) copy.Result {
	t.Helper()
	if r.rep == nil {
		t.Fatalf("no report: %v", r.err)
	}
	u := r.rep.Units[0]
	if u.Status != status {
		t.Fatalf("status = %s, want %s (error: %v)", u.Status, status, u.Err)
	}
	if r.err == nil || !strings.Contains(r.err.Error(), mention) {
		t.Fatalf("error %q does not mention %q", r.err, mention)
	}
	return u
}

func TestDestinationBackendTerminatedMidCopy(t *testing.T) {
	t.Parallel()
	f := newFixture(t, slowTrigger)
	done := start(testCtx(t), opts(f.src, f.dst, "big"))
	var pid int
	waitFor(t, "destination COPY", func() bool {
		pid = lockstepBackend(t, f.dst, "COPY%FROM STDIN%")
		return pid != 0 && copyingRows(t, f.dst)
	})
	terminate(t, f.dst, pid)
	oneFailed(t, <-done, copy.StatusFailed, "destination")
	f.assertUntouched(t)
}

func TestSourceBackendTerminatedMidCopy(t *testing.T) {
	t.Parallel()
	f := newFixture(t, slowTrigger)
	done := start(testCtx(t), opts(f.src, f.dst, "big"))
	var pid int
	waitFor(t, "source COPY", func() bool {
		pid = lockstepBackend(t, f.src, "COPY%TO STDOUT%")
		return pid != 0 && copyingRows(t, f.dst)
	})
	terminate(t, f.src, pid)
	oneFailed(t, <-done, copy.StatusFailed, "source")
	f.assertUntouched(t)
}

func TestMismatchForcedByDestinationTrigger(t *testing.T) {
	t.Parallel()
	f := newFixture(t, `
CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.id = 500 THEN NEW.filler := NEW.filler || '!'; END IF; RETURN NEW; END $$;
CREATE TRIGGER tamper BEFORE INSERT ON big FOR EACH ROW EXECUTE FUNCTION tamper();`)
	rep, err := copy.Run(testCtx(t), opts(f.src, f.dst, "big"))
	u := oneFailed(t, runResult{rep, err, time.Now()}, copy.StatusMismatch, "checksums differ")
	var mm *verify.MismatchError
	if !errors.As(u.Err, &mm) || mm.Source.Rows != mm.Dest.Rows || mm.Source.Rows != 100000 {
		t.Fatalf("want a checksum mismatch over 100000 rows, got %v", u.Err)
	}
	f.assertUntouched(t)
}

func TestMismatchOfCountsWhenTriggerDropsRow(t *testing.T) {
	t.Parallel()
	f := newFixture(t, `
CREATE FUNCTION drop1() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.id = 77 THEN RETURN NULL; END IF; RETURN NEW; END $$;
CREATE TRIGGER drop1 BEFORE INSERT ON big FOR EACH ROW EXECUTE FUNCTION drop1();`)
	for _, mode := range []verify.Mode{verify.Checksum, verify.Count, verify.None} {
		o := opts(f.src, f.dst, "big")
		o.Verify = mode
		rep, err := copy.Run(testCtx(t), o)
		oneFailed(t, runResult{rep, err, time.Now()}, copy.StatusMismatch, "source has 100000 rows, destination 99999")
		f.assertUntouched(t)
	}
}

// A conflicting lock held elsewhere: the attempt waits at most the lock
// timeout, names the blocker, and leaves nothing locked or changed.
func TestSourceLockTimeoutNamesBlocker(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	blocker := connect(t, f.src+"&application_name=nightly-batch")
	ctx := context.Background()
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "UPDATE big SET filler = filler WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	o := opts(f.src, f.dst, "big")
	o.LockTimeout = 400 * time.Millisecond
	began := time.Now()
	rep, err := copy.Run(testCtx(t), o)
	elapsed := time.Since(began)
	u := oneFailed(t, runResult{rep, err, time.Now()}, copy.StatusFailed, "nightly-batch")
	var te *lock.TimeoutError
	if !errors.As(u.Err, &te) || te.Side != "source" || len(te.Blockers) != 1 || te.Blockers[0].PID != int(blocker.PgConn().PID()) {
		t.Fatalf("want a source lock timeout naming pid %d, got %#v", blocker.PgConn().PID(), u.Err)
	}
	if !strings.Contains(err.Error(), "UPDATE big") || !strings.Contains(err.Error(), "idle in transaction") {
		t.Errorf("blocker report lacks its query or state: %v", err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("lock timeout of 400ms took %s", elapsed)
	}
	tx.Rollback(ctx)
	f.assertUntouched(t)
}

// Waiting on the destination lock never blocks the source's writers.
func TestDestinationLockTimeoutLeavesSourceWritable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	reader := connect(t, f.dst)
	ctx := context.Background()
	tx, err := reader.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT count(*) FROM big"); err != nil {
		t.Fatal(err)
	}
	o := opts(f.src, f.dst, "big")
	o.LockTimeout = 1500 * time.Millisecond
	done := start(testCtx(t), o)
	waitFor(t, "destination lock wait", func() bool { return lockstepBackend(t, f.dst, "%LOCK TABLE%") != 0 })
	writer := connect(t, f.src)
	wtx, _ := writer.Begin(ctx)
	if _, err := wtx.Exec(ctx, "SET LOCAL lock_timeout = '300ms'; INSERT INTO big VALUES (0, 'written meanwhile')"); err != nil {
		t.Fatalf("source write blocked while lockstep waited on the destination: %v", err)
	}
	wtx.Rollback(ctx)
	r := <-done
	u := oneFailed(t, r, copy.StatusFailed, "destination")
	var te *lock.TimeoutError
	if !errors.As(u.Err, &te) || te.Side != "destination" || len(te.Blockers) == 0 || te.Blockers[0].PID != int(reader.PgConn().PID()) {
		t.Fatalf("want a destination lock timeout naming pid %d, got %v", reader.PgConn().PID(), u.Err)
	}
	tx.Rollback(ctx)
	f.assertUntouched(t)
}

// copyBlockedOnce copies big with a session on blocked (a side's DSN)
// holding a lock on big in mode, released once lockstep has given up a
// first attempt (--lock-timeout 300ms) and retries.
func copyBlockedOnce(t *testing.T, f *fixture, blocked, mode string) *copy.Report {
	t.Helper()
	ctx := context.Background()
	tx, _ := connect(t, blocked).Begin(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE big IN "+mode+" MODE"); err != nil {
		t.Fatal(err)
	}
	o := opts(f.src, f.dst, "big")
	o.LockTimeout, o.LockRetries, o.RetryBackoff = 300*time.Millisecond, 5, 100*time.Millisecond
	var once sync.Once
	o.Logger = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) {
		if bytes.Contains(p, []byte("retrying")) {
			once.Do(func() { tx.Rollback(ctx) })
		}
	}), nil))
	return mustCopy(t, o)
}

// A lock that frees up during the retries is taken on a later attempt.
func TestLockRetrySucceeds(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	rep := copyBlockedOnce(t, f, f.src, "ROW EXCLUSIVE")
	if rep.Units[0].Attempts < 2 {
		t.Errorf("attempts = %d, want a retry", rep.Units[0].Attempts)
	}
	if digest(t, f.dst) != f.srcBefore {
		t.Error("destination differs from source after the retried copy")
	}
}

// The destination lock's queue time is summed over a unit's attempts, as
// the source's is: an attempt that timed out queued for --lock-timeout.
func TestDestLockWaitSummedOverAttempts(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	u := copyBlockedOnce(t, f, f.dst, "ACCESS SHARE").Units[0]
	if u.Attempts < 2 {
		t.Fatalf("attempts = %d, want a retry", u.Attempts)
	}
	if u.DestLockWait < 250*time.Millisecond {
		t.Errorf("destination lock wait %s, want at least the ~300ms the first attempt queued", u.DestLockWait)
	}
}

type writerFunc func(p []byte)

func (w writerFunc) Write(p []byte) (int, error) { w(p); return len(p), nil }

// While a unit runs, writers to its source table wait; right after the
// source lock is released they proceed, and their rows are not part of the
// copy. Reads go on throughout.
func TestConcurrentWriterBlockedThenProceeds(t *testing.T) {
	t.Parallel()
	// The destination's COMMIT takes a second: the source lock must hold
	// through it, released only once the destination has committed.
	f := newFixture(t, slowTrigger+`
CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON big DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (NEW.id = 1) EXECUTE FUNCTION slow_commit();`)
	done := start(testCtx(t), opts(f.src, f.dst, "big"))
	waitFor(t, "source lock", func() bool { return copyingRows(t, f.dst) })

	reader := connect(t, f.src)
	var n int64
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := reader.QueryRow(rctx, "SELECT count(*) FROM big").Scan(&n); err != nil {
		t.Fatalf("plain read blocked during the copy: %v", err)
	}

	writer := connect(t, f.src)
	wrote := make(chan time.Time, 1)
	go func() {
		_, err := writer.Exec(context.Background(), "INSERT INTO big VALUES (100001, 'late')")
		if err != nil {
			t.Errorf("insert: %v", err)
		}
		wrote <- time.Now()
	}()
	waitFor(t, "writer to queue on the lock", func() bool {
		var waiting bool
		connect(t, f.src).QueryRow(context.Background(),
			"SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted)", writer.PgConn().PID()).Scan(&waiting)
		return waiting
	})
	r := <-done
	if r.err != nil {
		t.Fatalf("copy: %v", r.err)
	}
	at := <-wrote
	if at.Before(r.at.Add(-300 * time.Millisecond)) {
		t.Fatalf("insert finished %s before the copy ended: the source lock was released before the destination committed", r.at.Sub(at))
	}
	if delay := at.Sub(r.at); delay > 2*time.Second {
		t.Errorf("insert finished %s after the copy; should proceed at once", delay)
	}
	if got := count(t, f.dst, "big"); got != 100000 {
		t.Errorf("destination has %d rows, want the 100000 of the snapshot", got)
	}
}

// The source snapshot is taken after the lock: a write committed while
// lockstep waited for the lock is in the copy.
func TestSnapshotTakenAfterSourceLock(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	writer := connect(t, f.src)
	ctx := context.Background()
	tx, _ := writer.Begin(ctx)
	if _, err := tx.Exec(ctx, "INSERT INTO big VALUES (0, 'committed while lockstep waits')"); err != nil {
		t.Fatal(err)
	}
	o := opts(f.src, f.dst, "big")
	o.LockTimeout = 10 * time.Second
	done := start(testCtx(t), o)
	waitFor(t, "source lock wait", func() bool { return lockstepBackend(t, f.src, "%LOCK TABLE%") != 0 })
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("copy: %v", r.err)
	}
	if got := count(t, f.dst, "big WHERE id = 0"); got != 1 {
		t.Fatal("the write committed before the lock was granted is missing from the copy")
	}
}

// Cancellation (SIGINT in the CLI) rolls back the unit in flight.
func TestInterruptRollsBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, slowTrigger)
	ctx, cancel := context.WithCancel(testCtx(t))
	done := start(ctx, opts(f.src, f.dst, "big"))
	waitFor(t, "destination COPY", func() bool { return copyingRows(t, f.dst) })
	cancel()
	r := <-done
	oneFailed(t, r, copy.StatusInterrupted, "interrupted")
	if !errors.Is(r.err, copy.ErrInterrupted) {
		t.Fatalf("error %v is not ErrInterrupted", r.err)
	}
	f.assertUntouched(t)
}

// A destination backend that dies in the COMMIT's round trip (here while
// it inserts the unit's ledger row, which travels with the COMMIT) leaves
// the outcome unknown; lockstep re-checks from a new connection instead of
// assuming.
func TestUncertainCommitIsRechecked(t *testing.T) {
	t.Parallel()
	f := newFixture(t, `CREATE TABLE seed (id int);
CREATE FUNCTION die() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); RETURN NULL; END $$;`)
	mustExec(t, f.src, `CREATE TABLE seed (id int)`)
	mustCopy(t, withLedger(opts(f.src, f.dst, "seed"), ledger.Config{})) // creates the ledger
	mustExec(t, f.dst, `CREATE TRIGGER die AFTER INSERT ON lockstep.units
  FOR EACH ROW WHEN (NEW.outcome = 'ok') EXECUTE FUNCTION die()`)
	rep, err := copy.Run(testCtx(t), withLedger(opts(f.src, f.dst, "big"), ledger.Config{}))
	u := oneFailed(t, runResult{rep, err, time.Now()}, copy.StatusFailed, "aborted, the destination is as before")
	if !u.Uncertain {
		t.Error("the unknown commit was not flagged for re-check")
	}
	f.assertUntouched(t)
}

func TestManyUnitsOnWorkers(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	var schema, data strings.Builder
	var names []string
	for i := range 6 {
		fmt.Fprintf(&schema, "CREATE TABLE t%d (id int PRIMARY KEY, v text);", i)
		fmt.Fprintf(&data, "INSERT INTO t%d SELECT g, 'v' || g FROM generate_series(1, %d) g;", i, 100*(i+1))
		names = append(names, fmt.Sprintf("t%d", i))
	}
	mustExec(t, src, schema.String()+data.String())
	mustExec(t, dst, schema.String())
	o := opts(src, dst, append(names, "t0")...)
	o.Jobs = 3
	rep := mustCopy(t, o)
	if len(rep.Units) != 6 {
		t.Fatalf("units = %d, want 6 (t0 selected twice)", len(rep.Units))
	}
	for i, n := range names {
		if got := count(t, dst, n); got != int64(100*(i+1)) {
			t.Errorf("%s: %d rows", n, got)
		}
	}
}

// The destination server goes down mid-COPY: the unit fails naming the
// destination, the source is unlocked and unchanged, and once the server is
// back its table is exactly as before.
func TestDestinationServerStoppedMidCopy(t *testing.T) {
	t.Parallel()
	src, _ := pgtest.Get(t).NewDBs(t)
	server := pgtest.NewServer(t)
	dst := server.DSN("postgres")
	mustExec(t, src, bigSchema+bigRows)
	mustExec(t, dst, bigSchema+preexisting+slowTrigger)
	f := &fixture{src: src, dst: dst, srcBefore: digest(t, src), dstBefore: digest(t, dst)}
	done := start(testCtx(t), opts(src, dst, "big"))
	waitFor(t, "destination COPY", func() bool { return copyingRows(t, dst) })
	if err := server.Stop(); err != nil {
		t.Fatal(err)
	}
	oneFailed(t, <-done, copy.StatusFailed, "destination")
	assertUnlocked(t, src, "source")
	if got := digest(t, src); got != f.srcBefore {
		t.Errorf("source changed: %s", got)
	}
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	if got := digest(t, dst); got != f.dstBefore {
		t.Errorf("destination after restart: %s, was %s", got, f.dstBefore)
	}
}

// A queued EXCLUSIVE request already blocks every later writer: the time
// lockstep waits for the source lock counts as writes blocked, apart from
// the time it holds it.
func TestWritesBlockedCountsTheLockQueue(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	blocker := connect(t, f.src)
	ctx := context.Background()
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "UPDATE big SET filler = filler WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	o := opts(f.src, f.dst, "big")
	o.LockTimeout = 10 * time.Second
	done := start(testCtx(t), o)
	waitFor(t, "source lock wait", func() bool { return lockstepBackend(t, f.src, "%LOCK TABLE%") != 0 })
	time.Sleep(800 * time.Millisecond)
	tx.Rollback(ctx)
	r := <-done
	if r.err != nil {
		t.Fatalf("copy: %v", r.err)
	}
	u := r.rep.Units[0]
	if u.SourceLockWait < 700*time.Millisecond {
		t.Fatalf("source lock wait %s, want the ~800ms spent queued", u.SourceLockWait)
	}
	if u.SourceLockHeld <= 0 || u.WritesBlocked < u.SourceLockWait+u.SourceLockHeld-time.Millisecond {
		t.Fatalf("writes blocked %s, want queue %s + held %s", u.WritesBlocked, u.SourceLockWait, u.SourceLockHeld)
	}
	if r.rep.BlockedMax != u.WritesBlocked {
		t.Errorf("report's max writes blocked %s, unit's %s", r.rep.BlockedMax, u.WritesBlocked)
	}
}

// --max-write-block counts the queue too: a source lock that would queue
// longer than the cap is abandoned at the cap, however long --lock-timeout.
func TestMaxWriteBlockBoundsTheLockQueue(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	blocker := connect(t, f.src)
	ctx := context.Background()
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "UPDATE big SET filler = filler WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	o := opts(f.src, f.dst, "big")
	o.LockTimeout, o.MaxWriteBlock, o.AssumeMBps = 10*time.Second, 600*time.Millisecond, 1e6
	began := time.Now()
	rep, err := copy.Run(testCtx(t), o)
	elapsed := time.Since(began)
	u := oneFailed(t, runResult{rep, err, time.Now()}, copy.StatusFailed, "not granted within 600ms")
	var te *lock.TimeoutError
	if !errors.As(u.Err, &te) || te.Side != "source" {
		t.Fatalf("want a source lock timeout, got %v", u.Err)
	}
	if elapsed > 4*time.Second {
		t.Errorf("a 600ms cap on writes blocked let lockstep queue for the lock %s", elapsed)
	}
	if u.WritesBlocked < 500*time.Millisecond || u.WritesBlocked > 2*time.Second {
		t.Errorf("writes blocked %s, want about the 600ms queued", u.WritesBlocked)
	}
	tx.Rollback(ctx)
	f.assertUntouched(t)
}

// The source server goes down mid-COPY: the unit fails naming the source,
// the destination is rolled back and unlocked, the next unit fails at once
// instead of hanging, and once the server is back its data is unchanged.
func TestSourceServerStoppedMidRun(t *testing.T) {
	t.Parallel()
	server := pgtest.NewServer(t)
	src := server.DSN("postgres")
	dst := pgtest.Get(t).Dest.NewDB(t)
	mustExec(t, src, bigSchema+bigRows+`CREATE TABLE later (id int); INSERT INTO later VALUES (1);`)
	mustExec(t, dst, bigSchema+preexisting+slowTrigger+`CREATE TABLE later (id int);`)
	f := &fixture{src: src, dst: dst, srcBefore: digest(t, src), dstBefore: digest(t, dst)}
	o := opts(src, dst, "big", "later")
	o.Order = "name"
	done := start(testCtx(t), o)
	waitFor(t, "destination COPY", func() bool { return copyingRows(t, dst) })
	if err := server.Stop(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.rep == nil {
		t.Fatalf("no report: %v", r.err)
	}
	for _, u := range r.rep.Units {
		t.Logf("%s: %s", u.Unit, u.Error)
		if u.Status != copy.StatusFailed || !strings.Contains(u.Error, "source: ") {
			t.Errorf("unit %s: %s: %v; want failed naming the source", u.Unit, u.Status, u.Err)
		}
	}
	assertUnlocked(t, dst, "destination")
	if got := digest(t, dst); got != f.dstBefore {
		t.Errorf("destination changed: %s, was %s", got, f.dstBefore)
	}
	if got := count(t, dst, "later"); got != 0 {
		t.Errorf("destination later has %d rows", got)
	}
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	if got := digest(t, src); got != f.srcBefore {
		t.Errorf("source after restart: %s, was %s", got, f.srcBefore)
	}
}

// The destination's disk fills up mid-COPY: the unit fails naming the
// destination and the cause, the destination table is exactly as before,
// the source unlocked, and the run goes on with its other units.
func TestDestinationDiskFullMidCopy(t *testing.T) {
	t.Parallel()
	env := pgtest.Get(t)
	space := pgtest.SmallTablespace(t, env.Dest, 6<<20) // big is about 20 MB
	f := newFixture(t, "")
	mustExec(t, f.dst, "ALTER TABLE big SET TABLESPACE "+space)
	mustExec(t, f.src, `CREATE TABLE after (id int); INSERT INTO after SELECT generate_series(1, 100);`)
	mustExec(t, f.dst, `CREATE TABLE after (id int);`)
	o := opts(f.src, f.dst, "big", "after")
	o.Order = "name"
	rep, err := copy.Run(testCtx(t), o)
	if rep == nil {
		t.Fatalf("no report: %v", err)
	}
	big, after := rep.Units[1], rep.Units[0]
	if big.Unit != `"public"."big"` {
		big, after = after, big
	}
	t.Logf("big: %s", big.Error)
	if big.Status != copy.StatusFailed || !strings.Contains(big.Error, "destination") || !strings.Contains(big.Error, "No space left on device") {
		t.Fatalf("big: %s: %s; want failed, naming the destination and the full disk", big.Status, big.Error)
	}
	if after.Status != copy.StatusOK || count(t, f.dst, "after") != 100 {
		t.Fatalf("the run did not go on after the full disk: after: %s %s", after.Status, after.Error)
	}
	f.assertUntouched(t)
	// The failed unit's files are gone with its transaction: the space is free again.
	mustExec(t, f.dst, "INSERT INTO big SELECT -g, repeat('y', 1000) FROM generate_series(3, 3000) g")
}

// The source session dies after the stream, before the commit point: its
// lock is gone and writers may already have changed the source, so the
// destination must not commit the copy. The default stall timeout keeps
// the heartbeat (every 5s) out of this 1.5s window: the round trip right
// before the commit must catch it.
func TestSourceLostBeforeCommit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, slowTail)
	o := opts(f.src, f.dst, "big")
	o.StallTimeout = copy.DefaultStallTimeout
	done := start(testCtx(t), o)
	var pid int
	// The unit's COPY of big, not the plan's self-test, which also idles in
	// a transaction after a COPY.
	waitFor(t, "the source to idle after its COPY", func() bool {
		err := connect(t, f.src).QueryRow(context.Background(), `
			SELECT coalesce(max(pid), 0) FROM pg_stat_activity
			WHERE application_name = 'lockstep' AND state = 'idle in transaction'
			  AND query LIKE 'COPY "public"."big"%' AND datname = current_database()`).Scan(&pid)
		return err == nil && pid != 0
	})
	terminate(t, f.src, pid)
	// The round trip before the commit catches it; on a loaded machine the
	// read-back may outlast a heartbeat, which catches it first. Either way
	// the unit fails and the destination rolls back.
	u := oneFailed(t, <-done, copy.StatusFailed, "source")
	if msg := u.Err.Error(); !strings.Contains(msg, "writes resumed, so the destination was rolled back") &&
		!strings.Contains(msg, "source: session lost") {
		t.Fatalf("error %q: want the source's loss found before the commit", msg)
	}
	t.Logf("error: %v", u.Err)
	f.assertUntouched(t)
}

// A deferred trigger on the destination fires at the end of the
// transaction, after the read-back unless lockstep fires it first: one
// that changes the copied rows would commit a table the source does not
// hold, reported ok. The verification must see what its triggers did.
func TestDeferredTriggerChangingRowsIsCaught(t *testing.T) {
	t.Parallel()
	f := newFixture(t, `
CREATE FUNCTION late() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE big SET filler = 'changed by a deferred trigger' WHERE id = NEW.id; RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER late AFTER INSERT ON big DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (NEW.id = 500) EXECUTE FUNCTION late();`)
	rep, err := copy.Run(testCtx(t), opts(f.src, f.dst, "big"))
	oneFailed(t, runResult{rep, err, time.Now()}, copy.StatusMismatch, "checksums differ")
	f.assertUntouched(t)
}
