package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"

	"lockstep/copy"
	"lockstep/internal/redact"
)

// output shows a run: on a terminal, one progress bar in bytes with rate and
// ETA and the units in flight; elsewhere (cron, CI, pipes) a line per
// finished unit and a status line every interval. With --log-format json,
// stderr holds log records only: the status line, each unit's outcome and
// the totals are records there too (the unit lines stay on stdout). The
// copy code reports through callbacks and knows nothing of this.
type output struct {
	out, errOut io.Writer
	quiet       bool
	tty         bool
	log         *slog.Logger
	json        bool // --log-format json
	interval    time.Duration
	secrets     []string
	line        func(copy.Result) string // a finished unit's line
	results     []copy.Result            // finished units with repair SQL, in order of finishing

	mu       sync.Mutex
	plan     *copy.Plan
	bar      *progressbar.ProgressBar
	total    int64 // estimate, corrected as units finish
	units    int   // units to run (the plan's, less those the ledger skips)
	copied   atomic.Int64
	inFlight map[string]bool
	done     int
	started  time.Time
	stop     chan struct{}
	stopped  sync.WaitGroup
}

// terminal tells whether w is a terminal that may show a progress bar: not
// with --log-format json, whose stderr holds log records only.
func (st *runState) terminal(w io.Writer) bool {
	return st.logFormat != logJSON && isTerminal(w)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (o *output) begin(ctx context.Context, p *copy.Plan) {
	skipped, skippedBytes, _ := p.Resumed()
	o.plan, o.total, o.inFlight, o.started = p, max(p.Totals.EstBytes-skippedBytes, 1), map[string]bool{}, time.Now()
	o.units = p.Len() - skipped
	o.stop = make(chan struct{})
	if o.tty && !o.quiet {
		o.bar = progressbar.NewOptions64(o.total,
			progressbar.OptionSetWriter(o.errOut),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionClearOnFinish())
		return
	}
	if o.interval <= 0 {
		return
	}
	o.stopped.Add(1)
	go func() {
		defer o.stopped.Done()
		t := time.NewTicker(o.interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-o.stop:
				return
			case <-t.C:
				o.showStatus()
			}
		}
	}()
}

// showStatus writes the periodic status for non-terminals: a line, or a
// record.
func (o *output) showStatus() {
	o.mu.Lock()
	defer o.mu.Unlock()
	copied := o.copied.Load()
	el := time.Since(o.started)
	rate := float64(copied) / 1e6 / max(el.Seconds(), 0.001)
	if o.json {
		o.log.Info("progress", "units_done", o.done, "units", o.units, "bytes", copied, "estimated_bytes", o.total,
			"mbps", rate, "elapsed_s", el.Seconds(), "units_in_flight", len(o.inFlight), "in_flight", o.flightList())
		return
	}
	fmt.Fprintf(o.errOut, "progress: %d/%d units done, %.1f of ~%.1f MB, %.1f MB/s, %s elapsed; in flight: %s\n",
		o.done, o.units, float64(copied)/1e6, float64(o.total)/1e6, rate, el.Round(time.Second), o.flightList())
}

func (o *output) flightList() string {
	if len(o.inFlight) == 0 {
		return "none"
	}
	return redact.Control(strings.Join(slices.Sorted(maps.Keys(o.inFlight)), ", "))
}

func (o *output) unitStarted(unit string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inFlight[unit] = true
	if o.bar != nil {
		o.bar.Describe("in flight: " + o.flightList())
	}
}

func (o *output) addBytes(n int64) {
	o.copied.Add(n)
	if o.bar != nil {
		o.bar.Add64(n)
	}
}

func (o *output) unitDone(r copy.Result) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.inFlight, r.Unit)
	o.done++
	// Replace the unit's estimate with what it really streamed.
	o.total += r.Bytes - r.EstBytes
	o.total = max(o.total, o.copied.Load(), 1)
	if o.bar != nil {
		o.bar.ChangeMax64(o.total)
		o.bar.Describe("in flight: " + o.flightList())
		o.bar.Clear()
	}
	if r.RepairSQL != "" {
		o.results = append(o.results, r)
	}
	if !o.quiet || (r.Status != copy.StatusOK && r.Status != copy.StatusSkipped) {
		fmt.Fprintln(o.out, redact.Text(copy.Redact(o.line(r), o.secrets...)))
	}
	if o.json {
		logUnit(o.log, r)
	}
}

// logUnit records a finished unit's outcome and figures (--log-format
// json): at level info when it ended ok, error otherwise.
func logUnit(log *slog.Logger, r copy.Result) {
	level := slog.LevelInfo
	if r.Status != copy.StatusOK && r.Status != copy.StatusSkipped {
		level = slog.LevelError
	}
	attrs := []any{"unit", r.Unit, "status", r.Status, "rows", r.Rows, "bytes", r.Bytes, "format", r.Format,
		"dest_lock_wait_s", r.DestLockWait.Seconds(), "source_lock_wait_s", r.SourceLockWait.Seconds(),
		"writes_blocked_s", r.WritesBlocked.Seconds(), "source_lock_held_s", r.SourceLockHeld.Seconds(),
		"copy_s", r.Copy.Seconds(), "verify_s", r.Verify.Seconds()}
	if r.Checksum != "" {
		attrs = append(attrs, "checksum", r.Checksum)
	}
	if r.Note != "" {
		attrs = append(attrs, "note", r.Note)
	}
	if r.Err != nil {
		attrs = append(attrs, "error", r.Err.Error())
	}
	log.Log(context.Background(), level, "unit finished", attrs...)
}

// end stops the status lines and prints the summary table and totals.
func (o *output) end(rep *copy.Report) {
	close(o.stop)
	o.stopped.Wait()
	if o.bar != nil {
		o.bar.Finish()
	}
	if rep == nil {
		return
	}
	if o.json {
		attrs := []any{"ok", rep.OK, "failed", rep.Failed, "mismatch", rep.Mismatch, "interrupted", rep.Interrupted,
			"not_started", rep.Left, "skipped", rep.Skipped, "rows", rep.Rows, "bytes", rep.Bytes, "elapsed_s", rep.Elapsed.Seconds(), "mbps", rep.MBps(),
			"writes_blocked_p50_s", rep.BlockedP50.Seconds(), "writes_blocked_p95_s", rep.BlockedP95.Seconds(),
			"writes_blocked_max_s", rep.BlockedMax.Seconds()}
		if !rep.Deadline.IsZero() {
			attrs = append(attrs, "deadline", rep.Deadline, "remaining", rep.Remaining, "remaining_predicted_s", rep.RemainingPredicted.Seconds())
		}
		o.log.Info("run finished", attrs...)
	}
	if !o.quiet && rep.Skipped < len(rep.Units) {
		fmt.Fprintln(o.out)
		rep.WriteTable(o.out)
	}
	for _, c := range rep.ForeignKeys {
		if !o.quiet || c.Orphans == nil || *c.Orphans > 0 {
			fmt.Fprintln(o.out, redact.Control(c.String()))
		}
	}
	fmt.Fprintln(o.out, rep.Summary())
	if rep.Remaining > 0 {
		fmt.Fprintf(o.out, "stopped at the deadline %s: %d unit(s) remain, predicted to need %s at this run's rate; run again to go on\n",
			rep.Deadline.Format(time.RFC3339), rep.Remaining, rep.RemainingPredicted.Round(time.Second))
	}
}

// planQuiet is how long planning may run before a terminal is told what it
// is doing.
const planQuiet = time.Second

// planMeter shows, on a terminal, which stage planning is in once it has
// taken longer than its quiet period, on one line of stderr that it clears
// when planning ends. Off a terminal it shows nothing.
type planMeter struct {
	w       io.Writer
	started time.Time
	mu      sync.Mutex
	stage   string
	shown   bool
	stop    chan struct{}
	done    sync.WaitGroup
}

func startPlanMeter(w io.Writer, tty bool, quiet time.Duration) *planMeter {
	m := &planMeter{w: w, started: time.Now(), stop: make(chan struct{})}
	if !tty {
		return m
	}
	m.done.Add(1)
	go func() {
		defer m.done.Done()
		wait := time.NewTimer(quiet)
		defer wait.Stop()
		select {
		case <-m.stop:
			return
		case <-wait.C:
		}
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			m.mu.Lock()
			fmt.Fprintf(m.w, "\r\033[Kplanning: %s (%s)", m.stage, time.Since(m.started).Round(100*time.Millisecond))
			m.shown = true
			m.mu.Unlock()
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

// set records the stage planning has entered.
func (m *planMeter) set(stage string) {
	m.mu.Lock()
	m.stage = stage
	m.mu.Unlock()
}

// end stops the meter and clears its line.
func (m *planMeter) end() {
	close(m.stop)
	m.done.Wait()
	if m.shown {
		fmt.Fprint(m.w, "\r\033[K")
	}
}
