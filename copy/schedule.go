package copy

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"lockstep/ledger"
	"lockstep/lock"
	"lockstep/partition"
	"lockstep/throttle"
)

// groupState is where a group stands in this process.
type groupState uint8

const (
	pending   groupState = iota // in the queue
	running                     // being claimed or run here
	committed                   // copied (here, by an earlier run or by another process)
	ended                       // failed, or will not start
)

// Claim retries: a unit another process holds is tried again after
// claimRetry, doubled per refusal, at most claimRetryMax.
const (
	claimRetry    = 200 * time.Millisecond
	claimRetryMax = 2 * time.Second
)

// scheduler hands the plan's groups to workers, in plan order. A group
// starts once every group it must follow has committed (here, in an
// earlier run, or in another process), and once this process holds its
// claim. A group another live process holds goes to the end of the queue
// and is tried again later; if by then that process copied it, it is
// skipped. Without a ledger every claim succeeds.
type scheduler struct {
	opts    *Options
	led     Ledger
	groups  []partition.Group
	rep     *Report
	keys    []string
	shapes  []string
	emptied []int64

	mu       sync.Mutex
	queue    []int
	state    []groupState
	retryAt  []time.Time
	refusals []int
	okID     []int64 // the ledger id of each committed group's copy
	changed  chan struct{}
	stopped  bool   // --fail-fast tripped: start nothing more
	deadline string // the deadline passed, saying so: start nothing more
}

func newScheduler(opts *Options, groups []partition.Group, rep *Report, r *resume) *scheduler {
	n := len(groups)
	s := &scheduler{opts: opts, led: opts.ledger(), groups: groups, rep: rep, keys: make([]string, n), shapes: make([]string, n),
		emptied: make([]int64, n), state: make([]groupState, n), retryAt: make([]time.Time, n), refusals: make([]int, n), okID: make([]int64, n),
		changed: make(chan struct{})}
	for i := range groups {
		rep.Units[i] = newResult(&groups[i])
		if r != nil {
			s.keys[i], s.shapes[i], s.emptied[i] = r.keys[i], r.shapes[i], r.emptied[i]
			if rec := r.skipped[i]; rec != nil {
				s.skip(i, rec, fmt.Sprintf("verified by run %s on %s at %s", rec.Run, rec.Host, rec.Finished.UTC().Format(time.RFC3339)))
				continue
			}
		}
		s.queue = append(s.queue, i)
	}
	return s
}

// skip records group i as copied by an earlier or another run.
func (s *scheduler) skip(i int, rec *ledger.Record, note string) {
	r := &s.rep.Units[i]
	r.Status, r.Note, r.Checksum = StatusSkipped, note, rec.Checksum
	for m := range r.Members {
		r.Members[m].Status = StatusSkipped
	}
	s.state[i], s.okID[i] = committed, rec.ID
}

// notify wakes the workers waiting for a group to end. Call with s.mu held.
func (s *scheduler) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// next returns the next group this process may run, claimed, or false
// when there is none left (or the run is stopping).
func (s *scheduler) next(ctx context.Context) (int, bool) {
	for {
		if ctx.Err() != nil {
			return -1, false
		}
		s.mu.Lock()
		i, wake := s.pick()
		empty, changed := len(s.queue) == 0, s.changed
		stopped := s.stopped || s.deadline != ""
		s.mu.Unlock()
		if stopped {
			return -1, false
		}
		if i < 0 {
			if empty {
				return -1, false
			}
			var timer <-chan time.Time
			var t *time.Timer
			if !wake.IsZero() {
				t = time.NewTimer(time.Until(wake))
				timer = t.C
			}
			select {
			case <-ctx.Done():
			case <-changed:
			case <-timer:
			}
			if t != nil {
				t.Stop()
			}
			continue
		}
		if s.claim(ctx, i) {
			return i, true
		}
	}
}

// pick takes the first group in the queue that may start now off the
// queue; if none may, it returns -1 and when a group held elsewhere may be
// tried again (zero: only when a group here ends). Groups whose
// predecessor did not commit are ended on the way. Call with s.mu held.
func (s *scheduler) pick() (int, time.Time) {
	if s.stopped || s.deadline != "" {
		return -1, time.Time{}
	}
	now := time.Now()
	var wake time.Time
queue:
	for qi := 0; qi < len(s.queue); qi++ {
		i := s.queue[qi]
		for _, a := range s.groups[i].After {
			switch s.state[a] {
			case ended:
				s.rep.Units[i].Error = fmt.Sprintf("not started: it must follow %s, which did not commit", s.groups[a].Name())
				s.state[i] = ended
				s.queue = slices.Delete(s.queue, qi, qi+1)
				s.notify()
				// Groups that follow this one may sit earlier in the
				// queue: look again from the start.
				qi = -1
				continue queue
			case pending, running:
				continue queue
			}
		}
		if now.Before(s.retryAt[i]) {
			if wake.IsZero() || s.retryAt[i].Before(wake) {
				wake = s.retryAt[i]
			}
			continue
		}
		s.queue = slices.Delete(s.queue, qi, qi+1)
		s.state[i] = running
		return i, time.Time{}
	}
	return -1, wake
}

// want is what group i's record must show to be trusted: its current
// shape, and to be newer than the copies of the groups it follows.
func (s *scheduler) want(i int) ledger.Want {
	w := ledger.Want{Shape: s.shapes[i], Emptied: s.emptied[i]}
	for _, a := range s.groups[i].After {
		w.After = append(w.After, s.okID[a])
	}
	return w
}

// claim claims group i for this process and reports whether it is to be
// run here; otherwise the group went back to the queue (another process
// holds it), was skipped (another process copied it meanwhile), or ended.
func (s *scheduler) claim(ctx context.Context, i int) bool {
	ok, rec, err := s.led.Claim(ctx, s.keys[i])
	var trusted bool
	if err == nil && ok {
		trusted, _ = s.led.Trusted(rec, s.want(i))
		if trusted {
			s.led.Release(ctx, s.keys[i])
		}
	}
	s.mu.Lock()
	var skipped *Result
	defer func() {
		s.mu.Unlock()
		if skipped != nil && s.opts.OnUnit != nil {
			s.opts.OnUnit(*skipped)
		}
	}()
	switch {
	case err != nil && ctx.Err() != nil:
		s.state[i] = ended // not started
	case err != nil:
		r := &s.rep.Units[i]
		r.Status, r.Err, r.Error = StatusFailed, err, err.Error()
		s.state[i] = ended
		s.stopped = s.stopped || s.opts.FailFast
	case !ok:
		s.refusals[i]++
		s.retryAt[i] = time.Now().Add(lock.Backoff(s.refusals[i], claimRetry, claimRetryMax))
		s.state[i] = pending
		s.queue = append(s.queue, i)
		s.opts.Logger.Debug("unit claimed by another process; trying it later", "unit", s.groups[i].Name())
		return false
	case trusted:
		s.skip(i, rec, fmt.Sprintf("copied and verified by run %s on %s meanwhile", rec.Run, rec.Host))
		r := s.rep.Units[i]
		skipped = &r
		s.notify()
		return false
	default:
		return true
	}
	s.notify()
	return false
}

// done records the outcome of group i, run here.
func (s *scheduler) done(i int, r Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep.Units[i] = r
	if r.Status == StatusOK {
		s.state[i], s.okID[i] = committed, r.ledgerID
	} else {
		s.state[i] = ended
		s.stopped = s.stopped || (s.opts.FailFast && r.Status != StatusNotStarted)
	}
	s.notify()
}

// refused records that the gate kept group i, claimed, from starting:
// past the deadline it and every group still queued are left for the next
// window (not started); another refusal fails it.
func (s *scheduler) refused(ctx context.Context, i int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &s.rep.Units[i]
	switch {
	case throttle.IsDeadline(err):
		r.Error = err.Error() // not started: left for the next window
		s.deadline = r.Error
	case ctx.Err() == nil:
		r.Status, r.Err, r.Error = StatusFailed, err, err.Error()
		s.stopped = s.stopped || s.opts.FailFast
	}
	s.state[i] = ended
	s.notify()
}

// close marks the groups still queued when the deadline stopped the run.
func (s *scheduler) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deadline == "" {
		return
	}
	for _, i := range s.queue {
		if s.rep.Units[i].Error == "" {
			s.rep.Units[i].Error = s.deadline
		}
	}
}

// failedFast reports whether --fail-fast stopped the run.
func (s *scheduler) failedFast() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}
