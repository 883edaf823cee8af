package copy

import (
	"context"
	"sync"
	"time"

	"lockstep/throttle"
)

// gate is the run's throttle.Gate, asked by one unit at a time (its
// replica-lag connections are not for concurrent use), and the rate this
// run has achieved, which predicts the next unit's duration.
type gate struct {
	mu    sync.Mutex
	gates throttle.Gates
	first bool

	rateMu  sync.Mutex
	bytes   int64
	elapsed time.Duration
	assumed float64 // bytes per second before any unit finished
}

// newGate builds the run's gate from the options, and the stream rate cap
// (nil without --max-rate). close releases what it opened.
func newGate(ctx context.Context, opts *Options, src, dst *side) (*gate, *throttle.Rate, func(), error) {
	g := &gate{first: true, assumed: opts.AssumeMBps * 1e6}
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	if opts.PauseBetween > 0 {
		g.gates = append(g.gates, throttle.Pause{For: opts.PauseBetween})
	}
	if opts.MaxReplicaLag > 0 {
		sides := []*side{dst}
		if opts.SourceReplicas {
			sides = append(sides, src)
		}
		lag := &throttle.ReplicaLag{Max: opts.MaxReplicaLag, Logger: opts.Logger}
		for _, sd := range sides {
			conn, err := sd.connect(ctx)
			if err != nil {
				closeAll()
				return nil, nil, nil, err
			}
			closers = append(closers, func() { closeConn(ctx, conn) })
			lag.Servers = append(lag.Servers, throttle.Primary{Side: sd.name, Q: conn})
		}
		g.gates = append(g.gates, lag)
	}
	if !opts.Deadline.IsZero() {
		// The waits above end at the deadline; then the unit must still
		// be predicted to end before it.
		g.gates = throttle.Gates{throttle.Until{At: opts.Deadline, Gates: g.gates},
			&throttle.Deadline{At: opts.Deadline, Rate: g.rate, Assumed: g.assumed}}
	}
	var rate *throttle.Rate
	if opts.MaxRate > 0 {
		rate = throttle.NewRate(opts.MaxRate)
	}
	return g, rate, closeAll, nil
}

// Admit asks the gates whether the next unit may start.
func (g *gate) Admit(ctx context.Context, next throttle.Next) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	next.First, g.first = g.first, false
	return g.gates.Admit(ctx, next)
}

// done records a finished unit's rate.
func (g *gate) done(r Result) {
	if r.Status != StatusOK || r.Started.IsZero() {
		return
	}
	g.rateMu.Lock()
	defer g.rateMu.Unlock()
	g.bytes += r.Bytes
	g.elapsed += r.Finished.Sub(r.Started)
}

// rate is the bytes per second of unit time this run has achieved, or 0.
func (g *gate) rate() float64 {
	g.rateMu.Lock()
	defer g.rateMu.Unlock()
	if g.elapsed <= 0 || g.bytes == 0 {
		return 0
	}
	return float64(g.bytes) / g.elapsed.Seconds()
}

// predict is how long a unit of the given estimated size should take.
func (g *gate) predict(bytes int64) time.Duration {
	r := g.rate()
	if r <= 0 {
		r = g.assumed
	}
	if r <= 0 {
		return 0
	}
	return time.Duration(float64(bytes) / r * float64(time.Second))
}
