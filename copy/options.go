package copy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"lockstep/partition"
	"lockstep/verify"
)

// Defaults shared by the CLI's flags.
const (
	DefaultLockTimeout  = 5 * time.Second
	DefaultLockRetries  = 3
	DefaultRetryBackoff = time.Second
	DefaultJobs         = 2
	// DefaultAssumeMBps is the copy rate (MB of on-disk table per second,
	// verification included) that plans predict write-block times with;
	// measured by scripts/bench.sh on a 2-core machine with both servers.
	DefaultAssumeMBps = 40.0
	DefaultConnect    = 10 * time.Second
	// DefaultStallTimeout is how long a server may stay silent (see
	// StallTimeout); a lock outlives a dead lockstep by about this, and a
	// live one that stopped talking to the server by at most four times this.
	DefaultStallTimeout = 30 * time.Second
	DefaultDiffRows     = 1000
	// copyBuffer sits between the source's COPY TO, which hands over one
	// row at a time, and the destination's COPY FROM; without it the relay
	// runs at about half speed.
	copyBuffer = 256 << 10
)

// Options is one copy run.
type Options struct {
	// RunID names the run: in the log (the caller's Logger should carry
	// it as "run"), the report and the metrics. Validate fills in
	// NewRunID() when it is empty.
	RunID        string
	Source, Dest string // connection strings (URL or key=value; PG* env vars apply)
	partition.Selection
	ExactCounts bool // plan with count(*) instead of catalog estimates
	LockTimeout time.Duration
	// StallTimeout is the longest a server may stay silent while lockstep
	// awaits it (a COPY moving no bytes, a short statement unanswered)
	// before the unit is rolled back; it also paces the keepalives and the
	// idle-in-transaction timeout that free a dead lockstep's locks.
	StallTimeout time.Duration
	LockRetries  int           // further attempts after a lock timeout
	RetryBackoff time.Duration // first pause between lock attempts, doubled per attempt
	Verify       verify.Mode
	// Checksum is the per-row hash of checksums (verify.XXH3 by default).
	Checksum verify.Algorithm
	Jobs     int
	FailFast bool // start no unit after one failed
	// FKMode says how foreign keys that reference selected tables are
	// handled (partition.FKGroup by default).
	FKMode partition.FKMode
	// DisableTriggers disables the destination tables' user triggers while
	// a unit loads them (pg_dump's --disable-triggers, for user triggers).
	DisableTriggers bool
	// Deadline, when set, is the time after which no unit starts, nor one
	// predicted to end after it (--deadline, --max-duration).
	Deadline time.Time
	// MaxRate, when positive, caps the bytes streamed per second across
	// all units.
	MaxRate float64
	// MaxReplicaLag, when positive, holds each unit back while a standby
	// of the destination (and with SourceReplicas of the source) replays
	// further behind.
	MaxReplicaLag  time.Duration
	SourceReplicas bool
	// PauseBetween rests between units.
	PauseBetween time.Duration
	// CheckFKs, after a --fk-mode replica run, counts the orphans of the
	// foreign keys the copy did not check.
	CheckFKs bool
	// Sequences says what to do with the sequences that feed the copied
	// columns: SequencesCopy (copy's default), SequencesCheck (verify's
	// default) or SequencesNone.
	Sequences SequencesMode
	// MaxWriteBlock, when set, refuses units predicted (at AssumeMBps) to
	// block source writes longer, and rolls back a unit that overruns it.
	MaxWriteBlock time.Duration
	AssumeMBps    float64
	Logger        *slog.Logger
	// Ledger, when set, keeps the run's record in the destination (see
	// package ledger): units earlier runs verified are skipped, units are
	// claimed so that several processes share one selection, and each
	// unit's success row commits with its data. nil: none of that.
	Ledger Ledger
	// lockstep verify: compare without copying.
	VerifyOnly    bool     // the plan is for Plan.Verify: check only the privileges that needs
	Lock          bool     // hold the units' locks while comparing
	RecheckLocked bool     // re-check a mismatch once under the locks before reporting it
	Diff          bool     // pinpoint differing rows of mismatching units
	DiffKey       []string // key columns for the diff instead of the primary key
	DiffRows      int      // compare rows once a segment holds at most this many
	RepairSQL     bool     // build statements that would repair the destination

	hashFunc string // row hash the servers share for the diff: md5, or sha256
	syncOnly bool   // the plan is for SyncSequences: it reads sequences, copies nothing
	// statusOnly: the plan is for ReadStatus: a copy's units, read only.
	statusOnly bool
	// setvals runs the sequence-setting statements of concurrent units one
	// at a time (see setGroupSequences); shared by copies of the options.
	setvals *sync.Mutex

	// CreateMissing creates the selected tables the destination lacks, from
	// the source's definitions, before the units are planned (create.go).
	CreateMissing bool
	PgDump        string // the pg_dump to run (default: pg_dump on PATH)
	// PlanOnly says the plan will only be printed: CreateMissing then
	// lists what it would create and creates nothing.
	PlanOnly bool
	// OnCreate, when set, is told what CreateMissing created, right after.
	OnCreate    func(Created)
	skipMissing bool // plan without the tables the destination lacks

	// OnPlan, when set, is called as planning enters each stage
	// (connecting, self-test, resolving names, ...), from the planning
	// goroutine.
	OnPlan func(stage string)

	// The commit point's timeouts (commitTimeout, recheckTimeout unless a
	// test shortens them).
	commitTimeout, recheckTimeout time.Duration
	// wrapConn, set by tests, wraps every connection lockstep opens.
	wrapConn func(side string, c net.Conn) net.Conn

	// OnStart and OnUnit, when set, are called as each unit starts and
	// ends (from the unit's worker goroutine).
	OnStart func(unit string)
	OnUnit  func(Result)
	// OnBytes, when set, is called with each chunk's size as data streams
	// (from worker goroutines; keep it cheap).
	OnBytes func(n int64)
}

// validateSequences fills the default of --sequences: copy for a copy,
// check for a verify.
func (o *Options) validateSequences() error {
	switch {
	case o.syncOnly:
		o.Sequences = SequencesCopy
	case o.VerifyOnly:
		if o.Sequences == "" {
			o.Sequences = SequencesCheck
		}
		if o.Sequences != SequencesCheck && o.Sequences != SequencesNone {
			return fmt.Errorf("unknown --sequences %q (want check or none)", o.Sequences)
		}
	default:
		if o.Sequences == "" {
			o.Sequences = SequencesCopy
		}
		if o.Sequences != SequencesCopy && o.Sequences != SequencesNone {
			return fmt.Errorf("unknown --sequences %q (want copy or none)", o.Sequences)
		}
	}
	return nil
}

func (o *Options) planStage(stage string) {
	if o.OnPlan != nil {
		o.OnPlan(stage)
	}
}

// Validate fills defaults and rejects impossible values.
func (o *Options) Validate() error {
	if o.Source == "" {
		return errors.New("source: no connection string (--source or LOCKSTEP_SOURCE)")
	}
	if o.Dest == "" {
		return errors.New("destination: no connection string (--dest or LOCKSTEP_DEST)")
	}
	if o.Selection.Empty() {
		return errors.New("no table selected (--table, --tables-matching or --tables-from)")
	}
	if o.Order == "" {
		o.Order = partition.BySize
	}
	if _, err := partition.ParseOrder(string(o.Order)); err != nil {
		return err
	}
	if o.AssumeMBps == 0 {
		o.AssumeMBps = DefaultAssumeMBps
	}
	if o.AssumeMBps < 0 || o.MaxWriteBlock < 0 {
		return errors.New("--assume-mbps and --max-write-block must not be negative")
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.LockTimeout < time.Millisecond {
		return fmt.Errorf("lock timeout %s: must be at least 1ms", o.LockTimeout)
	}
	if o.commitTimeout == 0 {
		o.commitTimeout = commitTimeout
	}
	if o.recheckTimeout == 0 {
		o.recheckTimeout = recheckTimeout
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.StallTimeout < time.Second {
		return fmt.Errorf("stall timeout %s: must be at least 1s", o.StallTimeout)
	}
	if o.LockRetries < 0 {
		return fmt.Errorf("lock retries %d: must not be negative", o.LockRetries)
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = DefaultRetryBackoff
	}
	if o.Verify == "" {
		o.Verify = verify.Checksum
	}
	if o.MaxRate < 0 || o.MaxReplicaLag < 0 || o.PauseBetween < 0 {
		return errors.New("--max-rate, --max-replica-lag and --pause-between must not be negative")
	}
	if o.MaxRate > 0 && o.MaxRate/1e6 < o.AssumeMBps {
		o.AssumeMBps = o.MaxRate / 1e6 // the cap slows every unit: plans predict with it
	}
	if o.SourceReplicas && o.MaxReplicaLag == 0 {
		return errors.New("--source-replicas goes with --max-replica-lag")
	}
	if o.Checksum == "" {
		o.Checksum = verify.XXH3
	}
	if _, err := verify.ParseAlgorithm(string(o.Checksum)); err != nil {
		return err
	}
	if o.FKMode == "" {
		o.FKMode = partition.FKGroup
	}
	if _, err := partition.ParseFKMode(string(o.FKMode)); err != nil {
		return err
	}
	if o.CheckFKs && o.FKMode != partition.FKReplica {
		return errors.New("--check-fks goes with --fk-mode replica (in the other modes the copy checks every foreign key)")
	}
	if _, err := verify.ParseMode(string(o.Verify)); err != nil {
		return err
	}
	if err := o.validateSequences(); err != nil {
		return err
	}
	if o.setvals == nil {
		o.setvals = &sync.Mutex{}
	}
	if o.Jobs == 0 {
		o.Jobs = DefaultJobs
	}
	if o.Jobs < 1 {
		return fmt.Errorf("jobs %d: must be at least 1", o.Jobs)
	}
	if o.DiffRows == 0 {
		o.DiffRows = DefaultDiffRows
	}
	if o.DiffRows < 1 {
		return fmt.Errorf("diff rows %d: must be at least 1", o.DiffRows)
	}
	if o.CreateMissing && o.VerifyOnly {
		return errors.New("--create-missing goes with copy and plan, not verify")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RunID == "" {
		o.RunID = NewRunID()
	}
	return nil
}
