package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"lockstep/internal/pgtest"
)

// The end-to-end proof: an application dual-writes (source first, then the
// same absolute values upserted into the destination) with concurrent
// clients for the whole move; afterwards verify --lock must find the two
// sides equal. Each client owns the keys k with k % clients == its number,
// as a real dual-write must keep one key's writes in order.

// app is a dual-writing application: op writes the source and then the
// destination for one key of client c.
type app struct {
	clients int
	op      func(ctx context.Context, src, dst *pgx.Conn, c int, rnd *rand.Rand) error
	writes  atomic.Int64
}

// run starts the clients and returns a function that stops them and
// reports their first error.
func (a *app) run(t *testing.T, src, dst string) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, a.clients)
	for c := range a.clients {
		s, d := pgtest.Connect(t, src), pgtest.Connect(t, dst)
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(c), uint64(time.Now().UnixNano())))
			for ctx.Err() == nil {
				if err := a.op(context.Background(), s, d, c, rnd); err != nil {
					errs <- fmt.Errorf("client %d: %w", c, err)
					return
				}
				a.writes.Add(1)
			}
		})
	}
	return func() error {
		cancel()
		wg.Wait()
		close(errs)
		return <-errs
	}
}

// key picks one of client c's keys in [1, n]: those with k % clients ==
// (c+1) % clients.
func key(rnd *rand.Rand, c, clients, n int) int {
	return c + 1 + clients*rnd.IntN(n/clients)
}

// fkViolation: the destination lacks a referenced row its copy has not
// brought yet; the copy of the referencing table brings this row.
func fkViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}

// upsertSQL writes absolute values.
func upsertSQL(table string, cols []string) string {
	ph, sets := make([]string, len(cols)), make([]string, 0, len(cols))
	for i, c := range cols {
		ph[i] = fmt.Sprintf("$%d", i+1)
		if i > 0 {
			sets = append(sets, c+" = EXCLUDED."+c)
		}
	}
	return fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s) ON CONFLICT (%s) DO UPDATE SET %s",
		table, strings.Join(cols, ", "), strings.Join(ph, ", "), cols[0], strings.Join(sets, ", "))
}

// dualWrite runs one row operation on the source, then upserts the row's
// new values into the destination.
func dualWrite(ctx context.Context, src, dst *pgx.Conn, table string, cols []string, sourceSQL string, args ...any) error {
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	err := src.QueryRow(ctx, sourceSQL, args...).Scan(ptrs...)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil // no such row on the source: nothing written
	case fkViolation(err):
		return nil // the application's own write was refused: nothing to mirror
	case err != nil:
		return fmt.Errorf("source: %w", err)
	}
	if _, err := dst.Exec(ctx, upsertSQL(table, cols), vals...); err != nil && !fkViolation(err) {
		return fmt.Errorf("destination: %w", err)
	}
	return nil
}

// A partitioned table moved partition by partition on two jobs under
// four dual-writing clients.
func TestDualWritePartitioned(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	a := acctUnderDualWrite(t, src, dst)
	moveUnderDualWrite(t, a, src, dst, "--table", "acct", "--jobs", "2")
}

// acctUnderDualWrite makes a table acct of 8 hash partitions, 120,000 rows
// on the source and stale rows on the destination, and the application
// that dual-writes it from four clients (deletes, upserts, updates).
func acctUnderDualWrite(t *testing.T, src, dst string) *app {
	t.Helper()
	schema := `CREATE TABLE acct (id int PRIMARY KEY, balance bigint NOT NULL, note text) PARTITION BY HASH (id);
		DO $$ BEGIN FOR i IN 0..7 LOOP
		  EXECUTE format('CREATE TABLE acct_%s PARTITION OF acct FOR VALUES WITH (MODULUS 8, REMAINDER %s)', i, i);
		END LOOP; END $$;`
	pgtest.Exec(t, src, schema+`INSERT INTO acct SELECT g, g * 10, md5(g::text) FROM generate_series(1, 120000) g;`)
	pgtest.Exec(t, dst, schema+`INSERT INTO acct SELECT g, -1, 'stale' FROM generate_series(1, 120000, 7) g;`)
	cols := []string{"id", "balance", "note"}
	return &app{clients: 4, op: func(ctx context.Context, s, d *pgx.Conn, c int, rnd *rand.Rand) error {
		id := key(rnd, c, 4, 150000)
		switch rnd.IntN(10) {
		case 0:
			return dualDelete(ctx, s, d, "acct", "id", id)
		case 1, 2, 3:
			return dualWrite(ctx, s, d, "acct", cols, `INSERT INTO acct VALUES ($1, $2, 'new') ON CONFLICT (id)
				DO UPDATE SET balance = EXCLUDED.balance, note = 'renewed' RETURNING id, balance, note`, id, rnd.Int64N(1e6))
		default:
			return dualWrite(ctx, s, d, "acct", cols, `UPDATE acct SET balance = balance + $2, note = md5(note)
				WHERE id = $1 RETURNING id, balance, note`, id, rnd.Int64N(100))
		}
	}}
}

// moveUnderDualWrite copies with the application writing throughout, then
// stops it and requires verify --lock to find both sides equal.
func moveUnderDualWrite(t *testing.T, a *app, src, dst string, args ...string) {
	t.Helper()
	stop := a.run(t, src, dst)
	time.Sleep(300 * time.Millisecond)
	before := a.writes.Load()
	code, out, errOut := lockstep(t, context.Background(), append([]string{"copy", "--source", src, "--dest", dst, "--progress-interval", "0"}, args...)...)
	during := a.writes.Load() - before
	time.Sleep(300 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatalf("application: %v", err)
	}
	if code != 0 {
		t.Fatalf("copy: exit %d\n%s\n%s", code, out, errOut)
	}
	if during < 100 {
		t.Fatalf("only %d application writes during the move: not a dual-write test", during)
	}
	t.Logf("%d application writes, %d of them during the move", a.writes.Load(), during)
	verifyArgs := []string{"verify", "--source", src, "--dest", dst, "--lock", "--progress-interval", "0"}
	for i := 0; i < len(args); i++ {
		if args[i] == "--table" || args[i] == "--tables-matching" {
			verifyArgs = append(verifyArgs, args[i], args[i+1])
		}
	}
	if code, out, errOut := lockstep(t, context.Background(), append(verifyArgs, "--diff")...); code != 0 {
		t.Fatalf("verify --lock after the move: exit %d\n%s\n%s", code, out, errOut)
	}
}

// dualDelete deletes a key on the source, then on the destination.
func dualDelete(ctx context.Context, src, dst *pgx.Conn, table, keyCol string, key any) error {
	sql := "DELETE FROM " + table + " WHERE " + keyCol + " = $1"
	if _, err := src.Exec(ctx, sql, key); err != nil {
		if fkViolation(err) {
			return nil
		}
		return fmt.Errorf("source: %w", err)
	}
	if _, err := dst.Exec(ctx, sql, key); err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	return nil
}

// Tables tied by foreign keys, moved as one group, and the partitions of a
// table that references them moved one by one after it, under dual-writing
// clients. Until the group has committed the destination lacks the rows
// that new rows reference, so the application's writes there fail with a
// foreign-key violation, which it ignores: the copies bring those rows.
func TestDualWriteForeignKeyGroups(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	schema := `CREATE TABLE customer (id int PRIMARY KEY, name text NOT NULL, score int NOT NULL);
		CREATE TABLE address (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customer, line text);
		CREATE TABLE payment (id int, customer_id int NOT NULL REFERENCES customer, amount numeric NOT NULL, PRIMARY KEY (id))
		  PARTITION BY RANGE (id);
		DO $$ BEGIN FOR i IN 0..5 LOOP
		  EXECUTE format('CREATE TABLE payment_%s PARTITION OF payment FOR VALUES FROM (%s) TO (%s)', i, i * 20000, (i + 1) * 20000);
		END LOOP; END $$;`
	pgtest.Exec(t, src, schema+`INSERT INTO customer SELECT g, 'c' || g, g FROM generate_series(1, 4000) g;
		INSERT INTO address SELECT g, 1 + g % 4000, 'street ' || g FROM generate_series(1, 8000) g;
		INSERT INTO payment SELECT g, 1 + g % 4000, g / 100.0 FROM generate_series(0, 99999) g;`)
	pgtest.Exec(t, dst, schema)
	const clients = 4
	a := &app{clients: clients, op: func(ctx context.Context, s, d *pgx.Conn, c int, rnd *rand.Rand) error {
		cust := key(rnd, c, clients, 4500) // the client's own customers, some new
		switch rnd.IntN(8) {
		case 0:
			return dualWrite(ctx, s, d, "customer", []string{"id", "name", "score"}, `INSERT INTO customer VALUES ($1, 'new', 0)
				ON CONFLICT (id) DO UPDATE SET score = customer.score + 1 RETURNING id, name, score`, cust)
		case 1:
			id := key(rnd, c, clients, 9000) // addresses of the client's own customers
			return dualWrite(ctx, s, d, "address", []string{"id", "customer_id", "line"}, `INSERT INTO address VALUES ($1, $2, 'moved')
				ON CONFLICT (id) DO UPDATE SET line = address.line || '+' RETURNING id, customer_id, line`, id, cust)
		case 2:
			return dualDelete(ctx, s, d, "payment", "id", key(rnd, c, clients, 119999))
		default:
			id := key(rnd, c, clients, 119999)
			return dualWrite(ctx, s, d, "payment", []string{"id", "customer_id", "amount"}, `INSERT INTO payment VALUES ($1, $2, $3)
				ON CONFLICT (id) DO UPDATE SET amount = payment.amount + 1 RETURNING id, customer_id, amount`, id, cust, rnd.IntN(1000))
		}
	}}
	moveUnderDualWrite(t, a, src, dst, "--tables-matching", `^public\.(customer|address|payment_[0-9])$`, "--jobs", "2")
}

// Two lockstep processes share one selection (the ledger's claims split
// its units between them) while the application dual-writes: every
// partition is copied once, by one of them, and verify --lock finds both
// sides equal.
func TestDualWriteManyWorkers(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	a := acctUnderDualWrite(t, src, dst)
	stop := a.run(t, src, dst)
	time.Sleep(300 * time.Millisecond)
	before := a.writes.Load()
	type result struct {
		code     int
		out, err string
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			code, out, errOut := lockstep(t, context.Background(), "copy", "--source", src, "--dest", dst, "--table", "acct",
				"--jobs", "1", "--progress-interval", "0")
			results <- result{code, out, errOut}
		}()
	}
	copied := 0
	for range 2 {
		r := <-results
		if r.code != 0 {
			stop()
			t.Fatalf("a worker: exit %d\n%s\n%s", r.code, r.out, r.err)
		}
		n := 0
		for _, l := range strings.Split(r.out, "\n") {
			if strings.HasPrefix(l, "ok ") {
				n++
			}
		}
		t.Logf("a worker copied %d partitions", n)
		copied += n
	}
	during := a.writes.Load() - before
	time.Sleep(300 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatalf("application: %v", err)
	}
	if during < 100 {
		t.Fatalf("only %d application writes during the move: not a dual-write test", during)
	}
	if n := pgtest.QueryString(t, dst, "SELECT count(*) FROM lockstep.units WHERE outcome = 'ok'"); n != "8" || copied != 8 {
		t.Errorf("%s success rows in the ledger and %d ok lines, want each partition copied once (8)", n, copied)
	}
	t.Logf("%d application writes, %d of them during the move", a.writes.Load(), during)
	if code, out, errOut := lockstep(t, context.Background(), "verify", "--source", src, "--dest", dst, "--table", "acct",
		"--lock", "--diff", "--progress-interval", "0"); code != 0 {
		t.Fatalf("verify --lock after the move: exit %d\n%s\n%s", code, out, errOut)
	}
}
