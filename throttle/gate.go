package throttle

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Next is what a gate knows of the unit about to start.
type Next struct {
	Unit     string
	EstBytes int64 // the plan's estimate
	First    bool  // the run's first unit
}

// Gate decides whether the next unit may start: it returns nil when it
// may, after waiting as long as it must; a *DeadlineError when it must not
// start at all; or ctx's error.
type Gate interface {
	Admit(ctx context.Context, next Next) error
}

// Gates asks each gate in turn.
type Gates []Gate

// Admit implements Gate.
func (gs Gates) Admit(ctx context.Context, next Next) error {
	for _, g := range gs {
		if err := g.Admit(ctx, next); err != nil {
			return err
		}
	}
	return nil
}

// DeadlineError says a unit was not started because the run's deadline has
// passed, or would pass before the unit is predicted to finish. Not a
// failure: run again in the next window (resume skips what committed).
type DeadlineError struct {
	Deadline  time.Time
	Predicted time.Duration // the unit's predicted duration; 0 when the deadline had passed
}

func (e *DeadlineError) Error() string {
	if e.Predicted == 0 {
		return fmt.Sprintf("not started: the deadline %s has passed", e.Deadline.Format(time.RFC3339))
	}
	return fmt.Sprintf("not started: predicted to take %s, it would end after the deadline %s",
		e.Predicted.Round(time.Second), e.Deadline.Format(time.RFC3339))
}

// IsDeadline reports whether err says a unit was not started for the
// deadline.
func IsDeadline(err error) bool { return errors.As(err, new(*DeadlineError)) }

// Deadline refuses units once its time has come, and units whose predicted
// duration would take them past it. The prediction is the unit's estimated
// bytes at the rate this run has achieved so far (Rate), or at the assumed
// rate before any unit finished.
type Deadline struct {
	At   time.Time
	Rate func() float64 // bytes per second of unit time so far; 0 when unknown
	// Assumed is the rate used before any unit finished (bytes per second).
	Assumed float64
	Now     func() time.Time // time.Now when nil
}

// Admit implements Gate.
func (d *Deadline) Admit(ctx context.Context, next Next) error {
	now := time.Now()
	if d.Now != nil {
		now = d.Now()
	}
	if !now.Before(d.At) {
		return &DeadlineError{Deadline: d.At}
	}
	rate := d.Assumed
	if d.Rate != nil {
		if r := d.Rate(); r > 0 {
			rate = r
		}
	}
	if rate <= 0 {
		return nil
	}
	predicted := time.Duration(float64(next.EstBytes) / rate * float64(time.Second))
	if now.Add(predicted).After(d.At) {
		return &DeadlineError{Deadline: d.At, Predicted: max(predicted, time.Second)}
	}
	return nil
}

// Until asks Gates, which may wait (a pause, a lagging standby), but no
// later than At: a wait that reaches At ends with a *DeadlineError, so
// that the run stops at its deadline instead of waiting past it.
type Until struct {
	At    time.Time
	Gates Gates
}

// Admit implements Gate.
func (u Until) Admit(ctx context.Context, next Next) error {
	if !time.Now().Before(u.At) {
		return &DeadlineError{Deadline: u.At}
	}
	wctx, cancel := context.WithDeadline(ctx, u.At)
	defer cancel()
	err := u.Gates.Admit(wctx, next)
	if err != nil && ctx.Err() == nil && wctx.Err() != nil {
		return &DeadlineError{Deadline: u.At}
	}
	return err
}

// Pause rests between units: every unit but the run's first waits For.
type Pause struct{ For time.Duration }

// Admit implements Gate.
func (p Pause) Admit(ctx context.Context, next Next) error {
	if next.First || p.For <= 0 {
		return nil
	}
	return sleep(ctx, p.For)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ParseDeadline reads --deadline: an RFC 3339 time, or HH:MM local time,
// its next occurrence after now.
func ParseDeadline(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	hm, err := time.ParseInLocation("15:04", s, now.Location())
	if err != nil {
		return time.Time{}, fmt.Errorf("--deadline %q: want HH:MM (local time, its next occurrence) or an RFC 3339 time", s)
	}
	return nextAt(now, hm.Hour(), hm.Minute()), nil
}

// nextAt is the first moment after now at which now's clock reads hh:mm:
// today or tomorrow, by the calendar (not 24 hours on), and in the hour a
// clock turned back, the second time it reads hh:mm if the first has
// passed.
func nextAt(now time.Time, hh, mm int) time.Time {
	var t time.Time
	for day := 0; day < 2; day++ {
		t = time.Date(now.Year(), now.Month(), now.Day()+day, hh, mm, 0, 0, now.Location())
		if t.After(now) {
			return t
		}
		for k := time.Duration(1); k <= 8; k++ { // clocks turn back by up to 2 hours
			if u := t.Add(k * 15 * time.Minute); u.Hour() == hh && u.Minute() == mm && u.After(now) {
				return u
			}
		}
	}
	return t
}
