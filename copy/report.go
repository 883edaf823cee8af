package copy

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"lockstep/internal/redact"
	"lockstep/ledger"
	"lockstep/partition"
	"lockstep/verify"
)

// Status is how a unit ended.
type Status string

const (
	StatusOK         Status = "ok"
	StatusFailed     Status = "failed"
	StatusMismatch   Status = "mismatch"
	StatusNotStarted Status = "not started"
	// StatusInterrupted: the run was stopped while the unit ran; it was
	// rolled back on both sides.
	StatusInterrupted Status = "interrupted"
	// StatusSkipped: the ledger holds a verified copy of the unit, made by
	// an earlier run, or by another process during this one (see Note).
	StatusSkipped Status = "skipped"
)

// Result is one unit's outcome and figures.
type Result struct {
	Unit     string `json:"unit"`
	Status   Status `json:"status"`
	Rows     int64  `json:"rows"`
	Bytes    int64  `json:"bytes"`
	Format   string `json:"format"`
	Freeze   bool   `json:"freeze"`
	Attempts int    `json:"attempts"`
	// Started and Finished bound the unit's run (zero when not started).
	Started      time.Time     `json:"started,omitzero"`
	Finished     time.Time     `json:"finished,omitzero"`
	EstBytes     int64         `json:"estimated_bytes"`   // the plan's estimate
	DestLockWait time.Duration `json:"dest_lock_wait_ns"` // its LOCK queued, summed over attempts
	// SourceLockWait is the time the source LOCK spent queued, summed over
	// attempts; SourceLockHeld runs from its grant to its release.
	SourceLockWait time.Duration `json:"source_lock_wait_ns"`
	SourceLockHeld time.Duration `json:"source_lock_held_ns"`
	// WritesBlocked is how long writers to the source table were held up
	// by this unit: from each LOCK request being sent (a queued EXCLUSIVE
	// request already blocks later writers) to the lock's release, summed
	// over attempts: queue plus held.
	WritesBlocked time.Duration `json:"writes_blocked_ns"`
	Copy          time.Duration `json:"copy_ns"`
	Verify        time.Duration `json:"verify_ns"`
	Checksum      string        `json:"checksum,omitempty"`
	Uncertain     bool          `json:"commit_rechecked,omitempty"` // the destination commit's outcome had to be re-checked
	Diff          *verify.Diff  `json:"diff,omitempty"`
	Note          string        `json:"note,omitempty"`
	RepairSQL     string        `json:"-"`
	Err           error         `json:"-"`
	Error         string        `json:"error,omitempty"`
	// Members are the tables of a unit group, each with its own rows,
	// bytes, times and checksum; the group's figures above sum them, and
	// its locks and writes-blocked time are the group's.
	Members []Result `json:"members,omitempty"`
	// Sequences are the destination sequences the copy set, or found
	// already as far along and left alone (see sequences.go).
	Sequences []SequenceSet `json:"sequences,omitempty"`

	ledgerID int64 // the id of its success row in the ledger
}

// newResult is a group's result before it runs.
func newResult(g *partition.Group) Result {
	u := &g.Units[0]
	r := Result{Unit: g.Name(), Format: u.Format(), Freeze: u.Freeze, EstBytes: g.Estimate().Bytes, Status: StatusNotStarted}
	if len(g.Units) > 1 {
		r.Format = "mixed"
		r.Members = make([]Result, len(g.Units))
		for i := range g.Units {
			m := &g.Units[i]
			r.Members[i] = Result{Unit: m.Name(), Format: m.Format(), Freeze: m.Freeze, EstBytes: m.Estimate.Bytes, Status: StatusNotStarted}
		}
		if !slices.ContainsFunc(r.Members, func(m Result) bool { return m.Format != r.Members[0].Format }) {
			r.Format = r.Members[0].Format
		}
	}
	return r
}

// member is where member i of the group records its figures: the result
// itself for a lone table.
func (r *Result) member(i int) *Result {
	if r.Members == nil {
		return r
	}
	return &r.Members[i]
}

// settle gives a group's members the group's outcome and the group the
// sums of its members' figures.
func (r *Result) settle() {
	if r.Members == nil {
		return
	}
	r.Rows, r.Bytes, r.Copy, r.Verify = 0, 0, 0, 0
	for i := range r.Members {
		m := &r.Members[i]
		m.Status = r.Status
		if r.Status != StatusOK {
			m.Checksum = ""
		}
		r.Rows += m.Rows
		r.Bytes += m.Bytes
		r.Copy += m.Copy
		r.Verify += m.Verify
	}
}

// MBps is the copy throughput.
func (r Result) MBps() float64 {
	if r.Copy <= 0 {
		return 0
	}
	return float64(r.Bytes) / 1e6 / r.Copy.Seconds()
}

func ms(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return "0ms"
	case d < 10*time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return d.Round(100 * time.Millisecond).String()
}

// runOutcome is a run's outcome as the ledger records it; the worst wins,
// as in the exit code.
func runOutcome(r *Report, err error) string {
	switch {
	case r.Mismatch > 0 || r.Orphans > 0:
		return ledger.OutcomeMismatch
	case r.Failed > 0:
		return ledger.OutcomeFailed
	case r.Left+r.Interrupted > 0 || err != nil:
		return ledger.OutcomeInterrupted
	}
	return ledger.OutcomeOK
}

// String is the unit's one summary line. Names and server messages in it
// have their control characters escaped (see redact.Control).
func (r Result) String() string {
	if r.Status == StatusNotStarted {
		return fmt.Sprintf("%s %s", r.Status, redact.Control(r.Unit))
	}
	if r.Status == StatusSkipped {
		return fmt.Sprintf("%s %s: %s", r.Status, redact.Control(r.Unit), redact.Control(r.Note))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s rows=%d bytes=%.1fMB format=%s lock-wait=dst:%s,src:%s writes-blocked=%s (src-held=%s) copy=%s verify=%s %.1fMB/s",
		r.Status, redact.Control(r.Unit), r.Rows, float64(r.Bytes)/1e6, r.Format, ms(r.DestLockWait), ms(r.SourceLockWait),
		ms(r.WritesBlocked), ms(r.SourceLockHeld), ms(r.Copy), ms(r.Verify), r.MBps())
	if r.Checksum != "" {
		fmt.Fprintf(&b, " checksum=%s", r.Checksum)
	}
	if len(r.Sequences) > 0 {
		set, ahead, clamped := sequenceCounts(r.Sequences)
		fmt.Fprintf(&b, " sequences=%d", set)
		if ahead > 0 {
			fmt.Fprintf(&b, " sequences-ahead=%d", ahead)
		}
		if clamped > 0 {
			fmt.Fprintf(&b, " sequences-clamped=%d", clamped)
		}
	}
	if len(r.Members) > 0 {
		parts := make([]string, len(r.Members))
		for i, m := range r.Members {
			parts[i] = fmt.Sprintf("%s rows=%d copy=%s verify=%s", m.Unit, m.Rows, ms(m.Copy), ms(m.Verify))
			if m.Checksum != "" {
				parts[i] += " checksum=" + m.Checksum
			}
		}
		fmt.Fprintf(&b, " members: [%s]", strings.Join(parts, "; "))
	}
	switch {
	case r.Note != "":
		fmt.Fprintf(&b, " (%s)", r.Note)
	case r.Uncertain:
		b.WriteString(" (commit outcome re-checked)")
	}
	if r.Err != nil {
		fmt.Fprintf(&b, ": %s", redact.Control(r.Err.Error()))
	}
	return b.String()
}

// Report is a whole run.
type Report struct {
	Started     time.Time     `json:"started"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	Units       []Result      `json:"units"`
	OK          int           `json:"ok"`
	Failed      int           `json:"failed"`
	Mismatch    int           `json:"mismatch"`
	Left        int           `json:"not_started"`
	Interrupted int           `json:"interrupted"`
	// Skipped units have a verified copy in the ledger, made by an
	// earlier run or by another process meanwhile.
	Skipped int   `json:"skipped"`
	Rows    int64 `json:"rows"`
	Bytes   int64 `json:"bytes"`
	// Writes-blocked times of the units that committed.
	BlockedP50 time.Duration `json:"writes_blocked_p50_ns"`
	BlockedP95 time.Duration `json:"writes_blocked_p95_ns"`
	BlockedMax time.Duration `json:"writes_blocked_max_ns"`
	// Deadline is --deadline (or now + --max-duration); Remaining counts
	// the units it left not started, and RemainingPredicted how long they
	// should take at this run's rate.
	Deadline           time.Time     `json:"deadline,omitzero"`
	Remaining          int           `json:"remaining,omitempty"`
	RemainingPredicted time.Duration `json:"remaining_predicted_ns,omitempty"`
	// ForeignKeys are the foreign keys a --fk-mode replica run did not
	// check; Orphans sums the orphan rows --check-fks found.
	ForeignKeys []FKCheck `json:"foreign_keys_unchecked,omitempty"`
	Orphans     int64     `json:"fk_orphans,omitempty"`
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func (r *Report) tally() {
	var blocked []time.Duration
	defer func() {
		slices.Sort(blocked)
		r.BlockedP50, r.BlockedP95, r.BlockedMax = percentile(blocked, 0.50), percentile(blocked, 0.95), percentile(blocked, 1)
	}()
	r.OK, r.Failed, r.Mismatch, r.Left, r.Interrupted, r.Skipped, r.Rows, r.Bytes = 0, 0, 0, 0, 0, 0, 0, 0
	for _, u := range r.Units {
		switch u.Status {
		case StatusOK:
			r.OK++
			blocked = append(blocked, u.WritesBlocked)
			r.Rows += u.Rows
			r.Bytes += u.Bytes
		case StatusFailed:
			r.Failed++
		case StatusMismatch:
			r.Mismatch++
		case StatusNotStarted:
			r.Left++
		case StatusInterrupted:
			r.Interrupted++
		case StatusSkipped:
			r.Skipped++
		}
	}
}

// MBps is the run's aggregate rate over its wall time.
func (r *Report) MBps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) / 1e6 / r.Elapsed.Seconds()
}

// Summary is the run's closing line.
func (r *Report) Summary() string {
	return fmt.Sprintf("total: %d units ok, %d failed, %d mismatched, %d interrupted, %d not started, %d skipped; rows=%d bytes=%.1fMB in %s (%.1fMB/s); writes blocked p50=%s p95=%s max=%s",
		r.OK, r.Failed, r.Mismatch, r.Interrupted, r.Left, r.Skipped, r.Rows, float64(r.Bytes)/1e6, r.Elapsed.Round(time.Millisecond), r.MBps(),
		ms(r.BlockedP50), ms(r.BlockedP95), ms(r.BlockedMax))
}

// WriteTable prints one row per unit, names escaped as in String; units
// skipped for a copy in the ledger are only counted (in Summary).
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UNIT	ROWS	MB	FORMAT	LOCK WAIT (DST/SRC)	WRITES BLOCKED	COPY	VERIFY	STATUS	")
	for _, u := range r.Units {
		if u.Status == StatusSkipped {
			continue
		}
		fmt.Fprintf(tw, "%s	%d	%.1f	%s	%s/%s	%s	%s	%s	%s	\n", redact.Control(u.Unit), u.Rows, float64(u.Bytes)/1e6, u.Format,
			ms(u.DestLockWait), ms(u.SourceLockWait), ms(u.WritesBlocked), ms(u.Copy), ms(u.Verify), u.Status)
	}
	return tw.Flush()
}

// CheckString is a verified unit's summary line (lockstep verify), with the
// first differences found by --diff on the lines below it.
func (r Result) CheckString() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s rows=%d", r.Status, redact.Control(r.Unit), r.Rows)
	if r.Checksum != "" {
		fmt.Fprintf(&b, " checksum=%s", r.Checksum)
	}
	fmt.Fprintf(&b, " format=%s verify=%s", r.Format, ms(r.Verify))
	if r.WritesBlocked > 0 {
		fmt.Fprintf(&b, " locked=%s", ms(r.WritesBlocked))
	}
	if r.Err != nil {
		fmt.Fprintf(&b, ": %s", redact.Control(r.Err.Error()))
	}
	if r.Note != "" {
		fmt.Fprintf(&b, " (%s)", redact.Control(r.Note))
	}
	if d := r.Diff; d != nil {
		b.WriteString("\n" + d.Summary(20))
	}
	return b.String()
}
