package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier is what reads need: a *pgx.Conn or a pgx.Tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Config is one run's ledger.
type Config struct {
	Schema string // DefaultSchema when empty
	// Redo trusts no record made before this run started (units are
	// copied again; a unit another process copies during this run is not).
	Redo bool
	// Since, when positive, trusts only records this young.
	Since time.Duration
	// Options are the run's selection and options, passwords already
	// redacted, stored with the run.
	Options map[string]any
	// Secrets are removed from every error text stored.
	Secrets []string
	Logger  *slog.Logger
}

// RunInfo is what the run tells the ledger when it starts.
type RunInfo struct {
	ID     string // the run id (copy.NewRunID), the same in logs, metrics and reports
	Units  int    // units planned
	Verify string // the run's verification: checksum, count or none
}

// Ledger is one run's record in the destination database. Its methods are
// safe for concurrent use; they share one connection, which also holds the
// run's claims.
type Ledger struct {
	cfg    Config
	schema string // quoted
	log    *slog.Logger

	mu        sync.Mutex
	conn      *pgx.Conn
	reconnect func(context.Context) (*pgx.Conn, error)
	run       string
	cutoff    *time.Time // records finished before it are not trusted; nil: all are
	verify    string
}

// New is a ledger for one run; Open makes it ready.
func New(cfg Config) *Ledger {
	if cfg.Schema == "" {
		cfg.Schema = DefaultSchema
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Ledger{cfg: cfg, schema: quote(cfg.Schema), log: cfg.Logger}
}

// Schema is the ledger's schema, unquoted.
func (l *Ledger) Schema() string { return l.cfg.Schema }

// RunID is the run's id ("" before Open).
func (l *Ledger) RunID() string { return l.run }

// LockstepVersion is this binary's module version and VCS revision, as the
// Go toolchain recorded them.
func LockstepVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " " + rev + dirty
	}
	return v
}

// Open sets the ledger up on conn (creating or upgrading it), records the
// run and takes the run's own advisory lock, by which status tells a
// running run from a dead one. The ledger keeps conn for the run (its
// claims live there) and, if it is lost, opens another with reconnect. On
// error conn is closed.
func (l *Ledger) Open(ctx context.Context, conn *pgx.Conn, reconnect func(context.Context) (*pgx.Conn, error), info RunInfo) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conn, l.reconnect, l.verify, l.run = conn, reconnect, info.Verify, info.ID
	if err := l.start(ctx, info); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		l.conn = nil
		return err
	}
	return nil
}

func (l *Ledger) start(ctx context.Context, info RunInfo) error {
	if err := setup(ctx, l.conn, l.cfg.Schema, Version, LockstepVersion()); err != nil {
		return err
	}
	opts, err := json.Marshal(l.cfg.Options)
	if err != nil {
		return fmt.Errorf("destination: ledger: options: %w", err)
	}
	host, _ := os.Hostname()
	var since any
	if l.cfg.Since > 0 {
		since = l.cfg.Since.Microseconds()
	}
	err = l.conn.QueryRow(ctx, `INSERT INTO `+l.schema+`.runs (id, host, pid, lockstep_version, options, units, trust_since)
		VALUES ($1, $2, $3, $4, $5::jsonb, $6, CASE WHEN $7 THEN pg_catalog.now() ELSE pg_catalog.now() - $8::bigint * interval '1 microsecond' END)
		RETURNING trust_since`,
		l.run, host, os.Getpid(), LockstepVersion(), string(opts), info.Units, l.cfg.Redo, since).Scan(&l.cutoff)
	if err != nil {
		if isPrivilege(err) {
			return &PrivilegeError{Schema: l.cfg.Schema, Err: err, What: "the role may not write to it (GRANT USAGE ON SCHEMA, and SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA)"}
		}
		return fmt.Errorf("destination: ledger: record the run: %w", err)
	}
	return l.holdRun(ctx, l.conn)
}

// holdRun readies a ledger connection: it takes the run's own lock; pins
// READ COMMITTED, so that the record read after a claim is read in a
// snapshot taken after the claim whatever the database's default; and
// lifts idle_session_timeout (14+), which would end the session, and the
// claims on it, while a long unit runs.
func (l *Ledger) holdRun(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `SELECT pg_catalog.pg_advisory_lock($1),
		pg_catalog.set_config('default_transaction_isolation', 'read committed', false),
		CASE WHEN pg_catalog.current_setting('server_version_num')::int >= 140000
		THEN pg_catalog.set_config('idle_session_timeout', '0', false) END`,
		runLockKey(l.cfg.Schema, l.run))
	if err != nil {
		return fmt.Errorf("destination: ledger: %w", err)
	}
	return nil
}

// runLockKey is the advisory lock key (one bigint) that a run holds on its
// ledger connection while it lives.
func runLockKey(schema, run string) int64 { return key64(schema, "run", run) }

// do runs f on the ledger's connection, opening another first if it was
// lost. A connection that fails with anything but an SQL error is closed
// (and the claims on it with it); f is then run once more on a new one:
// every f here may run twice (a claim lost with its connection is taken
// again, a failure recorded twice says the same thing twice).
func (l *Ledger) do(ctx context.Context, f func(*pgx.Conn) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	for try := 0; try < 2; try++ {
		if err = l.ensureConn(ctx); err != nil {
			return err
		}
		err = f(l.conn)
		if err == nil || !l.lost(ctx, err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// lost tells whether err ended the ledger's connection, closing it if it
// is not closed yet. Call with l.mu held.
func (l *Ledger) lost(ctx context.Context, err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Severity != "FATAL" && pgErr.Severity != "PANIC" {
		return l.conn.IsClosed()
	}
	if !l.conn.IsClosed() {
		l.conn.Close(context.WithoutCancel(ctx))
	}
	return true
}

// ensureConn opens a new ledger connection if it was lost, and takes the
// run's lock on it again. Call with l.mu held.
func (l *Ledger) ensureConn(ctx context.Context) error {
	if l.conn != nil && !l.conn.IsClosed() {
		return nil
	}
	if l.reconnect == nil {
		return errors.New("destination: ledger: not open")
	}
	conn, err := l.reconnect(ctx)
	if err != nil {
		return fmt.Errorf("destination: ledger: reconnect: %w", err)
	}
	l.log.Warn("the ledger's connection was lost and opened again; claims it held were released", "run", l.run)
	l.conn = conn
	if err := l.holdRun(ctx, conn); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "UPDATE "+l.schema+".runs SET backend_pid = pg_catalog.pg_backend_pid() WHERE id = $1", l.run); err != nil {
		return fmt.Errorf("destination: ledger: %w", err)
	}
	return nil
}

// Close records the run's outcome and how many units it skipped, gives the
// run's lock and every claim up, and closes the ledger's connection.
func (l *Ledger) Close(ctx context.Context, outcome string, skipped int) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := l.do(cctx, func(c *pgx.Conn) error {
		_, err := c.Exec(cctx, "UPDATE "+l.schema+".runs SET finished = pg_catalog.now(), outcome = $2, skipped = $3 WHERE id = $1",
			l.run, outcome, skipped)
		return err
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		l.conn.Close(cctx)
		l.conn = nil
	}
	l.reconnect = nil
	if err != nil {
		return fmt.Errorf("destination: ledger: record the run's outcome: %w", err)
	}
	return nil
}

// RecordSkipped records, at the start, how many units the run skipped, so
// that a run that dies still shows them.
func (l *Ledger) RecordSkipped(ctx context.Context, skipped int) error {
	return l.do(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, "UPDATE "+l.schema+".runs SET skipped = $2 WHERE id = $1", l.run, skipped)
		return err
	})
}
