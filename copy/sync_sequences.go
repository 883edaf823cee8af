package copy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"lockstep/partition"
)

// SyncReport is what SyncSequences did (or, dry, would do).
type SyncReport struct {
	DryRun    bool          `json:"dry_run"`
	Margin    int64         `json:"margin"`
	Sequences []SequenceSet `json:"sequences"`
	// Unmatched are destination sequences feeding the tables that the
	// source has no sequence of the same name for: left alone.
	Unmatched []string `json:"unmatched,omitempty"`
}

// SyncSequences is the switch-over step: while the application dual-writes,
// the source's sequences move on and the destination's (fed explicit values)
// do not. It sets every destination sequence that feeds the selected tables
// to the source's current value plus margin (in the sequence's direction),
// never backwards, in one destination transaction; with dryRun it only
// computes what it would set. Input that is wrong (connections, selection,
// a source sequence missing on the destination, privileges) comes back as a
// *BadInputError with nothing changed.
func SyncSequences(ctx context.Context, opts Options, margin int64, dryRun bool) (*SyncReport, error) {
	if margin < 0 {
		return nil, &BadInputError{fmt.Errorf("--margin %d: must not be negative", margin)}
	}
	opts.syncOnly = true
	p, err := MakePlan(ctx, opts)
	if err != nil {
		return nil, err
	}
	rep := &SyncReport{DryRun: dryRun, Margin: margin, Sequences: []SequenceSet{}}
	// A destination sequence is set when the source's of its name feeds
	// any of the tables, even if it feeds another only on the destination.
	var seqs []partition.Sequence
	set := map[uint32]bool{}
	for i := range p.groups {
		for _, u := range p.groups[i].Units {
			for _, s := range u.Sequences {
				if s.Source.OID != 0 && !set[s.Dest.OID] {
					set[s.Dest.OID] = true
					seqs = append(seqs, s)
				}
			}
		}
	}
	for i := range p.groups {
		for _, u := range p.groups[i].Units {
			for _, s := range u.Sequences {
				if !set[s.Dest.OID] {
					set[s.Dest.OID] = true
					rep.Unmatched = append(rep.Unmatched, s.String())
				}
			}
		}
	}
	slices.SortFunc(seqs, func(a, b partition.Sequence) int { return strings.Compare(a.Dest.String(), b.Dest.String()) })
	slices.Sort(rep.Unmatched)
	if len(seqs) == 0 {
		return rep, nil
	}
	stall := p.opts.StallTimeout

	src, err := p.src.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer closeConn(ctx, src)
	sctx, cancel := bounded(ctx, p.src.name, "to read the sequences", stall)
	defer cancel()
	res, err := src.PgConn().Exec(sctx, readSequencesSQL(seqs)).ReadAll()
	if err = stalled(sctx, err); err != nil {
		return nil, fmt.Errorf("source: read sequences: %w", err)
	}
	if len(res) != 1 {
		return nil, errors.New("source: read sequences: no result")
	}
	values, err := parseSequenceRows(res[0].Rows, len(seqs))
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}

	dst, err := p.dst.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer closeConn(ctx, dst)
	if !dryRun {
		if err := exec(ctx, dst, "BEGIN"); err != nil {
			return nil, fmt.Errorf("destination: BEGIN: %w", err)
		}
		defer rollback(ctx, dst) // after a COMMIT: nothing to roll back
	}
	dctx, cancel := bounded(ctx, p.dst.name, "to set the sequences", stall)
	defer cancel()
	if rep.Sequences, err = applySequences(dctx, dst, seqs, values, margin, !dryRun); err != nil {
		return nil, fmt.Errorf("destination: set sequences: %w", stalled(dctx, err))
	}
	if !dryRun {
		if err := commit(dctx, dst); err != nil {
			return nil, fmt.Errorf("destination: commit: %w", stalled(dctx, err))
		}
	}
	for _, s := range rep.Sequences {
		p.opts.Logger.Debug("sequence", "sequence", s.Sequence, "source", s.Source.String(), "before", s.Before.String(),
			"after", s.After.String(), "set", s.Set, "dry_run", dryRun)
	}
	return rep, nil
}
