package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"lockstep/copy"
)

// Buckets of the seconds histograms: lock waits and writes-blocked times
// run from a couple of milliseconds (a small partition) to a minute (a
// lock that queued its whole --lock-timeout, or a big table's copy).
var Buckets = []float64{0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Outcomes are the values of the outcome label: a copy.Status with "_"
// for spaces. The first four are those of units that ran.
var Outcomes = []string{outcome(copy.StatusOK), outcome(copy.StatusFailed), outcome(copy.StatusMismatch),
	outcome(copy.StatusInterrupted), outcome(copy.StatusNotStarted), outcome(copy.StatusSkipped)}

func outcome(s copy.Status) string { return strings.ReplaceAll(string(s), " ", "_") }

// Config says what a Run is of and where it goes.
type Config struct {
	Command  string // copy or verify: the command label of every series
	RunID    string // the run label of lockstep_run_info
	Version  string // the version and revision labels of lockstep_run_info
	Revision string
	// Labels are more constant labels for every series (--metrics-label),
	// e.g. to tell apart two runs whose files share a textfile directory.
	Labels map[string]string
	File   string // --metrics-file, or ""
	Listen string // --metrics-listen, or ""
	Logger *slog.Logger
}

// Run is one run's metrics. Its methods may be called from any goroutine.
type Run struct {
	cfg     Config
	reg     *prometheus.Registry
	started time.Time
	ended   atomic.Int64 // Unix nanoseconds, 0 while running

	endTime, exitCode                              prometheus.Gauge
	planned, inFlight, remaining, remainingBytes   prometheus.Gauge
	units                                          *prometheus.CounterVec
	rows, bytes, streamed                          prometheus.Counter
	blocked                                        *prometheus.HistogramVec
	blockedMax                                     prometheus.Gauge
	lockQueue                                      *prometheus.HistogramVec
	lastUnitSuccess, lastSuccess, deadline, startT prometheus.Gauge

	mu       sync.Mutex // the figures below, and the order of file writes
	counts   map[string]int
	nPlanned int
	estLeft  int64
	maxBlock time.Duration
	warned   bool // a failed file write was logged
	opened   bool // Open has read the previous file

	srv    *http.Server
	served chan error
}

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// ParseLabels reads --metrics-label NAME=VALUE arguments.
func ParseLabels(args []string) (map[string]string, error) {
	labels := map[string]string{}
	for _, a := range args {
		name, value, ok := strings.Cut(a, "=")
		switch {
		case !ok || !labelName.MatchString(name) || strings.HasPrefix(name, "__"):
			return nil, fmt.Errorf("--metrics-label %q: want NAME=VALUE, NAME a Prometheus label name", a)
		case name == "command" || name == "run" || name == "version" || name == "revision" || name == "outcome" ||
			name == "side" || name == "le":
			return nil, fmt.Errorf("--metrics-label %q: lockstep sets the label %s itself", a, name)
		case labels[name] != "":
			return nil, fmt.Errorf("--metrics-label %q: %s given twice", a, name)
		}
		labels[name] = value
	}
	return labels, nil
}

// New registers a run's metrics; it writes and listens nowhere yet (Open).
func New(cfg Config) *Run {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Run{cfg: cfg, reg: prometheus.NewRegistry(), started: time.Now(), counts: map[string]int{}}
	constLabels := prometheus.Labels{"command": cfg.Command}
	for k, v := range cfg.Labels {
		constLabels[k] = v
	}
	reg := prometheus.WrapRegistererWith(constLabels, r.reg)
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "lockstep_" + name, Help: help})
		reg.MustRegister(g)
		return g
	}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "lockstep_" + name, Help: help})
		reg.MustRegister(c)
		return c
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "lockstep_run_info", Help: "Always 1; its labels name the run and the lockstep build.",
		ConstLabels: prometheus.Labels{"run": cfg.RunID, "version": cfg.Version, "revision": cfg.Revision}})
	reg.MustRegister(info)
	info.Set(1)
	r.startT = gauge("run_start_timestamp_seconds", "When the run started (Unix time).")
	r.startT.Set(float64(r.started.UnixNano()) / 1e9)
	r.endTime = gauge("run_end_timestamp_seconds", "When the run ended (Unix time); 0 while it runs.")
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lockstep_run_duration_seconds",
		Help: "How long the run has taken so far, or took."}, r.duration))
	r.exitCode = gauge("run_exit_code", "The run's exit code (0 done, 1 a unit failed, 2 bad input, 3 stopped early, 4 mismatch); -1 while it runs.")
	r.exitCode.Set(-1)
	r.planned = gauge("units_planned", "Units in the run's plan.")
	r.units = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockstep_units_total",
		Help: "Units ended, by outcome (ok, failed, mismatch, interrupted, skipped: the run ledger holds a verified copy; not_started is counted at exit)."}, []string{"outcome"})
	reg.MustRegister(r.units)
	for _, o := range Outcomes {
		r.units.WithLabelValues(o)
	}
	r.inFlight = gauge("units_in_flight", "Units running now.")
	r.remaining = gauge("units_remaining", "Units of the plan that have not ended ok or skipped: still to run, running, or to be run again by a later run.")
	r.remainingBytes = gauge("remaining_estimated_bytes", "The plan's size estimate of the units remaining (bytes); divided by a rate, the time they need.")
	r.rows = counter("rows_total", "Rows of the units that ended ok: copied and committed (copy), or compared equal (verify).")
	r.bytes = counter("bytes_total", "Bytes streamed by the units that ended ok (COPY data as sent).")
	r.streamed = counter("streamed_bytes_total", "Bytes streamed so far, units rolled back included; its rate is the copy rate.")
	r.blocked = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lockstep_writes_blocked_seconds",
		Help:    "Per unit, how long writes to its source tables were blocked (lock queue plus hold), by outcome.",
		Buckets: Buckets}, []string{"outcome"})
	reg.MustRegister(r.blocked)
	for _, o := range Outcomes[:4] {
		r.blocked.WithLabelValues(o)
	}
	r.blockedMax = gauge("writes_blocked_max_seconds", "The longest any unit of the run blocked writes to its source tables, whatever its outcome.")
	r.lockQueue = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lockstep_lock_queue_seconds",
		Help:    "Per unit and side, how long its table locks waited in the server's lock queue (all attempts).",
		Buckets: Buckets}, []string{"side"})
	reg.MustRegister(r.lockQueue)
	r.lockQueue.WithLabelValues("source")
	r.lockQueue.WithLabelValues("destination")
	r.lastUnitSuccess = gauge("unit_last_success_timestamp_seconds", "When a unit of this run last ended ok (Unix time); 0 before one has.")
	r.lastSuccess = gauge("last_success_timestamp_seconds",
		"When the last run that exited 0 ended (Unix time), carried over from the file an earlier run left; 0 if none is known.")
	r.deadline = gauge("deadline_timestamp_seconds", "When the run must stop starting units (Unix time); 0 when it has no deadline.")
	return r
}

// Registry is the run's registry, for tests and other outputs.
func (r *Run) Registry() *prometheus.Registry { return r.reg }

func (r *Run) duration() float64 {
	end := time.Now()
	if e := r.ended.Load(); e != 0 {
		end = time.Unix(0, e)
	}
	return end.Sub(r.started).Seconds()
}

// Open starts the outputs: the HTTP listener, and the file's first
// version (carrying over the last success time the previous run's file
// holds). Its errors are the user's input: the address cannot be listened
// on, the file cannot be written.
func (r *Run) Open() error {
	if r.cfg.Listen != "" {
		ln, err := net.Listen("tcp", r.cfg.Listen)
		if err != nil {
			return fmt.Errorf("--metrics-listen %s: %w", r.cfg.Listen, err)
		}
		r.serve(ln)
	}
	if r.cfg.File != "" {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.carryOver()
		r.opened = true
		if err := r.write(); err != nil {
			r.cfg.File = "" // said once, here
			r.shutdown()
			return err
		}
	}
	return nil
}

// Planned records the plan: its units and their estimated size.
func (r *Run) Planned(units int, estBytes int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nPlanned, r.estLeft = units, estBytes
	r.planned.Set(float64(units))
	r.setRemaining()
	r.writeLogged()
}

func (r *Run) setRemaining() {
	r.remaining.Set(float64(r.nPlanned - r.counts[outcome(copy.StatusOK)] - r.counts[outcome(copy.StatusSkipped)]))
	r.remainingBytes.Set(float64(max(r.estLeft, 0)))
}

// Resumed records the units the run skips from the start because the run
// ledger holds their verified copies, and their estimated bytes.
func (r *Run) Resumed(units int, estBytes int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := outcome(copy.StatusSkipped)
	r.counts[o] += units
	r.units.WithLabelValues(o).Add(float64(units))
	r.estLeft -= estBytes
	r.setRemaining()
	r.writeLogged()
}

// UnitStarted counts a unit in flight (copy.Options.OnStart).
func (r *Run) UnitStarted(string) { r.inFlight.Inc() }

// Streamed counts bytes as they stream (copy.Options.OnBytes).
func (r *Run) Streamed(n int64) { r.streamed.Add(float64(n)) }

// SetDeadline records when the run must stop starting units (zero: none).
func (r *Run) SetDeadline(t time.Time) {
	if t.IsZero() {
		r.deadline.Set(0)
		return
	}
	r.deadline.Set(float64(t.UnixNano()) / 1e9)
}

// UnitDone records a unit that ended (copy.Options.OnUnit) and rewrites
// the file.
func (r *Run) UnitDone(res copy.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := outcome(res.Status)
	r.counts[o]++
	r.units.WithLabelValues(o).Inc()
	if res.Status == copy.StatusSkipped {
		// Another process copied it meanwhile; it never started here.
		r.estLeft -= res.EstBytes
		r.setRemaining()
		r.writeLogged()
		return
	}
	r.inFlight.Dec()
	if res.Status == copy.StatusOK {
		r.rows.Add(float64(res.Rows))
		r.bytes.Add(float64(res.Bytes))
		r.estLeft -= res.EstBytes
		end := res.Finished
		if end.IsZero() {
			end = time.Now()
		}
		r.lastUnitSuccess.Set(float64(end.UnixNano()) / 1e9)
	}
	// A unit that asked for no lock (a verify without --lock) blocked
	// nothing and queued nowhere: it is not observed.
	if res.WritesBlocked > 0 {
		r.blocked.WithLabelValues(o).Observe(res.WritesBlocked.Seconds())
		if res.WritesBlocked > r.maxBlock {
			r.maxBlock = res.WritesBlocked
			r.blockedMax.Set(res.WritesBlocked.Seconds())
		}
	}
	if res.SourceLockWait > 0 {
		r.lockQueue.WithLabelValues("source").Observe(res.SourceLockWait.Seconds())
	}
	if res.DestLockWait > 0 {
		r.lockQueue.WithLabelValues("destination").Observe(res.DestLockWait.Seconds())
	}
	r.setRemaining()
	r.writeLogged()
}

// Finish records the run's end: its exit code, and the report's unit
// counts (units not started, and any the callbacks did not see), so that
// the metrics agree with the report. It writes the file a last time and
// stops the HTTP server. rep is nil when no unit ran.
func (r *Run) Finish(rep *copy.Report, exitCode int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rep != nil {
		for o, n := range map[string]int{outcome(copy.StatusOK): rep.OK, outcome(copy.StatusFailed): rep.Failed,
			outcome(copy.StatusMismatch): rep.Mismatch, outcome(copy.StatusInterrupted): rep.Interrupted,
			outcome(copy.StatusNotStarted): rep.Left, outcome(copy.StatusSkipped): rep.Skipped} {
			if d := n - r.counts[o]; d > 0 {
				r.units.WithLabelValues(o).Add(float64(d))
				r.counts[o] = n
			}
		}
	}
	return errors.Join(r.end(exitCode), r.shutdown())
}

// Abort records the end of a run cut short (a second signal: the process
// exits at once) and writes the file a last time, so that it does not go
// on claiming a run in progress; the HTTP server ends with the process.
func (r *Run) Abort(exitCode int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.end(exitCode)
}

// end records the run's end and exit code and writes the file (with r.mu
// held).
func (r *Run) end(exitCode int) error {
	end := time.Now()
	r.ended.Store(end.UnixNano())
	r.endTime.Set(float64(end.UnixNano()) / 1e9)
	r.exitCode.Set(float64(exitCode))
	r.inFlight.Set(0)
	if exitCode == 0 {
		r.lastSuccess.Set(float64(end.UnixNano()) / 1e9)
	}
	r.setRemaining()
	if r.cfg.File == "" {
		return nil
	}
	if !r.opened {
		r.carryOver()
	}
	return r.write()
}
