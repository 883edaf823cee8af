package copy

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"lockstep/internal/pgtest"
	"lockstep/partition"
)

// Two runs that set one destination sequence at once (two processes
// sharing a selection, copying two partitions of the table that owns it;
// or a copy beside sync-sequences), each from the source's value it read,
// leave the larger: the one that read the smaller value must not set it
// last, below ids the other copied. Here the first run's statement is held
// up between its read of the shared sequence and its setval (an ALTER
// SEQUENCE holds another of its sequences), while the second one runs.
func TestSetSequencesConcurrentRuns(t *testing.T) {
	t.Parallel()
	_, dst := pgtest.Get(t).NewDBs(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pgtest.Exec(t, dst, "CREATE SEQUENCE other_seq; CREATE SEQUENCE shared_seq;")
	conn := func() *pgx.Conn {
		c, err := pgx.Connect(ctx, dst)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	first, second, holder := conn(), conn(), conn()
	seq := func(name string) partition.Sequence {
		tb := partition.Table{Schema: "public", Name: name, Kind: "S"}
		if err := holder.QueryRow(ctx, "SELECT $1::text::regclass::oid", tb.String()).Scan(&tb.OID); err != nil {
			t.Fatal(err)
		}
		return partition.Sequence{Source: tb, Dest: tb}
	}
	other, shared := seq("other_seq"), seq("shared_seq")
	// As a unit sets them: inside the destination's transaction.
	set := func(c *pgx.Conn, seqs []partition.Sequence, src []SequenceValue) <-chan error {
		done := make(chan error, 1)
		go func() {
			_, err := c.Exec(ctx, "BEGIN")
			if err == nil {
				_, err = applySequences(ctx, c, seqs, src, 0, true)
			}
			if err == nil {
				_, err = c.Exec(ctx, "COMMIT")
			}
			done <- err
		}()
		return done
	}
	// waiting waits until the backend of c waits on a lock, or done
	// delivers.
	waiting := func(c *pgx.Conn, done <-chan error) (finished bool, err error) {
		for {
			select {
			case err := <-done:
				return true, err
			case <-time.After(20 * time.Millisecond):
			}
			var w bool
			if err := holder.QueryRow(ctx, "SELECT wait_event_type IS NOT DISTINCT FROM 'Lock' FROM pg_stat_activity WHERE pid = $1",
				c.PgConn().PID()).Scan(&w); err != nil {
				t.Fatal(err)
			}
			if w {
				return false, nil
			}
		}
	}
	// Either run may have read the larger value: the one set first (when
	// the second waits for it, it must read the destination's value after
	// the wait), or the other.
	for _, c := range []struct{ first, second int64 }{{1000, 2000}, {2000, 1000}} {
		pgtest.Exec(t, dst, "SELECT setval('shared_seq', 1, false), setval('other_seq', 1, false)")
		if _, err := holder.Exec(ctx, "BEGIN; ALTER SEQUENCE other_seq INCREMENT 1"); err != nil {
			t.Fatal(err)
		}
		// The first run's setval of other_seq waits on the ALTER.
		firstDone := set(first, []partition.Sequence{other, shared},
			[]SequenceValue{{LastValue: 5, IsCalled: true}, {LastValue: c.first, IsCalled: true}})
		if finished, err := waiting(first, firstDone); finished {
			t.Fatalf("the first run did not wait: %v", err)
		}
		secondDone := set(second, []partition.Sequence{shared}, []SequenceValue{{LastValue: c.second, IsCalled: true}})
		secondFinished, err := waiting(second, secondDone)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := holder.Exec(ctx, "COMMIT"); err != nil {
			t.Fatal(err)
		}
		if err := <-firstDone; err != nil {
			t.Fatal(err)
		}
		if !secondFinished {
			if err := <-secondDone; err != nil {
				t.Fatal(err)
			}
		}
		if got := pgtest.QueryString(t, dst, "SELECT last_value || ' ' || is_called FROM shared_seq"); got != "2000 true" {
			t.Errorf("first run %d, second %d: shared_seq is %s, want the larger source value, 2000, called", c.first, c.second, got)
		}
	}
}
