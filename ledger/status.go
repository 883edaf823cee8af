package ledger

import (
	"context"
	"fmt"
	"time"
)

// Unit is a unit status asks about.
type Unit struct {
	Key   string
	Name  string
	Shape string // its columns now; "" when unknown (not compared)
	After []int  // indexes of the units it must follow
	// Tables are its destination tables' OIDs (nil: unknown; copies that
	// emptied their partitioned tables are then not looked for).
	Tables []uint32
}

// StatusQuery says what status reads.
type StatusQuery struct {
	Run   string        // the units of this run ("": none)
	Units []Unit        // the units of a selection (nil: none)
	Since time.Duration // trust only copies this young (0: any)
	Runs  int           // how many recent runs to list
}

// RunSummary is one run as status lists it.
type RunSummary struct {
	ID       string     `json:"id"`
	Started  time.Time  `json:"started"`
	Finished *time.Time `json:"finished,omitempty"`
	Host     string     `json:"host"`
	PID      int        `json:"pid"`
	Version  string     `json:"lockstep_version"`
	Units    int        `json:"units"`
	OK       int        `json:"ok"`
	Failed   int        `json:"failed"`
	Skipped  int        `json:"skipped"`
	Rows     int64      `json:"rows"`
	Bytes    int64      `json:"bytes"`
	// Outcome is the recorded outcome, or "running" while the run's
	// process holds its lock, or "died" when it is gone without one.
	Outcome string `json:"outcome"`
}

// States of a unit.
const (
	StateVerified   = "verified"
	StateFailed     = "failed"       // its latest attempt failed or mismatched
	StateNever      = "never copied" // no attempt recorded
	StateIncomplete = "incomplete"   // interrupted, unverified, stale, or its columns changed
)

// UnitState is what the ledger says of one unit.
type UnitState struct {
	Unit        string  `json:"unit"`
	State       string  `json:"state"`
	Why         string  `json:"why,omitempty"`
	Verified    *Record `json:"last_verified,omitempty"` // its last verified copy
	LastFailure *Record `json:"last_failure,omitempty"`
	InFlight    string  `json:"in_flight_run,omitempty"` // the run claiming it now
}

// Status is what the ledger holds about recent runs and some units.
type Status struct {
	Schema  string       `json:"schema"`
	Version int          `json:"version"` // 0: no ledger yet
	Runs    []RunSummary `json:"runs"`
	Units   []UnitState  `json:"units,omitempty"`
	// Counts of the units asked about (with neither a run nor a selection,
	// of every unit the ledger knows).
	Verified   int `json:"verified"`
	Failed     int `json:"failed"`
	Never      int `json:"never_copied"`
	Incomplete int `json:"incomplete"`
	// Unreached, asked about one run, is how many of the units it planned
	// it neither attempted nor skipped (it stopped or died first). The
	// ledger keeps their number, not their names: ask about the selection
	// to see them.
	Unreached int `json:"unreached,omitempty"`
}

// ReadStatus reads the ledger in schema through q without changing
// anything. A destination without a ledger reads as one without runs.
func ReadStatus(ctx context.Context, q Querier, schema string, sq StatusQuery) (*Status, error) {
	st := &Status{Schema: schema, Runs: []RunSummary{}}
	v, err := readVersion(ctx, q, schema)
	if err != nil {
		return nil, fmt.Errorf("destination: ledger: %w", err)
	}
	st.Version = v
	if v > Version {
		return nil, &NewerError{Schema: schema, Found: v, Knows: Version}
	}
	if v == 0 {
		for _, u := range sq.Units {
			st.Units = append(st.Units, UnitState{Unit: u.Name, State: StateNever})
			st.Never++
		}
		return st, nil
	}
	s := quote(schema)
	if st.Runs, err = readRuns(ctx, q, schema, sq); err != nil {
		return nil, err
	}
	units := sq.Units
	list := true
	switch {
	case sq.Run != "":
		units, err = unitsOf(ctx, q, s, "WHERE run_id = $1", sq.Run)
	case units == nil:
		units, err = unitsOf(ctx, q, s, "WHERE $1::text IS NOT NULL", "")
		list = false
	}
	if err != nil {
		return nil, fmt.Errorf("destination: ledger: %w", err)
	}
	if sq.Run != "" {
		r := st.Runs[0]
		st.Unreached = max(r.Units-r.Skipped-len(units), 0)
	}
	states, err := unitStates(ctx, q, schema, units, sq.Since, v >= emptiedVersion)
	if err != nil {
		return nil, err
	}
	for _, u := range states {
		switch u.State {
		case StateVerified:
			st.Verified++
		case StateFailed:
			st.Failed++
		case StateNever:
			st.Never++
		default:
			st.Incomplete++
		}
	}
	if list {
		st.Units = states
	}
	return st, nil
}

func readRuns(ctx context.Context, q Querier, schema string, sq StatusQuery) ([]RunSummary, error) {
	s := quote(schema)
	limit := sq.Runs
	if sq.Run != "" {
		limit = 1
	}
	held, err := advisoryLocks(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("destination: ledger: runs: %w", err)
	}
	rows, err := q.Query(ctx, `
		SELECT r.id, r.started, r.finished, r.host, r.pid, r.lockstep_version, r.units, r.skipped, coalesce(r.outcome, ''),
			count(u.id) FILTER (WHERE u.outcome = 'ok'),
			count(u.id) FILTER (WHERE u.outcome IN ('failed', 'mismatch', 'interrupted')),
			coalesce(sum(u.rows) FILTER (WHERE u.outcome = 'ok'), 0)::bigint,
			coalesce(sum(u.bytes) FILTER (WHERE u.outcome = 'ok'), 0)::bigint
		FROM `+s+`.runs r LEFT JOIN `+s+`.units u ON u.run_id = r.id
		WHERE $1::text = '' OR r.id = $1
		GROUP BY r.id ORDER BY r.started DESC, r.id DESC LIMIT $2`, sq.Run, limit)
	if err != nil {
		return nil, fmt.Errorf("destination: ledger: runs: %w", err)
	}
	defer rows.Close()
	out := []RunSummary{}
	for rows.Next() {
		var r RunSummary
		if err := rows.Scan(&r.ID, &r.Started, &r.Finished, &r.Host, &r.PID, &r.Version, &r.Units, &r.Skipped, &r.Outcome,
			&r.OK, &r.Failed, &r.Rows, &r.Bytes); err != nil {
			return nil, fmt.Errorf("destination: ledger: runs: %w", err)
		}
		switch {
		case r.Outcome != "":
		case held[runLockKey(schema, r.ID)]:
			r.Outcome = "running"
		default:
			r.Outcome = "died"
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("destination: ledger: runs: %w", err)
	}
	if sq.Run != "" && len(out) == 0 {
		return nil, &NoRunError{Run: sq.Run, Schema: schema}
	}
	return out, nil
}

// NoRunError says status was asked about a run the ledger does not hold.
type NoRunError struct {
	Run    string
	Schema string
}

func (e *NoRunError) Error() string {
	return fmt.Sprintf("destination: the ledger in schema %s has no run %q", quote(e.Schema), e.Run)
}

// advisoryLocks are the advisory locks (of one bigint key) held in this
// database now: runs' own locks and claims.
func advisoryLocks(ctx context.Context, q Querier) (map[int64]bool, error) {
	rows, err := q.Query(ctx, `SELECT (l.classid::bigint << 32) | l.objid::bigint FROM pg_catalog.pg_locks l
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]bool{}
	for rows.Next() {
		var key int64
		if err := rows.Scan(&key); err != nil {
			return nil, err
		}
		out[key] = true
	}
	return out, rows.Err()
}

// unitsOf lists the units attempted in the runs where says, in the order
// of their first attempt, with their latest names.
func unitsOf(ctx context.Context, q Querier, s, where string, arg string) ([]Unit, error) {
	rows, err := q.Query(ctx, `SELECT unit_key, (array_agg(unit ORDER BY id DESC))[1] FROM `+s+`.units `+where+`
		GROUP BY unit_key ORDER BY min(id)`, arg)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	units := []Unit{}
	for rows.Next() {
		var u Unit
		if err := rows.Scan(&u.Key, &u.Name); err != nil {
			return nil, err
		}
		units = append(units, u)
	}
	return units, rows.Err()
}

// unitStates judges each unit by its latest attempt, as a run's resume
// would (trusting count or checksum verification).
func unitStates(ctx context.Context, q Querier, schema string, units []Unit, since time.Duration, hasEmptied bool) ([]UnitState, error) {
	s := quote(schema)
	keys := make([]string, len(units))
	tables := make([][]uint32, len(units))
	for i, u := range units {
		keys[i] = u.Key
		if hasEmptied {
			tables[i] = u.Tables
		}
	}
	emptiedBy, err := emptied(ctx, q, s, tables)
	if err != nil {
		return nil, fmt.Errorf("destination: ledger: %w", err)
	}
	last, err := latest(ctx, q, s, keys)
	if err != nil {
		return nil, fmt.Errorf("destination: ledger: %w", err)
	}
	verified, err := latestWhere(ctx, q, s, keys, "u.outcome = 'ok' AND u.verify IN ('checksum', 'count')")
	if err != nil {
		return nil, fmt.Errorf("destination: ledger: %w", err)
	}
	failure, err := latestWhere(ctx, q, s, keys, "u.outcome <> 'ok'")
	if err != nil {
		return nil, fmt.Errorf("destination: ledger: %w", err)
	}
	var cutoff *time.Time
	if since > 0 {
		var now time.Time
		if err := q.QueryRow(ctx, "SELECT pg_catalog.now()").Scan(&now); err != nil {
			return nil, fmt.Errorf("destination: ledger: %w", err)
		}
		c := now.Add(-since)
		cutoff = &c
	}
	claims, err := claimsHeld(ctx, q, s)
	if err != nil {
		return nil, fmt.Errorf("destination: ledger: claims: %w", err)
	}
	out := make([]UnitState, len(units))
	for i, u := range units {
		st := UnitState{Unit: u.Name, Verified: verified[i], LastFailure: failure[i], InFlight: claims[ClaimKey(schema, u.Key)]}
		want := Want{Shape: u.Shape, Emptied: emptiedBy[i]}
		if u.Shape == "" && last[i] != nil {
			want.Shape = last[i].Shape
		}
		for _, a := range u.After {
			if verified[a] != nil {
				want.After = append(want.After, verified[a].ID)
			}
		}
		ok, why := trusted(last[i], want, "count", cutoff)
		switch r := last[i]; {
		case ok:
			st.State = StateVerified
		case r == nil:
			st.State = StateNever
		case r.Outcome == OutcomeFailed || r.Outcome == OutcomeMismatch:
			st.State, st.Why = StateFailed, why
		default:
			st.State, st.Why = StateIncomplete, why
		}
		out[i] = st
	}
	return out, nil
}

// claimsHeld maps the claim keys held now in this database to the run
// holding each (by its ledger connection's backend).
func claimsHeld(ctx context.Context, q Querier, s string) (map[int64]string, error) {
	rows, err := q.Query(ctx, `SELECT (l.classid::bigint << 32) | l.objid::bigint, coalesce(r.id, '')
		FROM pg_catalog.pg_locks l
		LEFT JOIN `+s+`.runs r ON r.backend_pid = l.pid AND r.finished IS NULL
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]string{}
	for rows.Next() {
		var key int64
		var run string
		if err := rows.Scan(&key, &run); err != nil {
			return nil, err
		}
		if run != "" {
			out[key] = run
		}
	}
	return out, rows.Err()
}
