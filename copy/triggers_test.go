package copy_test

import (
	"strings"
	"testing"

	"lockstep/copy"
	"lockstep/internal/pgtest"
)

const trgSchema = `CREATE TABLE t (id int PRIMARY KEY, note text);
CREATE FUNCTION shout() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.note := upper(NEW.note); RETURN NEW; END $$;
CREATE FUNCTION skip() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;`

// A destination trigger that changes rows makes the unit mismatch, and the
// error says which trigger; --disable-triggers copies without the user
// triggers, inside the unit's transaction, and leaves each trigger as it
// was: enabled, always, replica-only or disabled.
func TestDestinationTriggers(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, trgSchema+`INSERT INTO t SELECT g, 'n' || g FROM generate_series(1, 1000) g;`)
	mustExec(t, dst, trgSchema+`
		CREATE TRIGGER a_shout BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION shout();
		CREATE TRIGGER b_always BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION shout();
		ALTER TABLE t ENABLE ALWAYS TRIGGER b_always;
		CREATE TRIGGER c_replica BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION skip();
		ALTER TABLE t ENABLE REPLICA TRIGGER c_replica;
		CREATE TRIGGER d_off BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION skip();
		ALTER TABLE t DISABLE TRIGGER d_off;
		INSERT INTO t VALUES (-1, 'kept');`)
	modes := func() string {
		return pgtest.QueryString(t, dst, `SELECT string_agg(tgname || '=' || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 't'::regclass`)
	}
	before := modes()
	_, err := copy.Run(testCtx(t), opts(src, dst, "t"))
	if err == nil || !strings.Contains(err.Error(), "destination trigger a_shout, b_always changed or dropped rows") {
		t.Fatalf("mismatch caused by triggers: %v", err)
	}
	if count(t, dst, "t") != 1 {
		t.Fatal("the mismatching unit was not rolled back")
	}
	o := opts(src, dst, "t")
	o.DisableTriggers = true
	mustCopy(t, o)
	assertSame(t, src, dst, "t", "id, note", "id")
	if got := modes(); got != before {
		t.Errorf("trigger modes after the copy: %s, were %s", got, before)
	}

	// A role that does not own the table may not disable its triggers.
	role := "trg_not_owner"
	mustExec(t, dst, "CREATE ROLE "+role+" LOGIN PASSWORD 'pw'; GRANT ALL ON t TO "+role)
	t.Cleanup(func() { mustExec(t, dst, "DROP OWNED BY "+role+"; DROP ROLE "+role) })
	o.Dest = withUser(t, dst, role, "pw")
	_, err = copy.Run(testCtx(t), o)
	if err == nil || !strings.Contains(err.Error(), `--disable-triggers: role trg_not_owner may not disable trigger "a_shout"`) {
		t.Fatalf("non-owner: %v", err)
	}
}

// --disable-triggers leaves enabled a trigger created on the destination
// after the plan was made (a long run, a DBA's change meanwhile): it
// disables only the triggers it will enable again.
func TestDisableTriggersSparesTriggersItDidNotPlan(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	mustExec(t, src, trgSchema+`INSERT INTO t SELECT g, 'n' || g FROM generate_series(1, 100) g;`)
	mustExec(t, dst, trgSchema+`CREATE TRIGGER a_shout BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION shout();`)
	o := opts(src, dst, "t")
	o.DisableTriggers = true
	p, err := copy.MakePlan(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, dst, `CREATE FUNCTION later() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
		CREATE TRIGGER b_later AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION later();`)
	rep, err := p.Execute(testCtx(t))
	if err != nil || rep.Units[0].Status != copy.StatusOK {
		t.Fatalf("copy: %v", err)
	}
	assertSame(t, src, dst, "t", "id, note", "id")
	got := pgtest.QueryString(t, dst, `SELECT string_agg(tgname || '=' || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 't'::regclass`)
	if got != "a_shout=O,b_later=O" {
		t.Errorf("trigger modes after the copy: %s", got)
	}
}
