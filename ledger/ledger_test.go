package ledger

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"lockstep/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, dsn string) func(context.Context) (*pgx.Conn, error) {
	return func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, dsn) }
}

// open opens a ledger for one run on a new connection to dsn.
func open(t *testing.T, dsn string, cfg Config) (*Ledger, error) {
	t.Helper()
	ctx := testCtx(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	l := New(cfg)
	if err := l.Open(ctx, conn, dial(t, dsn), RunInfo{ID: runID(), Units: 1, Verify: "checksum"}); err != nil {
		return nil, err
	}
	t.Cleanup(func() { l.Close(context.Background(), OutcomeOK, 0) })
	return l, nil
}

// runID is a run id unique within the test binary (the real ones come from
// copy.NewRunID, which this package does not import).
func runID() string { return fmt.Sprintf("run-%d", runSeq.Add(1)) }

var runSeq atomic.Int64

func mustOpen(t *testing.T, dsn string, cfg Config) *Ledger {
	t.Helper()
	l, err := open(t, dsn, cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return l
}

// A ledger made by an older lockstep (version 1, with a run and a unit in
// it) is upgraded in place, its rows kept; a ledger newer than this
// lockstep is refused, naming both versions, and left as it is.
func TestLedgerUpgradesOlderRefusesNewer(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Get(t).Dest.NewDB(t)
	ctx := testCtx(t)
	conn := pgtest.Connect(t, dsn)
	if err := setup(ctx, conn, DefaultSchema, 1, "older"); err != nil {
		t.Fatalf("version 1: %v", err)
	}
	pgtest.Exec(t, dsn, `INSERT INTO lockstep.runs (id, host, pid, lockstep_version, options, units) VALUES ('old-run', 'old', 1, 'older', '{}', 1);
		INSERT INTO lockstep.units (run_id, unit_key, unit, source_relation, dest_relation, outcome, verify, attempt, shape)
		VALUES ('old-run', 'k', 'k', 's', 'd', 'ok', 'checksum', 1, 'x')`)
	if got := pgtest.QueryString(t, dsn, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'lockstep' AND indexname = 'units_latest'"); got != "0" {
		t.Fatalf("version 1 has the index of version 2")
	}
	l := mustOpen(t, dsn, Config{})
	if got := pgtest.QueryString(t, dsn, "SELECT version || ' ' || by_lockstep FROM lockstep.version"); got != fmt.Sprintf("%d %s", Version, LockstepVersion()) {
		t.Errorf("after the upgrade: version %s, want %d", got, Version)
	}
	if got := pgtest.QueryString(t, dsn, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'lockstep' AND indexname = 'units_latest'"); got != "1" {
		t.Errorf("the upgrade did not add the index")
	}
	recs, err := l.Latest(ctx, []string{"k", "nope"})
	if err != nil || recs[0] == nil || recs[0].Host != "old" || recs[1] != nil {
		t.Fatalf("the older run's unit after the upgrade: %+v, %v", recs, err)
	}

	pgtest.Exec(t, dsn, fmt.Sprintf("UPDATE lockstep.version SET version = %d", Version+1))
	before := pgtest.QueryString(t, dsn, "SELECT count(*) FROM lockstep.runs")
	_, err = open(t, dsn, Config{})
	var newer *NewerError
	if !errors.As(err, &newer) || !strings.Contains(err.Error(), fmt.Sprintf(`schema "lockstep" is at version %d, newer than this lockstep knows (%d): upgrade lockstep`, Version+1, Version)) {
		t.Fatalf("a newer ledger: %v", err)
	}
	if got := pgtest.QueryString(t, dsn, "SELECT count(*) FROM lockstep.runs"); got != before {
		t.Errorf("a refused ledger was written to: %s runs, was %s", got, before)
	}
	if _, err := ReadStatus(ctx, conn, DefaultSchema, StatusQuery{Runs: 10}); !errors.As(err, &newer) {
		t.Errorf("status of a newer ledger: %v", err)
	}
}

// A role that may not create a schema in the database gets an error that
// names the privilege and how to grant it, and nothing is created; once
// the schema exists and is the role's, it needs nothing more.
func TestLedgerNeedsCreateOnTheDatabase(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Get(t).Dest.NewDB(t)
	role := fmt.Sprintf("nocreate_%d", time.Now().UnixNano())
	pgtest.Exec(t, dsn, "CREATE ROLE "+role+" LOGIN PASSWORD 'pw'")
	t.Cleanup(func() { pgtest.Exec(t, dsn, "DROP OWNED BY "+role+"; DROP ROLE "+role) })
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, "pw")
	as := u.String()
	_, err = open(t, as, Config{})
	var pe *PrivilegeError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), `destination: ledger schema "lockstep": it does not exist, and role "`+role+`" may not create it: that needs the CREATE privilege on database`) ||
		!strings.Contains(err.Error(), "GRANT CREATE ON DATABASE") || !strings.Contains(err.Error(), "--ledger none") {
		t.Fatalf("no CREATE on the database: %v", err)
	}
	if got := pgtest.QueryString(t, dsn, "SELECT count(*) FROM pg_namespace WHERE nspname = 'lockstep'"); got != "0" {
		t.Fatal("the schema was created anyway")
	}
	pgtest.Exec(t, dsn, "CREATE SCHEMA lockstep AUTHORIZATION "+role)
	mustOpen(t, as, Config{})
}

// Any schema name works, quotes and spaces included.
func TestLedgerOddSchemaName(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Get(t).Dest.NewDB(t)
	const schema = `my "run" ledger; DROP TABLE x`
	l := mustOpen(t, dsn, Config{Schema: schema})
	if got := pgtest.QueryString(t, dsn, "SELECT count(*) FROM pg_tables WHERE schemaname = $1", schema); got != "3" {
		t.Fatalf("tables in %q: %s", schema, got)
	}
	ctx := testCtx(t)
	if ok, rec, err := l.Claim(ctx, "u"); !ok || rec != nil || err != nil {
		t.Fatalf("claim: %v %v %v", ok, rec, err)
	}
	sql, args := l.Success(&Attempt{Key: "u", Unit: "u", Source: "s", Dest: "d", Verify: "checksum", Attempt: 1, Shape: "x"})
	if _, err := pgtest.Connect(t, dsn).Exec(ctx, sql, args...); err != nil {
		t.Fatalf("success row: %v", err)
	}
	st, err := ReadStatus(ctx, pgtest.Connect(t, dsn), schema, StatusQuery{Runs: 5, Run: l.RunID()})
	if err != nil || len(st.Units) != 1 || st.Units[0].State != StateVerified || st.Runs[0].Outcome != "running" {
		t.Fatalf("status: %+v %v", st, err)
	}
}

// A claim is held by one ledger connection at a time, is given up by
// Release, and vanishes with the connection; the record read with a claim
// is read after it was taken.
func TestClaims(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Get(t).Dest.NewDB(t)
	ctx := testCtx(t)
	a, b := mustOpen(t, dsn, Config{}), mustOpen(t, dsn, Config{})
	if ok, _, err := a.Claim(ctx, "u"); !ok || err != nil {
		t.Fatalf("a: %v %v", ok, err)
	}
	if ok, _, err := b.Claim(ctx, "u"); ok || err != nil {
		t.Fatalf("b got a claim a holds: %v %v", ok, err)
	}
	if ok, _, err := b.Claim(ctx, "v"); !ok || err != nil {
		t.Fatalf("b, another unit: %v %v", ok, err)
	}
	// a records a copy of u, then gives it up: b's claim sees the copy.
	sql, args := a.Success(&Attempt{Key: "u", Unit: "u", Source: "s", Dest: "d", Verify: "checksum", Attempt: 1, Shape: "x"})
	if _, err := pgtest.Connect(t, dsn).Exec(ctx, sql, args...); err != nil {
		t.Fatal(err)
	}
	a.Release(ctx, "u")
	ok, rec, err := b.Claim(ctx, "u")
	if !ok || err != nil || rec == nil || rec.Run != a.RunID() || rec.Outcome != OutcomeOK {
		t.Fatalf("b after a released: %v %+v %v", ok, rec, err)
	}
	if trusted, why := b.Trusted(rec, Want{Shape: "x"}); !trusted {
		t.Errorf("b does not trust a's copy: %s", why)
	}
	// b's connection dies: its claims go with it.
	pgtest.Exec(t, dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = (SELECT backend_pid FROM lockstep.runs WHERE id = $1)", b.RunID())
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, _, err := a.Claim(ctx, "v")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the claim outlived its connection")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// b reconnects on its next use, and takes its run's lock again.
	if ok, _, err := b.Claim(ctx, "w"); !ok || err != nil {
		t.Fatalf("b after losing its connection: %v %v", ok, err)
	}
	st, err := ReadStatus(ctx, pgtest.Connect(t, dsn), DefaultSchema, StatusQuery{Run: b.RunID(), Runs: 1})
	if err != nil || st.Runs[0].Outcome != "running" {
		t.Fatalf("b after reconnecting: %+v %v", st, err)
	}
}

func TestTrusted(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ok := func(mod func(*Record)) *Record {
		r := &Record{ID: 10, Outcome: OutcomeOK, Verify: "checksum", Shape: "s", Finished: now}
		if mod != nil {
			mod(r)
		}
		return r
	}
	earlier := now.Add(-time.Hour)
	cases := []struct {
		name   string
		rec    *Record
		want   Want
		verify string
		cutoff *time.Time
		trust  bool
		why    string
	}{
		{"verified copy", ok(nil), Want{Shape: "s"}, "checksum", nil, true, ""},
		{"never copied", nil, Want{Shape: "s"}, "checksum", nil, false, "never copied"},
		{"failed", ok(func(r *Record) { r.Outcome = OutcomeFailed }), Want{Shape: "s"}, "checksum", nil, false, "its latest attempt failed"},
		{"interrupted", ok(func(r *Record) { r.Outcome = OutcomeInterrupted }), Want{Shape: "s"}, "checksum", nil, false, "interrupted"},
		{"counted, run checks sums", ok(func(r *Record) { r.Verify = "count" }), Want{Shape: "s"}, "checksum", nil, false, "--verify count"},
		{"summed, run counts", ok(nil), Want{Shape: "s"}, "count", nil, true, ""},
		{"unverified, run unverified", ok(func(r *Record) { r.Verify = "none" }), Want{Shape: "s"}, "none", nil, true, ""},
		{"shape changed", ok(nil), Want{Shape: "t"}, "checksum", nil, false, "columns changed"},
		{"too old", ok(func(r *Record) { r.Finished = earlier }), Want{Shape: "s"}, "checksum", &now, false, "copied before"},
		{"young enough", ok(nil), Want{Shape: "s"}, "checksum", &earlier, true, ""},
		{"a predecessor copied after it", ok(nil), Want{Shape: "s", After: []int64{5, 11}}, "checksum", nil, false, "must follow"},
		{"predecessors copied before it", ok(nil), Want{Shape: "s", After: []int64{5, 9}}, "checksum", nil, true, ""},
	}
	for _, c := range cases {
		trust, why := trusted(c.rec, c.want, c.verify, c.cutoff)
		if trust != c.trust || !strings.Contains(why, c.why) {
			t.Errorf("%s: trusted %v (%s), want %v (%s)", c.name, trust, why, c.trust, c.why)
		}
	}
}

// Processes that start at once set the ledger up one after the other,
// whatever isolation level the database gives transactions by default:
// the one that waited sees the ledger the other created.
func TestLedgerSetUpAtOnce(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Get(t).Dest.NewDB(t)
	ctx := testCtx(t)
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			schema := "ledger_" + strings.ReplaceAll(level, " ", "_")
			pgtest.Exec(t, dsn, fmt.Sprintf("ALTER DATABASE %s SET default_transaction_isolation = '%s'",
				pgtest.QueryString(t, dsn, "SELECT quote_ident(current_database())"), level))
			// Both wait for the setup lock, which the test holds, and
			// then run one after the other.
			holder := pgtest.Connect(t, dsn)
			if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", key64(schema, "setup")); err != nil {
				t.Fatal(err)
			}
			errs := make(chan error, 2)
			for range 2 {
				go func() {
					conn, err := pgx.Connect(ctx, dsn)
					if err == nil {
						l := New(Config{Schema: schema})
						if err = l.Open(ctx, conn, dial(t, dsn), RunInfo{ID: runID(), Units: 1, Verify: "checksum"}); err == nil {
							t.Cleanup(func() { l.Close(context.Background(), OutcomeOK, 0) })
						}
					}
					errs <- err
				}()
			}
			for pgtest.QueryString(t, dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") != "2" {
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock($1)", key64(schema, "setup")); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if err := <-errs; err != nil {
					t.Errorf("open: %v", err)
				}
			}
			if got := pgtest.QueryString(t, dsn, fmt.Sprintf("SELECT count(*) FROM %s.runs", quote(schema))); got != "2" {
				t.Errorf("%s runs recorded, want 2", got)
			}
		})
	}
}
