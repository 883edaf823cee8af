package copy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"lockstep/partition"
)

// Plan is what a run would do, decided before anything is locked. Its
// units are described on demand (Planned), so that a plan of tens of
// thousands of units holds each unit's facts once.
type Plan struct {
	Totals PlanTotals
	// Created is what --create-missing created before planning or, in a
	// plan that is only printed, would create (nil: nothing).
	Created *Created

	units    []partition.Unit
	opts     *Options
	src, dst *side
}

// PlannedUnit is one unit of a plan.
type PlannedUnit struct {
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
	created, err := createMissing(ctx, src, dst, &opts) // --create-missing: see create.go
	var units []partition.Unit
	if err == nil {
		units, err = plan(ctx, src, dst, &opts)
	}
	if err != nil {
		err = created.stay(err)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w while planning: %v", ErrInterrupted, err)
		}
		return nil, &BadInputError{err}
	}
	p := &Plan{units: units, opts: &opts, src: src, dst: dst, Created: created, Totals: PlanTotals{Units: len(units), AssumeMBps: opts.AssumeMBps,
		MaxLockQueue: opts.sourceLockTimeout()}}
	var refused []string
	for i := range units {
		pu := p.Planned(i)
		if pu.Refused {
			refused = append(refused, fmt.Sprintf("%s (%s)", pu.Unit, pu.WriteBlock.Round(100*time.Millisecond)))
		}
		if pu.EstRows > 0 {
			p.Totals.EstRows += pu.EstRows
		}
		p.Totals.EstBytes += pu.EstBytes
		p.Totals.WriteBlock += pu.WriteBlock
		p.Totals.MaxBlock = max(p.Totals.MaxBlock, pu.WriteBlock)
	}
	p.Totals.Refused = len(refused)
	if len(refused) > 0 {
		return p, &BadInputError{created.stay(fmt.Errorf("source: %d unit(s) predicted to block writes longer than --max-write-block %s at %.0f MB/s: %s",
			len(refused), opts.MaxWriteBlock, opts.AssumeMBps, strings.Join(refused, ", ")))}
	}
	return p, nil
}

// Len is the number of units in the plan.
func (p *Plan) Len() int { return len(p.units) }

// Planned describes unit i of the plan.
func (p *Plan) Planned(i int) PlannedUnit {
	u, opts := &p.units[i], p.opts
	pu := PlannedUnit{
		Unit: u.Name(), Source: u.Source.String(), Dest: u.Dest.String(),
		EstRows: u.Estimate.Rows, RowsCounted: u.Estimate.Exact, EstBytes: u.Estimate.Bytes,
		Format: u.Format(), FormatWhy: u.FormatWhy, Freeze: u.Freeze, Columns: u.Columns, Skipped: u.Skipped,
		DestTriggers: u.DestTriggers, DestForeignKeys: u.DestForeignKeys,
		Locks:      []string{"destination: ACCESS EXCLUSIVE on " + u.Dest.String(), "source: EXCLUSIVE on " + u.Source.String()},
		WriteBlock: time.Duration(float64(u.Estimate.Bytes) / (opts.AssumeMBps * 1e6) * float64(time.Second)),
	}
	if u.DestOnly {
		pu.Source, pu.Locks, pu.WriteBlock = "", []string{"destination: EXCLUSIVE on " + u.Dest.String() + " (verify --lock)"}, 0
	}
	pu.Refused = opts.MaxWriteBlock > 0 && pu.WriteBlock > opts.MaxWriteBlock
	return pu
}

// WriteJSON writes the plan as one JSON object, {"units": [...],
// "totals": {...}}, a unit at a time.
func (p *Plan) WriteJSON(w io.Writer) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetIndent("  ", "  ")
	bw.WriteString("{\n")
	if p.Created != nil { // --create-missing
		bw.WriteString("  \"create_missing\": ")
		if err := enc.Encode(p.Created); err != nil {
			return err
		}
		bw.WriteString("  ,\n")
	}
	bw.WriteString("  \"units\": [")
	for i := range p.units {
		if i > 0 {
			bw.WriteString(",")
		}
		bw.WriteString("\n  ")
		if err := enc.Encode(p.Planned(i)); err != nil {
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
	return execute(ctx, p.opts, p.src, p.dst, p.units, (*worker).attempt)
}

func mb(b int64) string { return fmt.Sprintf("%.1f", float64(b)/1e6) }

// WriteText prints the plan as a table, details under each unit, and
// totals.
func (p *Plan) WriteText(w io.Writer) error {
	p.Created.writeText(w) // --create-missing: see create.go
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UNIT\tEST ROWS\tEST MB\tFORMAT\tFREEZE\tWRITES BLOCKED (PREDICTED)\t")
	for i := range p.units {
		u := p.Planned(i)
		rows := fmt.Sprint(u.EstRows)
		switch {
		case u.EstRows < 0:
			rows = "unknown"
		case u.RowsCounted:
			rows += " (counted)"
		}
		flag := ""
		if u.Refused {
			flag = "  REFUSED: over --max-write-block"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s%s\t\n", u.Unit, rows, mb(u.EstBytes), u.Format, u.Freeze, u.WriteBlock.Round(time.Millisecond), flag)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for i := range p.units {
		u := p.Planned(i)
		fmt.Fprintf(w, "\n%s\n  locks: %s\n  format: %s (%s)\n", u.Unit, strings.Join(u.Locks, "; "), u.Format, u.FormatWhy)
		if len(u.Skipped) > 0 {
			fmt.Fprintf(w, "  columns skipped: %s\n", strings.Join(u.Skipped, ", "))
		}
		if len(u.DestTriggers) > 0 {
			fmt.Fprintf(w, "  destination triggers (they fire for every row copied): %s\n", strings.Join(u.DestTriggers, ", "))
		}
		if len(u.DestForeignKeys) > 0 {
			fmt.Fprintf(w, "  destination foreign keys (checked for every row copied): %s\n", strings.Join(u.DestForeignKeys, ", "))
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
