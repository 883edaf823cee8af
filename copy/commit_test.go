package copy_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"lockstep/copy"
	"lockstep/internal/pgtest"
	"lockstep/ledger"
)

// The destination commits but its answer is lost (the proxy forwards the
// COMMIT and resets the connection at the answer): lockstep re-checks from
// a new connection, finds the transaction committed, reports the unit ok
// and says so; the source lock was held until then and is released.
func TestCommitAnswerLostRecheckFindsCommitted(t *testing.T) {
	t.Parallel()
	f := newNetFixture(t, "")
	cut := f.dp.CutAfter(pgtest.IsQuery("COMMIT"))
	rep := mustCopy(t, f.opts())
	within(t, cut, time.Second, "the cut COMMIT")
	u := rep.Units[0]
	if !u.Uncertain || !strings.Contains(u.Note, "re-check: transaction") || !strings.Contains(u.Note, "committed") {
		t.Fatalf("the re-check is not reported: uncertain=%v note=%q", u.Uncertain, u.Note)
	}
	if !strings.Contains(u.String(), u.Note) {
		t.Errorf("the unit's line lacks the note: %s", u)
	}
	if got := digest(t, f.dst); got != f.srcBefore {
		t.Fatalf("destination %s, want the copy %s", got, f.srcBefore)
	}
	assertUnlocked(t, f.src, "source")
	assertUnlocked(t, f.dst, "destination")
}

// asBefore ends the error of a unit whose COMMIT never arrived. The
// re-check finds the transaction still open in its session, terminates it
// and says "lockstep terminated: aborted, ..."; on a loaded machine the
// server may have ended that idle session first (its
// idle_in_transaction_session_timeout is 4 stall timeouts, 8 s in these
// tests), and the re-check finds it "aborted". Both are right; what must
// hold is that the unit failed and the destination is as before.
const asBefore = "aborted, the destination is as before"

// The COMMIT never reaches the destination (the proxy swallows it and
// resets lockstep's side only), so its session still holds the
// transaction open: the re-check terminates that session, which rolls it
// back, and reports the unit failed with the destination as before.
func TestCommitSwallowedRecheckTerminates(t *testing.T) {
	t.Parallel()
	f := newNetFixture(t, "")
	cut := f.dp.CutBefore(pgtest.IsQuery("COMMIT"))
	rep, err := copy.Run(testCtx(t), f.opts())
	within(t, cut, time.Second, "the swallowed COMMIT")
	u := oneFailed(t, runResult{rep, err, time.Now()}, copy.StatusFailed, asBefore)
	if !u.Uncertain {
		t.Error("the unknown commit was not flagged")
	}
	f.assertUntouched(t)
}

// A COMMIT that gets no answer at all times out; the re-check has its own
// time to decide (it used to share the COMMIT's, and found it spent).
func TestCommitTimeoutLeavesTimeToRecheck(t *testing.T) {
	t.Parallel()
	f := newNetFixture(t, "")
	held := f.dp.HoldAt(pgtest.IsQuery("COMMIT"))
	o := f.opts()
	copy.SetCommitTimeouts(&o, 2*time.Second, 30*time.Second)
	rep, err := copy.Run(testCtx(t), o)
	within(t, held, time.Second, "the held COMMIT")
	oneFailed(t, runResult{rep, err, time.Now()}, copy.StatusFailed, asBefore)
	f.assertUntouched(t)
}

// A stop (signal, deadline) that comes while the COMMIT's outcome is
// unknown, and a re-check that cannot decide it, leave a unit that may
// have committed: it is reported failed, saying so, never interrupted
// ("rolled back on both sides", exit 3).
func TestCommitUnknownWhileStoppingIsNotInterrupted(t *testing.T) {
	t.Parallel()
	f := newNetFixture(t, "")
	held := f.dp.HoldAt(pgtest.IsStatement("COMMIT"))
	o := withLedger(f.opts(), ledger.Config{})
	// The re-check gets no time at all: it fails.
	copy.SetCommitTimeouts(&o, 2*time.Second, time.Nanosecond)
	ctx, stop := context.WithCancel(testCtx(t))
	defer stop()
	go func() {
		<-held
		stop()
	}()
	rep, err := copy.Run(ctx, o)
	within(t, held, time.Second, "the held COMMIT")
	if rep == nil {
		t.Fatalf("no report: %v", err)
	}
	u := rep.Units[0]
	if u.Status != copy.StatusFailed || !strings.Contains(u.Error, "the destination may hold the copy") {
		t.Fatalf("status %s, error %q; want failed, the destination may hold the copy", u.Status, u.Error)
	}
	if !errors.As(err, new(*copy.CommitUnknownError)) {
		t.Errorf("run error %v lacks the CommitUnknownError", err)
	}
	if got := pgtest.QueryString(t, f.dst, "SELECT string_agg(outcome, ' ') FROM lockstep.units"); got != "failed" {
		t.Errorf("ledger rows: %q, want failed", got)
	}
}
