package copy_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"lockstep/copy"
	"lockstep/internal/pgtest"
	"lockstep/ledger"
	"lockstep/partition"
	"lockstep/verify"
)

// A referenced table and the tables that reference it.
const fkSchema = `
CREATE TABLE parent (id int PRIMARY KEY, name text);
CREATE TABLE child_a (id int PRIMARY KEY, pid int NOT NULL REFERENCES parent, v text);
CREATE TABLE child_b (id int PRIMARY KEY, pid int REFERENCES parent, up int REFERENCES child_b, v text);`

const fkRows = `
INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 200) g;
INSERT INTO child_a SELECT g, 1 + g % 200, 'a' || g FROM generate_series(1, 3000) g;
INSERT INTO child_b SELECT g, 1 + g % 200, CASE WHEN g > 1 THEN g - 1 END, 'b' || g FROM generate_series(1, 3000) g;`

func fkDigest(t *testing.T, dsn string) string {
	t.Helper()
	var parts []string
	for _, table := range []string{"parent", "child_a", "child_b"} {
		parts = append(parts, table+"="+pgtest.QueryString(t, dsn,
			"SELECT count(*) || ':' || md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM "+table+" x"))
	}
	return strings.Join(parts, " ")
}

// Tables tied by foreign keys are one unit: one TRUNCATE of them all, the
// referenced table copied first, one commit point.
func TestGroupCopiesTiedTablesAsOne(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, fkSchema+fkRows)
	mustExec(t, dst, fkSchema+`INSERT INTO parent VALUES (-1, 'stale'); INSERT INTO child_a VALUES (-1, -1, 'stale');`)
	o := opts(src, dst, "child_b", "child_a", "parent")
	p, err := copy.MakePlan(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != 1 {
		t.Fatalf("plan has %d units, want one group", p.Len())
	}
	g := p.PlannedGroup(0)
	if got := strings.Join(g.Tables, " "); got != `"public"."parent" "public"."child_a" "public"."child_b"` ||
		!strings.Contains(g.Why, `"child_a_pid_fkey" on "public"."child_a"`) {
		t.Fatalf("group: %s; why: %s", got, g.Why)
	}
	rep := mustCopy(t, o)
	r := rep.Units[0]
	if len(r.Members) != 3 || r.Rows != 6200 || r.Members[0].Rows != 200 || r.Members[2].Checksum == "" {
		t.Fatalf("result: %+v", r)
	}
	if a, b := fkDigest(t, src), fkDigest(t, dst); a != b {
		t.Fatalf("sides differ:\n%s\n%s", a, b)
	}
}

// A failure in the last member rolls every member back.
func TestGroupFailureInLastMemberRollsBackAll(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, fkSchema+fkRows)
	mustExec(t, dst, fkSchema+`INSERT INTO parent VALUES (-1, 'stale'); INSERT INTO child_a VALUES (-1, -1, 'stale');
		CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.id = 2999 THEN RAISE EXCEPTION 'injected fault in child_b'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER boom BEFORE INSERT ON child_b FOR EACH ROW EXECUTE FUNCTION boom();`)
	srcBefore, dstBefore := fkDigest(t, src), fkDigest(t, dst)
	rep, err := copy.Run(testCtx(t), opts(src, dst, "parent", "child_a", "child_b"))
	if rep == nil || len(rep.Units) != 1 || rep.Units[0].Status != copy.StatusFailed || !strings.Contains(err.Error(), "injected fault in child_b") {
		t.Fatalf("want the group failed by the fault: %v", err)
	}
	for _, m := range rep.Units[0].Members {
		if m.Status != copy.StatusFailed {
			t.Errorf("member %s: %s", m.Unit, m.Status)
		}
	}
	if got := fkDigest(t, dst); got != dstBefore {
		t.Errorf("destination changed:\n%s\nwas\n%s", got, dstBefore)
	}
	if got := fkDigest(t, src); got != srcBefore {
		t.Errorf("source changed")
	}
	for _, table := range []string{"parent", "child_a", "child_b"} {
		assertTableUnlocked(t, src, table)
		assertTableUnlocked(t, dst, table)
	}
}

func assertTableUnlocked(t *testing.T, dsn, table string) {
	t.Helper()
	conn := connect(t, dsn)
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '2s'; LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Errorf("%s still locked: %v", table, err)
	}
}

// While a group runs, a writer to any of its source tables waits, and
// proceeds once the group has committed.
func TestGroupBlocksWritersToEveryMember(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, fkSchema+fkRows)
	// child_b loads slowly on the destination: the group holds its locks a while.
	mustExec(t, dst, fkSchema+`
		CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.id % 300 = 0 THEN PERFORM pg_sleep(0.1); END IF; RETURN NEW; END $$;
		CREATE TRIGGER slow BEFORE INSERT ON child_b FOR EACH ROW EXECUTE FUNCTION slow();`)
	done := start(testCtx(t), opts(src, dst, "parent", "child_a", "child_b"))
	waitFor(t, "child_b loading", func() bool { return copyingRows(t, dst) })
	writer := connect(t, src)
	wrote := make(chan time.Time, 1)
	go func() {
		_, err := writer.Exec(context.Background(), "INSERT INTO child_a VALUES (100000, 1, 'late')")
		if err != nil {
			t.Errorf("insert: %v", err)
		}
		wrote <- time.Now()
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("copy: %v", r.err)
	}
	at := <-wrote
	if at.Before(r.rep.Units[0].Finished.Add(-300 * time.Millisecond)) {
		t.Fatalf("the insert into child_a finished before the group committed")
	}
	if got := count(t, dst, "child_a"); got != 3000 {
		t.Errorf("destination child_a has %d rows, want the snapshot's 3000", got)
	}
}

// Partitions of a partitioned table that reference a group's table are not
// swallowed into the group: the group truncates their parent, and each
// partition is then copied as a unit of its own, after the group.
func TestReferencingPartitionsFollowTheirGroup(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE TABLE customer (id int PRIMARY KEY, name text);
		CREATE TABLE payment (id int, cid int NOT NULL REFERENCES customer, amount numeric, PRIMARY KEY (id)) PARTITION BY RANGE (id);
		CREATE TABLE payment_1 PARTITION OF payment FOR VALUES FROM (0) TO (1000);
		CREATE TABLE payment_2 PARTITION OF payment FOR VALUES FROM (1000) TO (2000);
		CREATE TABLE payment_3 PARTITION OF payment FOR VALUES FROM (2000) TO (3000);`
	mustExec(t, src, schema+`INSERT INTO customer SELECT g, 'c' || g FROM generate_series(1, 50) g;
		INSERT INTO payment SELECT g, 1 + g % 50, g / 10.0 FROM generate_series(0, 2999) g;`)
	mustExec(t, dst, schema+`INSERT INTO customer VALUES (-1, 'stale'); INSERT INTO payment VALUES (5, -1, 0);`)
	o := opts(src, dst, "customer", "payment")
	o.Jobs = 2
	p, err := copy.MakePlan(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != 4 {
		t.Fatalf("plan has %d units, want the customer group and three partitions", p.Len())
	}
	first := p.PlannedGroup(0)
	if first.Unit != `"public"."customer"` || strings.Join(first.Truncate, ",") != `"public"."payment"` ||
		!strings.Contains(first.Why, "copied one by one after it commits") {
		t.Fatalf("first unit: %+v", first)
	}
	for i := 1; i < 4; i++ {
		if g := p.PlannedGroup(i); len(g.After) != 1 || g.After[0] != 0 {
			t.Errorf("unit %s starts after %v, want after the customer unit", g.Unit, g.After)
		}
	}
	rep := mustCopy(t, o)
	for _, u := range rep.Units[1:] {
		if u.Started.Before(rep.Units[0].Finished) {
			t.Errorf("%s started %s before the customer unit committed", u.Unit, rep.Units[0].Finished.Sub(u.Started))
		}
	}
	for _, table := range []string{"customer", "payment"} {
		a := pgtest.QueryString(t, src, "SELECT count(*) || md5(string_agg(x::text, ',' ORDER BY x::text)) FROM "+table+" x")
		if b := pgtest.QueryString(t, dst, "SELECT count(*) || md5(string_agg(x::text, ',' ORDER BY x::text)) FROM "+table+" x"); a != b {
			t.Errorf("%s differs", table)
		}
	}
	// group-strict keeps the partitions in the group: one unit.
	o.FKMode = partition.FKGroupStrict
	if p, err := copy.MakePlan(testCtx(t), o); err != nil || p.Len() != 1 || len(p.PlannedGroup(0).Tables) != 4 {
		t.Fatalf("group-strict: %v", err)
	}
	mustCopy(t, o)
}

// Foreign keys that form a cycle: one group, checked at the commit.
func TestGroupWithDeferrableCycle(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE TABLE a (id int PRIMARY KEY, b_id int);
		CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a DEFERRABLE);
		ALTER TABLE a ADD FOREIGN KEY (b_id) REFERENCES b DEFERRABLE;`
	mustExec(t, src, schema+`BEGIN; SET CONSTRAINTS ALL DEFERRED;
		INSERT INTO a SELECT g, g FROM generate_series(1, 500) g; INSERT INTO b SELECT g, g FROM generate_series(1, 500) g; COMMIT;`)
	mustExec(t, dst, schema)
	rep := mustCopy(t, opts(src, dst, "a", "b"))
	if len(rep.Units) != 1 || count(t, dst, "a") != 500 || count(t, dst, "b") != 500 {
		t.Fatalf("cycle: %+v", rep.Units)
	}
}

// --fk-mode replica copies a referenced table on its own, emptying it with
// DELETE, with foreign-key triggers off; it needs a superuser.
func TestFKModeReplica(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, fkSchema+fkRows)
	mustExec(t, dst, fkSchema+`INSERT INTO parent VALUES (-1, 'stale'); INSERT INTO child_a VALUES (-1, -1, 'stale');`)
	o := opts(src, dst, "parent")
	o.FKMode = partition.FKReplica
	rep := mustCopy(t, o)
	if len(rep.Units) != 1 || count(t, dst, "parent") != 200 || count(t, dst, "child_a") != 1 {
		t.Fatalf("replica: %+v", rep.Units)
	}
	// child_a's stale row now references a parent that is gone: the
	// foreign key was not checked.
	if n := count(t, dst, "child_a c WHERE NOT EXISTS (SELECT 1 FROM parent p WHERE p.id = c.pid)"); n != 1 {
		t.Errorf("orphans: %d", n)
	}
	role := "replica_nosuper"
	mustExec(t, dst, "CREATE ROLE "+role+" LOGIN PASSWORD 'pw'; GRANT ALL ON ALL TABLES IN SCHEMA public TO "+role)
	t.Cleanup(func() { mustExec(t, dst, "DROP OWNED BY "+role+"; DROP ROLE "+role) })
	o.Dest = withUser(t, dst, role, "pw")
	_, err := copy.Run(testCtx(t), o)
	var bad *copy.BadInputError
	if !errors.As(err, &bad) || !strings.Contains(err.Error(), "--fk-mode replica") || !strings.Contains(err.Error(), "superuser") {
		t.Fatalf("non-superuser: %v", err)
	}
}

func withUser(t *testing.T, dsn, user, pw string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, pw)
	return u.String()
}

// After a --fk-mode replica copy, --check-fks counts the orphans of the
// foreign keys the copy did not check.
func TestCheckFKsCountsOrphans(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, fkSchema+fkRows)
	// The destination's child_a references parents 1..200 and one that the
	// copy of parent will not bring.
	mustExec(t, dst, fkSchema+`INSERT INTO parent SELECT g, 'p' FROM generate_series(1, 201) g;
		INSERT INTO child_a VALUES (1, 5, 'ok'), (2, 201, 'orphan-to-be');`)
	o := opts(src, dst, "parent")
	o.FKMode, o.CheckFKs = partition.FKReplica, true
	rep, err := copy.Run(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Orphans != 1 {
		t.Fatalf("orphans %d, want 1: %+v", rep.Orphans, rep.ForeignKeys)
	}
	var seen []string
	for _, c := range rep.ForeignKeys {
		seen = append(seen, c.Constraint)
		if c.Constraint == "child_a_pid_fkey" && (c.Orphans == nil || *c.Orphans != 1) {
			t.Errorf("%s: %v", c.Constraint, c.Orphans)
		}
	}
	if !slices.Contains(seen, "child_b_pid_fkey") || !slices.Contains(seen, "child_a_pid_fkey") {
		t.Errorf("checked %v", seen)
	}
	// Without --check-fks the queries are only listed.
	o.CheckFKs = false
	rep = mustCopy(t, o)
	if len(rep.ForeignKeys) != 2 || rep.ForeignKeys[0].Orphans != nil || !strings.Contains(rep.ForeignKeys[0].Query, "NOT EXISTS") {
		t.Errorf("unchecked keys: %+v", rep.ForeignKeys)
	}
}

// A group locks the tables that reference others first; a deadlock with an
// application transaction that locked them the other way round costs
// lockstep a retry, not the application its transaction.
func TestGroupLockDeadlockIsRetried(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, fkSchema+fkRows)
	mustExec(t, dst, fkSchema+`INSERT INTO parent VALUES (-1, 'app');`)
	ctx := context.Background()
	app := connect(t, dst)
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	// The application holds parent, and will write child_b next.
	if _, err := tx.Exec(ctx, "UPDATE parent SET name = 'app2' WHERE id = -1"); err != nil {
		t.Fatal(err)
	}
	o := opts(src, dst, "parent", "child_a", "child_b")
	o.LockTimeout, o.LockRetries, o.RetryBackoff = 5*time.Second, 3, 200*time.Millisecond
	done := start(testCtx(t), o)
	// lockstep holds the child tables and waits for parent...
	waitFor(t, "lockstep waiting for parent", func() bool {
		return pgtest.QueryString(t, dst, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
			WHERE NOT l.granted AND a.application_name = 'lockstep' AND l.relation = 'parent'::regclass`) == "1"
	})
	// ...when the application writes child_b: a deadlock.
	if _, err := tx.Exec(ctx, "INSERT INTO child_b VALUES (-1, -1, NULL, 'app')"); err != nil {
		t.Fatalf("the application's write failed: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("copy: %v", r.err)
	}
	if u := r.rep.Units[0]; u.Attempts < 2 {
		t.Errorf("attempts %d: want the deadlock retried", u.Attempts)
	}
	if a, b := fkDigest(t, src), fkDigest(t, dst); a != b {
		t.Errorf("sides differ after the retry")
	}
}

// A member's load may change a member copied before it: here a trigger on
// the destination's child_a keeps a figure in parent up to date, as
// counter caches do. parent is copied (and was verified) before child_a
// fires it, so every member is verified only once the whole group is
// loaded: the group fails as a mismatch, and nothing commits.
func TestGroupMemberChangedByALaterMemberIsCaught(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, fkSchema+fkRows)
	mustExec(t, dst, fkSchema+`INSERT INTO parent VALUES (-1, 'stale'); INSERT INTO child_a VALUES (-1, -1, 'stale');
		CREATE FUNCTION touch_parent() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN UPDATE parent SET name = name || ' (touched)' WHERE id = 1; RETURN NULL; END $$;
		CREATE TRIGGER touch_parent AFTER INSERT ON child_a FOR EACH STATEMENT EXECUTE FUNCTION touch_parent();`)
	srcBefore, dstBefore := fkDigest(t, src), fkDigest(t, dst)
	rep, err := copy.Run(testCtx(t), opts(src, dst, "parent", "child_a", "child_b"))
	if rep == nil || len(rep.Units) != 1 {
		t.Fatalf("no report: %v", err)
	}
	if u := rep.Units[0]; u.Status != copy.StatusMismatch || !errors.As(err, new(*verify.MismatchError)) {
		t.Errorf("status %s, want mismatch (error: %v)", u.Status, err)
	}
	if got := fkDigest(t, dst); got != dstBefore {
		t.Errorf("destination changed:\n%s\nwas\n%s\nsource:\n%s", got, dstBefore, srcBefore)
	}
	if got := fkDigest(t, src); got != srcBefore {
		t.Errorf("source changed")
	}
	for _, table := range []string{"parent", "child_a", "child_b"} {
		assertTableUnlocked(t, src, table)
		assertTableUnlocked(t, dst, table)
	}
}

// --check-fks after a --fk-mode replica copy of partitions: the foreign
// keys of a partitioned table are held by its partitions as clones, and a
// foreign key to a partitioned table reaches each partition; the orphans
// are counted against the whole referenced table, each row once.
func TestCheckFKsPartitioned(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE TABLE customer (id int PRIMARY KEY);
		CREATE TABLE payment (id int PRIMARY KEY, cid int REFERENCES customer) PARTITION BY RANGE (id);
		CREATE TABLE payment_1 PARTITION OF payment FOR VALUES FROM (0) TO (100);
		CREATE TABLE payment_2 PARTITION OF payment FOR VALUES FROM (100) TO (200);
		CREATE TABLE orders (id int PRIMARY KEY) PARTITION BY RANGE (id);
		CREATE TABLE orders_1 PARTITION OF orders FOR VALUES FROM (0) TO (100);
		CREATE TABLE orders_2 PARTITION OF orders FOR VALUES FROM (100) TO (200);
		CREATE TABLE item (id int PRIMARY KEY, oid int REFERENCES orders);`
	// The source lacks the foreign keys, and half its payments reference
	// customers it does not have: they are orphans on the destination.
	mustExec(t, src, strings.NewReplacer("REFERENCES customer", "", "REFERENCES orders", "").Replace(schema)+
		`INSERT INTO customer SELECT g FROM generate_series(1, 5) g;
		INSERT INTO payment SELECT g, 1 + g % 10 FROM generate_series(0, 199) g;
		INSERT INTO orders SELECT g FROM generate_series(0, 199) g;`)
	// The destination's items reference both partitions of orders, every
	// one of them a row the copy brings: no orphan there.
	mustExec(t, dst, schema+`INSERT INTO customer SELECT g FROM generate_series(1, 5) g;
		INSERT INTO orders SELECT g FROM generate_series(0, 199) g;
		INSERT INTO item VALUES (1, 5), (2, 150);`)
	for _, tables := range [][]string{{"payment", "orders"}, {"customer", "payment", "orders"}} {
		o := opts(src, dst, tables...)
		o.FKMode, o.CheckFKs = partition.FKReplica, true
		rep, err := copy.Run(testCtx(t), o)
		if err != nil {
			t.Fatal(err)
		}
		want := count(t, dst, "payment p WHERE NOT EXISTS (SELECT FROM customer c WHERE c.id = p.cid)")
		if want != 100 {
			t.Fatalf("test setup: %d orphans on the destination, want 100", want)
		}
		if rep.Orphans != want {
			t.Errorf("%v: orphans %d, want %d: %+v", tables, rep.Orphans, want, rep.ForeignKeys)
		}
		for _, c := range rep.ForeignKeys {
			if c.Orphans == nil {
				t.Fatalf("%s not counted", c)
			}
			if c.Table == `"public"."item"` && *c.Orphans != 0 {
				t.Errorf("%v: %s", tables, c)
			}
		}
	}
}

// A resumed --fk-mode replica run with --check-fks counts the orphans of
// the foreign keys of the units it skips too: the earlier run copied them
// without checking those keys, and the orphans it found are still there;
// the re-run must not exit 0 over them.
func TestCheckFKsAfterResume(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, fkSchema+fkRows)
	mustExec(t, dst, fkSchema+`INSERT INTO parent SELECT g, 'p' FROM generate_series(1, 201) g;
		INSERT INTO child_a VALUES (1, 5, 'ok'), (2, 201, 'orphan-to-be');`)
	o := withLedger(opts(src, dst, "parent"), ledger.Config{})
	o.FKMode, o.CheckFKs = partition.FKReplica, true
	for run := 1; run <= 2; run++ {
		o.RunID = fmt.Sprintf("run-%d", run)
		rep, err := copy.Run(testCtx(t), o)
		if err != nil {
			t.Fatal(err)
		}
		if run == 2 && rep.Skipped != 1 {
			t.Fatalf("run 2 skipped %d units, want 1", rep.Skipped)
		}
		if rep.Orphans != 1 {
			t.Errorf("run %d: orphans %d, want 1: %+v", run, rep.Orphans, rep.ForeignKeys)
		}
	}
}

// A partition created after the plan under a partitioned table that a unit
// truncates for its partitions' later units would be emptied on the
// destination and copied by no unit: the unit fails instead, before its
// TRUNCATE, and the destination keeps the partition's rows.
func TestGroupRefusesPartitionsCreatedSinceThePlan(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE TABLE customer (id int PRIMARY KEY);
		CREATE TABLE payment (id int PRIMARY KEY, cid int REFERENCES customer) PARTITION BY RANGE (id);
		CREATE TABLE payment_1 PARTITION OF payment FOR VALUES FROM (0) TO (100);`
	mustExec(t, src, schema+`INSERT INTO customer SELECT g FROM generate_series(1, 5) g;
		INSERT INTO payment SELECT g, 1 + g % 5 FROM generate_series(0, 99) g;`)
	mustExec(t, dst, schema+`INSERT INTO customer VALUES (1);`)
	for _, mode := range []partition.FKMode{partition.FKGroup, partition.FKGroupStrict} {
		o := opts(src, dst, "customer", "payment")
		o.FKMode = mode
		p, err := copy.MakePlan(testCtx(t), o)
		if err != nil {
			t.Fatal(err)
		}
		// A new partition, dual-written on both sides.
		add := `CREATE TABLE payment_2 PARTITION OF payment FOR VALUES FROM (100) TO (200);
			INSERT INTO payment VALUES (150, 1);`
		mustExec(t, src, add)
		mustExec(t, dst, add)
		rep, err := p.Execute(testCtx(t))
		if err == nil || rep.Units[0].Status != copy.StatusFailed || !strings.Contains(rep.Units[0].Error, "changed since the plan") {
			t.Errorf("%s: %v", mode, err)
		}
		if n := count(t, dst, "payment_2"); n != 1 {
			t.Errorf("%s: the destination's new partition holds %d rows, want its 1", mode, n)
		}
		mustExec(t, src, "DROP TABLE payment_2")
		mustExec(t, dst, "DROP TABLE payment_2")
	}
}
