package copy_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"lockstep/copy"
	"lockstep/internal/pgtest"
	"lockstep/ledger"
)

// withLedger gives o a ledger of its own (a ledger serves one run).
func withLedger(o copy.Options, cfg ledger.Config) copy.Options {
	o.Ledger = ledger.New(cfg)
	return o
}

// statuses lists each unit's status, by name.
func statuses(rep *copy.Report) string {
	var s []string
	for _, u := range rep.Units {
		s = append(s, fmt.Sprintf("%s=%s", u.Unit, u.Status))
	}
	return strings.Join(s, " ")
}

// run copies o (which may fail) and returns its report.
func run(t *testing.T, o copy.Options) *copy.Report {
	t.Helper()
	rep, err := copy.Run(testCtx(t), o)
	if rep == nil {
		t.Fatalf("no report: %v", err)
	}
	return rep
}

// The unit's success row is inserted in its destination transaction, in
// the COMMIT's round trip: whatever fails between the load and the commit
// (a deferred trigger on the ledger or on the data; the insert itself)
// leaves neither the data nor the row, and the failure is recorded after
// the rollback. A unit that commits has its row, with its figures.
func TestLedgerRowCommitsWithTheData(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE TABLE seed (id int); CREATE TABLE t (id int PRIMARY KEY, v text);`
	mustExec(t, src, schema+`INSERT INTO seed VALUES (1); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g;`)
	mustExec(t, dst, schema+`INSERT INTO t VALUES (-1, 'before');
		CREATE FUNCTION no() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '% says no', TG_ARGV[0]; END $$;`)
	mustCopy(t, withLedger(opts(src, dst, "seed"), ledger.Config{})) // creates the ledger
	before := dump(t, dst, "t", "*", "id")
	okRows := func() string {
		return pgtest.QueryString(t, dst, `SELECT count(*) FROM lockstep.units WHERE unit_key = '"public"."t"' AND outcome = 'ok'`)
	}
	faults := []struct{ name, sql, says string }{
		{"deferred trigger on the ledger", `CREATE CONSTRAINT TRIGGER fault AFTER INSERT ON lockstep.units DEFERRABLE INITIALLY DEFERRED
			FOR EACH ROW WHEN (NEW.outcome = 'ok') EXECUTE FUNCTION no('the ledger at commit')`, "the ledger at commit says no"},
		{"deferred trigger on the data", `CREATE CONSTRAINT TRIGGER fault AFTER INSERT ON t DEFERRABLE INITIALLY DEFERRED
			FOR EACH ROW WHEN (NEW.id = 500) EXECUTE FUNCTION no('the data at commit')`, "the data at commit says no"},
		{"the insert fails", `CREATE TRIGGER fault BEFORE INSERT ON lockstep.units
			FOR EACH ROW WHEN (NEW.outcome = 'ok') EXECUTE FUNCTION no('the insert')`, "the insert says no"},
	}
	for i, f := range faults {
		mustExec(t, dst, f.sql)
		o := withLedger(opts(src, dst, "t"), ledger.Config{})
		o.RunID = fmt.Sprintf("fault-%d", i)
		rep := run(t, o)
		u := rep.Units[0]
		if u.Status != copy.StatusFailed || !strings.Contains(u.Error, f.says) {
			t.Errorf("%s: %s: %s", f.name, u.Status, u.Error)
		}
		if got := dump(t, dst, "t", "*", "id"); got != before {
			t.Errorf("%s: the destination's data committed without its record", f.name)
		}
		if n := okRows(); n != "0" {
			t.Errorf("%s: %s success rows without the data", f.name, n)
		}
		failed := pgtest.QueryString(t, dst, `SELECT coalesce(string_agg(error, '; '), '') FROM lockstep.units
			WHERE unit_key = '"public"."t"' AND outcome = 'failed' AND run_id = $1`, o.RunID)
		if !strings.Contains(failed, f.says) {
			t.Errorf("%s: the failure is not recorded: %q", f.name, failed)
		}
		mustExec(t, dst, "DROP TRIGGER fault ON "+strings.Fields(f.sql[strings.Index(f.sql, " ON ")+4:])[0])
	}
	o := withLedger(opts(src, dst, "t"), ledger.Config{})
	o.RunID = "the-good-run"
	rep := mustCopy(t, o)
	u := rep.Units[0]
	assertSame(t, src, dst, "t", "*", "id")
	row := pgtest.QueryString(t, dst, `SELECT rows || ' ' || checksum || ' ' || (dest_xid IS NOT NULL) || ' ' || run_id FROM lockstep.units
		WHERE unit_key = '"public"."t"' AND outcome = 'ok'`)
	if want := fmt.Sprintf("1000 %s true %s", u.Checksum, o.RunID); row != want {
		t.Errorf("success row %q, want %q", row, want)
	}
}

// A run skips the units whose latest record is a verified copy of their
// current shape, and copies the others again: never copied, failed,
// changed shape (either side), older than --since, every unit with
// --redo, and a unit whose predecessor is copied again (its copy empties
// it).
func TestResumeSkipsVerifiedUnits(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY);
		CREATE TABLE customer (id int PRIMARY KEY, name text);
		CREATE TABLE payment (id int, cid int NOT NULL REFERENCES customer, PRIMARY KEY (id)) PARTITION BY RANGE (id);
		CREATE TABLE payment_1 PARTITION OF payment FOR VALUES FROM (0) TO (100);
		CREATE TABLE payment_2 PARTITION OF payment FOR VALUES FROM (100) TO (200);`
	mustExec(t, src, schema+`INSERT INTO a SELECT generate_series(1, 10); INSERT INTO b SELECT generate_series(1, 20);
		INSERT INTO c SELECT generate_series(1, 30); INSERT INTO customer SELECT g, 'c' || g FROM generate_series(1, 5) g;
		INSERT INTO payment SELECT g, 1 + g % 5 FROM generate_series(0, 199) g;`)
	mustExec(t, dst, schema)
	base := opts(src, dst, "a", "b", "c", "customer", "payment")
	base.Order = "name"
	ctx := testCtx(t)
	runs := 0
	runWith := func(cfg ledger.Config, want string) *copy.Report {
		t.Helper()
		runs++
		o := withLedger(base, cfg)
		o.RunID = fmt.Sprintf("run-%d", runs)
		p, err := copy.MakePlan(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		rep, _ := p.Execute(ctx)
		if got := statuses(rep); got != want {
			t.Fatalf("units:\n%s\nwant\n%s", got, want)
		}
		if n, _, _ := p.Resumed(); n != rep.Skipped {
			t.Errorf("resumed %d, skipped %d", n, rep.Skipped)
		}
		return rep
	}
	all := func(status copy.Status) string {
		return strings.NewReplacer("S", string(status)).Replace(`"public"."a"=S "public"."b"=S "public"."c"=S "public"."customer"=S "public"."payment_1"=S "public"."payment_2"=S`)
	}
	runWith(ledger.Config{}, all(copy.StatusOK))
	rep := runWith(ledger.Config{}, all(copy.StatusSkipped))
	if !strings.Contains(rep.Units[0].Note, "verified by run run-1 on ") {
		t.Errorf("skipped unit's note: %q", rep.Units[0].Note)
	}
	// A shape change on either side.
	mustExec(t, dst, "ALTER TABLE b ADD COLUMN note text")
	mustExec(t, src, "ALTER TABLE c ALTER COLUMN id TYPE bigint")
	mustExec(t, dst, "ALTER TABLE c ALTER COLUMN id TYPE bigint")
	runWith(ledger.Config{}, `"public"."a"=skipped "public"."b"=ok "public"."c"=ok "public"."customer"=skipped "public"."payment_1"=skipped "public"."payment_2"=skipped`)
	// A table dropped and created again on the destination (empty, same
	// columns) is another table: copied again.
	mustExec(t, dst, "DROP TABLE a; CREATE TABLE a (id int PRIMARY KEY)")
	runWith(ledger.Config{}, `"public"."a"=ok "public"."b"=skipped "public"."c"=skipped "public"."customer"=skipped "public"."payment_1"=skipped "public"."payment_2"=skipped`)
	if count(t, dst, "a") != 10 {
		t.Fatal("the recreated table was not copied")
	}
	// A failure is copied again by the next run.
	mustExec(t, dst, `CREATE FUNCTION no() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no'; END $$;
		CREATE TRIGGER no BEFORE INSERT ON a FOR EACH ROW EXECUTE FUNCTION no();`)
	runWith(ledger.Config{Redo: true}, strings.Replace(all(copy.StatusOK), `"public"."a"=ok`, `"public"."a"=failed`, 1))
	mustExec(t, dst, "DROP TRIGGER no ON a")
	runWith(ledger.Config{}, strings.Replace(all(copy.StatusSkipped), `"public"."a"=skipped`, `"public"."a"=ok`, 1))
	// --since trusts young copies only: every copy but a's is made an hour
	// older.
	mustExec(t, dst, `UPDATE lockstep.units SET finished = finished - interval '1 hour' WHERE unit <> '"public"."a"'`)
	runWith(ledger.Config{Since: 30 * time.Minute}, strings.Replace(all(copy.StatusOK), `"public"."a"=ok`, `"public"."a"=skipped`, 1))
	// The customer unit truncates payment: copying it again (its columns
	// changed) copies the partitions again, verified or not.
	mustExec(t, dst, "ALTER TABLE customer ADD COLUMN note text")
	runWith(ledger.Config{}, `"public"."a"=skipped "public"."b"=skipped "public"."c"=skipped "public"."customer"=ok "public"."payment_1"=ok "public"."payment_2"=ok`)
	for _, table := range []string{"a", "b", "c", "customer", "payment"} {
		if a, b := count(t, src, table), count(t, dst, table); a != b {
			t.Errorf("%s: %d rows on the source, %d on the destination", table, a, b)
		}
	}
}

// A unit another live run holds is put back at the end of the queue; when
// its claim is free again and the other run copied it meanwhile, it is
// skipped. Two runs started on one selection copy each unit once between
// them.
func TestClaimedUnitIsLeftToTheOtherRun(t *testing.T) {
	t.Parallel()
	// The first run's copy of big waits, at its first row, for an
	// advisory lock the test holds.
	f := newFixture(t, `CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.id = 1 THEN PERFORM pg_advisory_xact_lock_shared(4242); END IF; RETURN NEW; END $$;
		CREATE TRIGGER hold BEFORE INSERT ON big FOR EACH ROW EXECUTE FUNCTION hold();`)
	mustExec(t, f.src, `CREATE TABLE t2 (id int PRIMARY KEY); INSERT INTO t2 SELECT generate_series(1, 100);
		CREATE TABLE t3 (id int PRIMARY KEY); INSERT INTO t3 SELECT generate_series(1, 100);`)
	mustExec(t, f.dst, `CREATE TABLE t2 (id int PRIMARY KEY); CREATE TABLE t3 (id int PRIMARY KEY);`)
	ctx := testCtx(t)
	holder := connect(t, f.dst)
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock(4242)"); err != nil {
		t.Fatal(err)
	}
	o := opts(f.src, f.dst, "big", "t2", "t3")
	o.Order = "name" // big first
	o.RunID = "first"
	first := start(ctx, withLedger(o, ledger.Config{}))
	waitFor(t, "the first run's copy of big to wait", func() bool {
		return pgtest.QueryString(t, f.dst, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = 4242") != "0"
	})
	o.RunID = "second"
	second := start(ctx, withLedger(o, ledger.Config{}))
	waitFor(t, "the second run to copy t2 and t3", func() bool {
		return pgtest.QueryString(t, f.dst, `SELECT count(*) FROM lockstep.units WHERE outcome = 'ok'
			AND unit IN ('"public"."t2"', '"public"."t3"')`) == "2"
	})
	if got := pgtest.QueryString(t, f.dst, "SELECT count(*) FROM lockstep.units WHERE unit = '\"public\".\"big\"'"); got != "0" {
		t.Fatalf("big was attempted %s times while the first run held it", got)
	}
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock(4242)"); err != nil {
		t.Fatal(err)
	}
	a, b := <-first, <-second
	if a.err != nil || b.err != nil {
		t.Fatalf("first: %v\nsecond: %v", a.err, b.err)
	}
	if got := statuses(a.rep); got != `"public"."big"=ok "public"."t2"=skipped "public"."t3"=skipped` {
		t.Errorf("first run: %s", got)
	}
	if got := statuses(b.rep); got != `"public"."big"=skipped "public"."t2"=ok "public"."t3"=ok` {
		t.Errorf("second run: %s", got)
	}
	if n := b.rep.Units[0].Note; !strings.Contains(n, "copied and verified by run first on ") {
		t.Errorf("second run's note on big: %q", n)
	}
	if got := pgtest.QueryString(t, f.dst, "SELECT string_agg(unit || ':' || n, ' ' ORDER BY unit) FROM (SELECT unit, count(*) n FROM lockstep.units WHERE outcome = 'ok' GROUP BY unit) x"); got != `"public"."big":1 "public"."t2":1 "public"."t3":1` {
		t.Errorf("copies: %s", got)
	}
	if got := digest(t, f.dst); got != f.srcBefore {
		t.Errorf("big: %s, want %s", got, f.srcBefore)
	}
}

// A destination COMMIT whose answer is lost is re-checked by the
// transaction's status and by the ledger: the success row is there.
// One that never arrived is rolled back: no success row, and the failure
// recorded.
func TestLostCommitRecheckReadsTheLedger(t *testing.T) {
	t.Parallel()
	t.Run("answer lost", func(t *testing.T) {
		t.Parallel()
		f := newNetFixture(t, "")
		cut := f.dp.CutAfter(pgtest.IsStatement("COMMIT"))
		rep := mustCopy(t, withLedger(f.opts(), ledger.Config{}))
		within(t, cut, time.Second, "the cut COMMIT")
		u := rep.Units[0]
		if !u.Uncertain || !strings.Contains(u.Note, "committed, and the ledger holds its row") {
			t.Fatalf("uncertain=%v note=%q", u.Uncertain, u.Note)
		}
		if n := pgtest.QueryString(t, f.dst, "SELECT count(*) FROM lockstep.units WHERE outcome = 'ok'"); n != "1" {
			t.Errorf("%s success rows", n)
		}
		assertUnlocked(t, f.src, "source")
	})
	t.Run("never arrived", func(t *testing.T) {
		t.Parallel()
		f := newNetFixture(t, "")
		cut := f.dp.CutBefore(pgtest.IsStatement("COMMIT"))
		rep, err := copy.Run(testCtx(t), withLedger(f.opts(), ledger.Config{}))
		within(t, cut, time.Second, "the swallowed COMMIT")
		oneFailed(t, runResult{rep, err, time.Now()}, copy.StatusFailed, asBefore)
		f.assertUntouched(t)
		if got := pgtest.QueryString(t, f.dst, "SELECT string_agg(outcome, ' ') FROM lockstep.units"); got != "failed" {
			t.Errorf("ledger rows: %s", got)
		}
	})
}

// A unit that truncates a partitioned table whose partitions follow it,
// and whose COMMIT's answer is lost but re-checked as committed, emptied
// those partitions: they are copied again, not skipped for their older
// records.
func TestLostCommitOfATruncatingUnitCopiesItsFollowers(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE TABLE customer (id int PRIMARY KEY, name text);
		CREATE TABLE payment (id int, cid int NOT NULL REFERENCES customer, PRIMARY KEY (id)) PARTITION BY RANGE (id);
		CREATE TABLE payment_1 PARTITION OF payment FOR VALUES FROM (0) TO (100);
		CREATE TABLE payment_2 PARTITION OF payment FOR VALUES FROM (100) TO (200);`
	mustExec(t, src, schema+`INSERT INTO customer SELECT g, 'c' || g FROM generate_series(1, 5) g;
		INSERT INTO payment SELECT g, 1 + g % 5 FROM generate_series(0, 199) g;`)
	mustExec(t, dst, schema)
	o := opts(src, dst, "customer", "payment")
	o.Order = "name"
	o.RunID = "first"
	mustCopy(t, withLedger(o, ledger.Config{}))
	// customer's columns change on the destination: the next run copies it
	// again, and so empties payment.
	mustExec(t, dst, "ALTER TABLE customer ADD COLUMN note text")
	sp, dp := pgtest.NewProxy(t, src), pgtest.NewProxy(t, dst)
	o = opts(sp.DSN(), dp.DSN(), "customer", "payment")
	o.Order, o.StallTimeout, o.RunID = "name", testStall, "second"
	cut := dp.CutAfter(pgtest.IsStatement("COMMIT"))
	rep, err := copy.Run(testCtx(t), withLedger(o, ledger.Config{}))
	within(t, cut, time.Second, "the cut COMMIT")
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	if u := rep.Units[0]; !u.Uncertain {
		t.Fatalf("%s: not re-checked (note %q)", u.Unit, u.Note)
	}
	if got, want := statuses(rep), `"public"."customer"=ok "public"."payment_1"=ok "public"."payment_2"=ok`; got != want {
		t.Errorf("units: %s, want %s", got, want)
	}
	if n := count(t, dst, "payment"); n != 200 {
		t.Errorf("payment: %d rows on the destination, 200 on the source", n)
	}
}

// A unit of another selection that truncated a partitioned table (its
// group's key is another) empties partitions whose records this
// selection's run would trust: they are copied again.
func TestFollowersTruncatedByAnotherSelectionAreCopiedAgain(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE TABLE address (id int PRIMARY KEY);
		CREATE TABLE customer (id int PRIMARY KEY, aid int REFERENCES address);
		CREATE TABLE payment (id int, cid int NOT NULL REFERENCES customer, PRIMARY KEY (id)) PARTITION BY RANGE (id);
		CREATE TABLE payment_1 PARTITION OF payment FOR VALUES FROM (0) TO (100);
		CREATE TABLE payment_2 PARTITION OF payment FOR VALUES FROM (100) TO (200);`
	mustExec(t, src, schema+`INSERT INTO address SELECT generate_series(1, 5); INSERT INTO customer SELECT g, g FROM generate_series(1, 5) g;
		INSERT INTO payment SELECT g, 1 + g % 5 FROM generate_series(0, 199) g;`)
	mustExec(t, dst, schema+`INSERT INTO address SELECT generate_series(1, 5);
		CREATE FUNCTION no() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no'; END $$;`)
	ctx := testCtx(t)
	runWith := func(id string, o copy.Options) string {
		t.Helper()
		o.Order, o.RunID = "name", id
		p, err := copy.MakePlan(ctx, withLedger(o, ledger.Config{}))
		if err != nil {
			t.Fatal(err)
		}
		rep, _ := p.Execute(ctx)
		return statuses(rep)
	}
	one := opts(src, dst, "customer", "payment")
	if got := runWith("one", one); got != `"public"."customer"=ok "public"."payment_1"=ok "public"."payment_2"=ok` {
		t.Fatalf("first run: %s", got)
	}
	// Another selection: address and customer are one unit, which
	// truncates payment; payment_1 fails, and --fail-fast leaves payment_2
	// empty on the destination.
	mustExec(t, dst, "CREATE TRIGGER no BEFORE INSERT ON payment_1 FOR EACH ROW EXECUTE FUNCTION no()")
	two := opts(src, dst, "address", "customer", "payment")
	two.FailFast = true
	if got := runWith("two", two); !strings.Contains(got, `"public"."payment_1"=failed "public"."payment_2"=not started`) {
		t.Fatalf("second run: %s", got)
	}
	mustExec(t, dst, "DROP TRIGGER no ON payment_1")
	// So does status, for this selection and for one of the partition
	// alone (a unit that follows nothing).
	for _, o := range []copy.Options{one, opts(src, dst, "payment_2")} {
		st, err := copy.ReadStatus(ctx, o, ledger.DefaultSchema, ledger.StatusQuery{Runs: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range st.Units {
			if u.Unit == `"public"."payment_2"` && u.State == ledger.StateVerified {
				t.Errorf("status of %v: payment_2 verified, but the destination holds none of its rows", o.Selection.Tables)
			}
		}
	}
	got := runWith("three", one)
	if n := count(t, dst, "payment"); n != 200 {
		t.Errorf("payment: %d rows on the destination, 200 on the source (units: %s)", n, got)
	}
}
