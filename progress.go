package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"

	"lockstep/copy"
)

// output shows a run: on a terminal, one progress bar in bytes with rate and
// ETA and the units in flight; elsewhere (cron, CI, pipes) a line per
// finished unit and a status line every interval. The copy code reports
// through callbacks and knows nothing of this.
type output struct {
	out, errOut io.Writer
	quiet       bool
	tty         bool
	interval    time.Duration
	secrets     []string
	line        func(copy.Result) string // a finished unit's line
	results     []copy.Result            // finished units, in order of finishing

	mu       sync.Mutex
	plan     *copy.Plan
	bar      *progressbar.ProgressBar
	total    int64 // estimate, corrected as units finish
	copied   atomic.Int64
	inFlight map[string]bool
	done     int
	started  time.Time
	stop     chan struct{}
	stopped  sync.WaitGroup
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
	o.plan, o.total, o.inFlight, o.started = p, max(p.Totals.EstBytes, 1), map[string]bool{}, time.Now()
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
				fmt.Fprintln(o.errOut, o.status())
			}
		}
	}()
}

// status is the periodic line for non-terminals.
func (o *output) status() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	copied := o.copied.Load()
	el := time.Since(o.started)
	rate := float64(copied) / 1e6 / max(el.Seconds(), 0.001)
	return fmt.Sprintf("progress: %d/%d units done, %.1f of ~%.1f MB, %.1f MB/s, %s elapsed; in flight: %s",
		o.done, len(o.plan.Units), float64(copied)/1e6, float64(o.total)/1e6, rate, el.Round(time.Second), o.flightList())
}

func (o *output) flightList() string {
	if len(o.inFlight) == 0 {
		return "none"
	}
	return strings.Join(slices.Sorted(maps.Keys(o.inFlight)), ", ")
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
	o.total += r.Bytes - o.plan.EstimatedBytes(r.Unit)
	o.total = max(o.total, o.copied.Load(), 1)
	if o.bar != nil {
		o.bar.ChangeMax64(o.total)
		o.bar.Describe("in flight: " + o.flightList())
		o.bar.Clear()
	}
	o.results = append(o.results, r)
	if !o.quiet || r.Status != copy.StatusOK {
		fmt.Fprintln(o.out, copy.Redact(o.line(r), o.secrets...))
	}
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
	if !o.quiet {
		fmt.Fprintln(o.out)
		rep.WriteTable(o.out)
	}
	fmt.Fprintln(o.out, rep.Summary())
}
