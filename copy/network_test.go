package copy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"lockstep/copy"
	"lockstep/internal/pgtest"
)

// testStall is the stall timeout of the network tests: short, so that the
// bounds they assert (a lock outlives a silent lockstep by at most four
// times this) keep them quick.
const testStall = 2 * time.Second

// netFixture runs lockstep through a proxy to each server; the fixture's
// own DSNs stay direct.
type netFixture struct {
	*fixture
	sp, dp *pgtest.Proxy
}

func newNetFixture(t *testing.T, dstExtra string) *netFixture {
	t.Helper()
	f := newFixture(t, dstExtra)
	return &netFixture{fixture: f, sp: pgtest.NewProxy(t, f.src), dp: pgtest.NewProxy(t, f.dst)}
}

func (n *netFixture) opts() copy.Options {
	o := opts(n.sp.DSN(), n.dp.DSN(), "big")
	o.StallTimeout = testStall
	return o
}

// unlockedWithin waits until big can be locked on dsn and fails the test
// if that happened later than limit after since.
func unlockedWithin(t *testing.T, dsn, side string, since time.Time, limit time.Duration) {
	t.Helper()
	conn := connect(t, dsn)
	ctx := context.Background()
	for {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, "SET LOCAL lock_timeout = '100ms'; LOCK TABLE big IN ACCESS EXCLUSIVE MODE")
		tx.Rollback(ctx)
		took := time.Since(since)
		if err == nil {
			t.Logf("%s: unlocked %s after the fault", side, took.Round(10*time.Millisecond))
			return
		}
		if took > limit {
			t.Fatalf("%s: big still locked %s after the fault (bound %s): %v", side, took.Round(10*time.Millisecond), limit, err)
		}
	}
}

// stallFailed checks that the unit failed on a stall of side.
func stallFailed(t *testing.T, r runResult, side string) {
	t.Helper()
	u := oneFailed(t, r, copy.StatusFailed, side)
	var se *copy.StallError
	if !errors.As(u.Err, &se) || se.Side != side {
		t.Fatalf("want a stall of the %s, got %v", side, u.Err)
	}
	t.Logf("error: %v", u.Err)
}

// within waits for what on ch, failing the test after d.
func within[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("no %s within %s", what, d)
		panic("unreachable")
	}
}

// slowTail makes the destination finish its COPY 1.5s after the last row,
// as foreign-key checks would, while the source idles under its lock.
const slowTail = `
CREATE FUNCTION slow_tail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END $$;
CREATE TRIGGER slow_tail AFTER INSERT ON big FOR EACH STATEMENT EXECUTE FUNCTION slow_tail();`

// The destination finishes its COPY slowly (a statement trigger, as
// foreign-key checks would) while the source idles under its lock; the
// source's traffic is dropped at the first heartbeat. lockstep notices by
// itself, rolls the destination back at once, and the source server ends
// the silent session by its idle-in-transaction timeout.
func TestSourceStalledWhileIdle(t *testing.T) {
	t.Parallel()
	f := newNetFixture(t, slowTail)
	stalled := f.sp.StallAt(pgtest.IsQuery("-- ping"))
	done := start(testCtx(t), f.opts())
	select {
	case <-stalled:
	case r := <-done:
		t.Fatalf("the unit ended (%v) with no round trip on the idle source", r.err)
	}
	stalledAt := time.Now()
	r := within(t, done, 2*testStall+5*time.Second, "end of the unit")
	stallFailed(t, r, "source")
	unlockedWithin(t, f.dst, "destination", r.at, time.Second)
	unlockedWithin(t, f.src, "source", stalledAt, 4*testStall+time.Second)
	f.assertUntouched(t)
}

// The destination's traffic is dropped while its transaction idles, locked,
// waiting for the source lock: its heartbeat notices, the source lock
// request is withdrawn at once, and the destination server ends the silent
// session by its idle-in-transaction timeout.
func TestDestinationStalledWhileIdle(t *testing.T) {
	t.Parallel()
	f := newNetFixture(t, "")
	blocker := connect(t, f.src)
	ctx := context.Background()
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE big IN ROW EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	o := f.opts()
	o.LockTimeout = 30 * time.Second
	done := start(testCtx(t), o)
	waitFor(t, "source lock wait", func() bool { return lockstepBackend(t, f.src, "%LOCK TABLE%") != 0 })
	f.dp.Stall()
	stalledAt := time.Now()
	r := within(t, done, testStall+5*time.Second, "end of the unit")
	stallFailed(t, r, "destination")
	waitFor(t, "the source lock request to go", func() bool { return lockstepBackend(t, f.src, "%LOCK TABLE%") == 0 })
	if d := time.Since(r.at); d > 3*time.Second {
		t.Errorf("the source lock request outlived the unit by %s", d)
	}
	tx.Rollback(ctx)
	unlockedWithin(t, f.dst, "destination", stalledAt, 4*testStall+time.Second)
	f.assertUntouched(t)
}

// The source's traffic is dropped mid-COPY: the stream stops moving, and
// lockstep gives up after the stall timeout, rolling the destination back
// at once. The source backend, blocked sending into a zero window, is freed
// by tcp_user_timeout.
func TestSourceStalledMidCopy(t *testing.T) {
	t.Parallel()
	f := newNetFixture(t, slowTrigger)
	done := start(testCtx(t), f.opts())
	waitFor(t, "destination COPY", func() bool { return copyingRows(t, f.dst) })
	f.sp.Stall()
	stalledAt := time.Now()
	r := within(t, done, testStall+5*time.Second, "end of the unit")
	stallFailed(t, r, "source")
	unlockedWithin(t, f.dst, "destination", r.at, time.Second)
	unlockedWithin(t, f.src, "source", stalledAt, testStall+2*time.Second)
	f.assertUntouched(t)
}

// The destination's traffic is dropped mid-COPY: lockstep's writes block,
// it gives up after the stall timeout and releases the source at once. The
// destination backend waits to receive; only keepalives failing could free
// it, and a proxy's kernel answers them, so here it goes when the proxy
// resumes (TestPartitionMidCopy shows the real case).
func TestDestinationStalledMidCopy(t *testing.T) {
	t.Parallel()
	f := newNetFixture(t, slowTrigger)
	done := start(testCtx(t), f.opts())
	waitFor(t, "destination COPY", func() bool { return copyingRows(t, f.dst) })
	f.dp.Stall()
	r := within(t, done, testStall+5*time.Second, "end of the unit")
	stallFailed(t, r, "destination")
	unlockedWithin(t, f.src, "source", r.at, time.Second)
	f.dp.Resume()
	f.assertUntouched(t)
}

// A cut connection (reset) mid-COPY, on either side: the unit fails at
// once naming the side, and both servers are unlocked at once.
func TestCutMidCopy(t *testing.T) {
	t.Parallel()
	for _, side := range []string{"source", "destination"} {
		t.Run(side, func(t *testing.T) {
			t.Parallel()
			f := newNetFixture(t, slowTrigger)
			p := f.sp
			if side == "destination" {
				p = f.dp
			}
			done := start(testCtx(t), f.opts())
			waitFor(t, "destination COPY", func() bool { return copyingRows(t, f.dst) })
			p.Cut()
			cutAt := time.Now()
			r := within(t, done, 5*time.Second, "end of the unit")
			oneFailed(t, r, copy.StatusFailed, side)
			unlockedWithin(t, f.src, "source", cutAt, 2*time.Second)
			unlockedWithin(t, f.dst, "destination", cutAt, 2*time.Second)
			f.assertUntouched(t)
		})
	}
}

// A real network cut mid-COPY between lockstep and each server: packets
// dropped both ways, no reset. lockstep sees its stream stall and gives up
// after the stall timeout, releasing the other server at once; the cut-off
// server notices by itself within about the stall timeout, through the
// keepalives (a destination waiting to receive) or the user timeout (a
// source with data unacknowledged) that lockstep set on its session.
func TestPartitionMidCopy(t *testing.T) {
	t.Parallel()
	for _, side := range []string{"source", "destination"} {
		t.Run(side, func(t *testing.T) {
			t.Parallel()
			server := pgtest.NewServer(t)
			part := pgtest.NewPartition(t, server)
			env := pgtest.Get(t)
			var src, dst string
			if side == "source" {
				src, dst = server.NewDB(t), env.Dest.NewDB(t)
			} else {
				src, dst = env.Source.NewDB(t), server.NewDB(t)
			}
			mustExec(t, src, bigSchema+bigRows)
			mustExec(t, dst, bigSchema+preexisting+slowTrigger)
			f := &fixture{src: src, dst: dst, srcBefore: digest(t, src), dstBefore: digest(t, dst)}
			o := opts(src, dst, "big")
			cutOff, other := src, dst
			if side == "source" {
				o.Source = part.Proxy(t, src).DSN()
			} else {
				o.Dest = part.Proxy(t, dst).DSN()
				cutOff, other = dst, src
			}
			o.StallTimeout = testStall
			done := start(testCtx(t), o)
			waitFor(t, "destination COPY", func() bool { return copyingRows(t, dst) })
			if err := part.Cut(); err != nil {
				t.Fatal(err)
			}
			cutAt := time.Now()
			r := within(t, done, testStall+5*time.Second, "end of the unit")
			// lockstep's own watchdog names the stall; on a loaded machine
			// its socket's TCP user timeout (twice the stall timeout) may
			// end the connection first: the unit fails naming the side
			// either way.
			if u := oneFailed(t, r, copy.StatusFailed, side); !errors.As(u.Err, new(*copy.StallError)) {
				t.Logf("the connection ended before the watchdog fired: %v", u.Err)
			}
			unlockedWithin(t, other, "the other side", r.at, time.Second)
			unlockedWithin(t, cutOff, side, cutAt, testStall+2*time.Second)
			if err := part.Heal(); err != nil {
				t.Fatal(err)
			}
			f.assertUntouched(t)
		})
	}
}
