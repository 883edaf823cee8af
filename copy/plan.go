package copy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"lockstep/internal/redact"
	"lockstep/partition"
)

// Plan is what a run would do, decided before anything is locked. Its
// units (groups: one table, or tables that foreign keys tie together) are
// described on demand, so that a plan of tens of thousands of units holds
// each unit's facts once.
type Plan struct {
	Totals PlanTotals
	// Created is what --create-missing created before planning or, in a
	// plan that is only printed, would create (nil: nothing).
	Created *Created

	groups   []partition.Group
	opts     *Options
	src, dst *side
	// The ledger's own connection to the destination (claims live on
	// it), and what the ledger said when the run started; nil without one.
	ledgerSide *side
	resume     *resume
}

// PlannedGroup is one unit of a plan: a table, or the tables copied
// together because foreign keys tie them (see partition.Group).
type PlannedGroup struct {
	Index    int      `json:"index"`
	Unit     string   `json:"unit"`
	Tables   []string `json:"tables"` // in copy order
	Why      string   `json:"why,omitempty"`
	Truncate []string `json:"also_truncated,omitempty"` // partitioned tables whose partitions follow as units of their own
	After    []int    `json:"after,omitempty"`          // indexes of the groups it starts after
	EstRows  int64    `json:"estimated_rows"`
	EstBytes int64    `json:"estimated_bytes"`
	// WriteBlock is the predicted time the group's source locks are held,
	// all at once; the wait for them comes on top.
	WriteBlock time.Duration `json:"predicted_write_block_ns"`
	Refused    bool          `json:"refused,omitempty"` // predicted over --max-write-block
}

// PlannedUnit is one table of a plan.
type PlannedUnit struct {
	Group           int      `json:"group"` // index of its group
	Unit            string   `json:"unit"`
	Source          string   `json:"source"`
	Dest            string   `json:"destination"`
	EstRows         int64    `json:"estimated_rows"` // -1: never analyzed
	RowsCounted     bool     `json:"rows_counted"`
	EstBytes        int64    `json:"estimated_bytes"`
	Format          string   `json:"format"`
	FormatWhy       string   `json:"format_reason"`
	Freeze          bool     `json:"freeze"`
	Columns         []string `json:"columns"`
	Skipped         []string `json:"skipped_columns,omitempty"`
	DestTriggers    []string `json:"destination_triggers,omitempty"`
	DestForeignKeys []string `json:"destination_foreign_keys,omitempty"`
	Locks           []string `json:"locks"`
	// WriteBlock is the predicted time the source lock is held; the wait
	// for it (PlanTotals.MaxLockQueue at most per attempt) blocks writers too.
	WriteBlock time.Duration `json:"predicted_write_block_ns"`
	Refused    bool          `json:"refused,omitempty"` // predicted over --max-write-block
	// Sequences feed the copied columns; the copy sets them from the
	// source's (those the source lacks by that name are left alone).
	Sequences []string `json:"sequences,omitempty"`
}

// PlanTotals sums a plan.
type PlanTotals struct {
	Units      int           `json:"units"`
	EstRows    int64         `json:"estimated_rows"`
	EstBytes   int64         `json:"estimated_bytes"`
	WriteBlock time.Duration `json:"predicted_write_block_ns"` // summed over units
	MaxBlock   time.Duration `json:"max_predicted_write_block_ns"`
	AssumeMBps float64       `json:"assume_mbps"`
	// MaxLockQueue bounds each attempt's wait for a source lock, which
	// blocks writers as well: --lock-timeout, or --max-write-block if less.
	MaxLockQueue time.Duration `json:"max_source_lock_queue_ns"`
	Refused      int           `json:"refused"`
}

// MakePlan checks the input and plans the units without locking or
// changing anything. Units predicted to block writes longer than
// MaxWriteBlock make it return the plan and a *BadInputError naming them.
func MakePlan(ctx context.Context, opts Options) (*Plan, error) {
	if err := opts.Validate(); err != nil {
		return nil, &BadInputError{err}
	}
	src, err := parseSide("source", opts.Source, opts.StallTimeout)
	if err != nil {
		return nil, &BadInputError{err}
	}
	dst, err := parseSide("destination", opts.Dest, opts.StallTimeout)
	if err != nil {
		return nil, &BadInputError{err}
	}
	ledgerSide, _ := parseSide("destination", opts.Dest, opts.StallTimeout)
	if opts.wrapConn != nil {
		for label, sd := range map[string]*side{"source": src, "destination": dst, "ledger": ledgerSide} {
			dial, name := sd.cfg.DialFunc, label
			sd.cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := dial(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return opts.wrapConn(name, c), nil
			}
		}
	}
	created, err := createMissing(ctx, src, dst, &opts) // --create-missing: see create.go
	var groups []partition.Group
	if err == nil {
		groups, err = plan(ctx, src, dst, &opts)
	}
	if err != nil {
		err = created.stay(err)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w while planning: %v", ErrInterrupted, err)
		}
		return nil, &BadInputError{err}
	}
	p := &Plan{groups: groups, opts: &opts, src: src, dst: dst, ledgerSide: ledgerSide, Created: created, Totals: PlanTotals{Units: len(groups), AssumeMBps: opts.AssumeMBps,
		MaxLockQueue: opts.sourceLockTimeout()}}
	var refused []string
	for i := range groups {
		pg := p.PlannedGroup(i)
		if pg.Refused {
			refused = append(refused, fmt.Sprintf("%s (%s)", pg.Unit, pg.WriteBlock.Round(100*time.Millisecond)))
		}
		if pg.EstRows > 0 {
			p.Totals.EstRows += pg.EstRows
		}
		p.Totals.EstBytes += pg.EstBytes
		p.Totals.WriteBlock += pg.WriteBlock
		p.Totals.MaxBlock = max(p.Totals.MaxBlock, pg.WriteBlock)
	}
	p.Totals.Refused = len(refused)
	if len(refused) > 0 {
		return p, &BadInputError{created.stay(fmt.Errorf("source: %d unit(s) predicted to block writes longer than --max-write-block %s at %.0f MB/s: %s",
			len(refused), opts.MaxWriteBlock, opts.AssumeMBps, strings.Join(refused, ", ")))}
	}
	// The ledger last: it is created (or upgraded) and the run recorded
	// only once nothing else is wrong.
	if opts.Ledger != nil && !opts.VerifyOnly {
		opts.planStage("reading the ledger")
		if err := p.openLedger(ctx); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w while opening the ledger: %v", ErrInterrupted, err)
			}
			return nil, &BadInputError{err}
		}
	}
	return p, nil
}

// Len is the number of units (groups) in the plan.
func (p *Plan) Len() int { return len(p.groups) }

// writeBlock predicts how long copying b bytes holds the source lock.
func (p *Plan) writeBlock(b int64) time.Duration {
	return time.Duration(float64(b) / (p.opts.AssumeMBps * 1e6) * float64(time.Second))
}

// PlannedGroup describes unit (group) i of the plan.
func (p *Plan) PlannedGroup(i int) PlannedGroup {
	g := &p.groups[i]
	e := g.Estimate()
	pg := PlannedGroup{Index: i, Unit: g.Name(), Why: g.Why, After: g.After, EstRows: e.Rows, EstBytes: e.Bytes, WriteBlock: p.writeBlock(e.Bytes)}
	for _, u := range g.Units {
		pg.Tables = append(pg.Tables, u.Name())
	}
	for _, t := range g.Truncate {
		pg.Truncate = append(pg.Truncate, t.String())
	}
	if g.Units[0].DestOnly {
		pg.WriteBlock = 0
	}
	pg.Refused = p.opts.MaxWriteBlock > 0 && pg.WriteBlock > p.opts.MaxWriteBlock
	return pg
}

// planned describes member m of group gi.
func (p *Plan) planned(gi, m int) PlannedUnit {
	g := &p.groups[gi]
	u := &g.Units[m]
	pu := PlannedUnit{
		Group: gi, Unit: u.Name(), Source: u.Source.String(), Dest: u.Dest.String(),
		EstRows: u.Estimate.Rows, RowsCounted: u.Estimate.Exact, EstBytes: u.Estimate.Bytes,
		Format: u.Format(), FormatWhy: u.FormatWhy, Freeze: u.Freeze, Columns: u.Columns, Skipped: u.Skipped,
		DestTriggers: u.TriggerNames(), DestForeignKeys: u.DestForeignKeys,
		Locks:      []string{"destination: ACCESS EXCLUSIVE on " + u.Dest.String(), "source: EXCLUSIVE on " + u.Source.String()},
		WriteBlock: p.writeBlock(g.Estimate().Bytes),
	}
	if g.Delete {
		pu.Locks = append(pu.Locks, "destination: emptied with DELETE (--fk-mode replica; other tables reference it)")
	}
	for _, s := range u.Sequences {
		if s.Source.OID == 0 {
			pu.Sequences = append(pu.Sequences, s.String()+" (the source has no sequence of that name feeding the table: left alone)")
		} else {
			pu.Sequences = append(pu.Sequences, s.String())
		}
	}
	if u.DestOnly {
		pu.Source, pu.Locks, pu.WriteBlock = "", []string{"destination: EXCLUSIVE on " + u.Dest.String() + " (verify --lock)"}, 0
	}
	pu.Refused = p.opts.MaxWriteBlock > 0 && pu.WriteBlock > p.opts.MaxWriteBlock
	return pu
}

// Planned describes the plan's i-th table, counting the members of every
// group in order.
func (p *Plan) Planned(i int) PlannedUnit {
	for gi := range p.groups {
		if n := len(p.groups[gi].Units); i >= n {
			i -= n
			continue
		}
		return p.planned(gi, i)
	}
	panic(fmt.Sprintf("copy: plan has no table %d", i))
}

// tables counts the plan's tables.
func (p *Plan) tables() int {
	n := 0
	for i := range p.groups {
		n += len(p.groups[i].Units)
	}
	return n
}

// WriteJSON writes the plan as one JSON object, {"units": [...every
// table...], "groups": [...every unit...], "totals": {...}}, an item at a
// time.
func (p *Plan) WriteJSON(w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetIndent("  ", "  ")
	sep := func(first bool) {
		if !first {
			bw.WriteString(",")
		}
		bw.WriteString("\n  ")
	}
	bw.WriteString("{\n")
	if p.Created != nil { // --create-missing
		bw.WriteString("  \"create_missing\": ")
		if err := enc.Encode(p.Created); err != nil {
			return err
		}
		bw.WriteString("  ,\n")
	}
	bw.WriteString("  \"units\": [")
	first := true
	for gi := range p.groups {
		for m := range p.groups[gi].Units {
			sep(first)
			first = false
			if err := enc.Encode(p.planned(gi, m)); err != nil {
				return err
			}
		}
	}
	bw.WriteString("  ],\n  \"groups\": [")
	for gi := range p.groups {
		sep(gi == 0)
		if err := enc.Encode(p.PlannedGroup(gi)); err != nil {
			return err
		}
	}
	bw.WriteString("  ],\n  \"totals\": ")
	if err := enc.Encode(p.Totals); err != nil {
		return err
	}
	bw.WriteString("}\n")
	return bw.Flush()
}

// Execute copies the plan's units; see Run.
func (p *Plan) Execute(ctx context.Context) (*Report, error) {
	rep, err := execute(ctx, p.opts, p.src, p.dst, p.groups, p.resume, (*worker).attempt)
	if cerr := p.checkForeignKeys(ctx, rep); cerr != nil {
		err = errors.Join(err, cerr)
		rep.Failed++
	}
	if p.resume != nil {
		if lerr := p.opts.ledger().Close(ctx, runOutcome(rep, err), rep.Skipped); lerr != nil {
			p.opts.Logger.Warn("the ledger did not record the run's outcome", "error", lerr)
		}
	}
	return rep, err
}

func mb(b int64) string { return fmt.Sprintf("%.1f", float64(b)/1e6) }

// WriteText prints the plan as a table of tables, details under each
// table, the units that copy several tables together, and totals. Names
// and types from the catalogs have their control characters escaped.
func (p *Plan) WriteText(w io.Writer) error {
	p.Created.writeText(w) // --create-missing: see create.go
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UNIT\tEST ROWS\tEST MB\tFORMAT\tFREEZE\tWRITES BLOCKED (PREDICTED)\t")
	for gi := range p.groups {
		for m := range p.groups[gi].Units {
			u := p.planned(gi, m)
			rows := fmt.Sprint(u.EstRows)
			switch {
			case u.EstRows < 0:
				rows = "unknown"
			case u.RowsCounted:
				rows += " (counted)"
			}
			flag := ""
			if len(p.groups[gi].Units) > 1 {
				flag = fmt.Sprintf("  (with the %d tables of unit %d)", len(p.groups[gi].Units), gi+1)
			}
			if u.Refused {
				flag += "  REFUSED: over --max-write-block"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s%s\t\n", redact.Control(u.Unit), rows, mb(u.EstBytes), u.Format, u.Freeze, u.WriteBlock.Round(time.Millisecond), flag)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for gi := range p.groups {
		for m := range p.groups[gi].Units {
			u := p.planned(gi, m)
			fmt.Fprintf(w, "\n%s\n  locks: %s\n  format: %s (%s)\n", redact.Control(u.Unit), redact.Control(strings.Join(u.Locks, "; ")),
				u.Format, redact.Control(u.FormatWhy))
			if len(u.Skipped) > 0 {
				fmt.Fprintf(w, "  columns skipped: %s\n", redact.Control(strings.Join(u.Skipped, ", ")))
			}
			if len(u.DestTriggers) > 0 {
				how := "they fire for every row copied"
				if p.opts.DisableTriggers {
					how = "disabled while the copy loads the table (--disable-triggers)"
				}
				fmt.Fprintf(w, "  destination triggers (%s): %s\n", how, redact.Control(strings.Join(u.DestTriggers, ", ")))
			}
			if len(u.DestForeignKeys) > 0 {
				fmt.Fprintf(w, "  destination foreign keys (checked for every row copied): %s\n", redact.Control(strings.Join(u.DestForeignKeys, ", ")))
			}
			if len(u.Sequences) > 0 {
				fmt.Fprintf(w, "  sequences (set from the source's after the copy, never backwards): %s\n", redact.Control(strings.Join(u.Sequences, ", ")))
			}
		}
	}
	for gi := range p.groups {
		g := p.PlannedGroup(gi)
		if len(g.Tables) == 1 && len(g.Truncate) == 0 && len(g.After) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nunit %d: %s\n", gi+1, redact.Control(g.Unit))
		if len(g.Tables) > 1 {
			fmt.Fprintf(w, "  copies %d tables in one pair of transactions, in this order: %s\n", len(g.Tables), redact.Control(strings.Join(g.Tables, ", ")))
			fmt.Fprintf(w, "  writes to all of them blocked at once: %s (predicted)\n", g.WriteBlock.Round(time.Millisecond))
		}
		if g.Why != "" {
			fmt.Fprintf(w, "  why: %s\n", redact.Control(g.Why))
		}
		if len(g.After) > 0 {
			var after []string
			for _, a := range g.After {
				after = append(after, fmt.Sprintf("unit %d (%s)", a+1, redact.Control(p.groups[a].Name())))
			}
			fmt.Fprintf(w, "  starts after %s has committed\n", strings.Join(after, ", "))
		}
	}
	t := p.Totals
	_, err := fmt.Fprintf(w, "\ntotal: %d units, ~%d rows, %s MB; writes blocked %s in all, at most %s per unit (predicted at %.0f MB/s), "+
		"plus each unit's wait for its source lock (at most %s per attempt)\n",
		t.Units, t.EstRows, mb(t.EstBytes), t.WriteBlock.Round(time.Millisecond), t.MaxBlock.Round(time.Millisecond), t.AssumeMBps,
		t.MaxLockQueue)
	return err
}

// WithCallbacks sets the progress callbacks Execute reports through (see
// Options.OnStart, OnUnit and OnBytes).
func (p *Plan) WithCallbacks(start func(unit string), done func(Result), bytes func(n int64)) *Plan {
	p.opts.OnStart, p.opts.OnUnit, p.opts.OnBytes = start, done, bytes
	return p
}
