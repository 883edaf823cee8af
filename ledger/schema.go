package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultSchema is where the ledger lives unless --ledger-schema says
// otherwise.
const DefaultSchema = "lockstep"

// migrations build the ledger, one step per version: migrations[i] takes a
// ledger from version i to version i+1. A ledger is only ever changed by
// them, in order, each in the transaction that records its version, so
// every ledger at version N has the same tables. %[1]s is the schema's
// quoted name. Never edit a step that has shipped: add one.
var migrations = []string{
	// 1: runs and unit attempts.
	`CREATE TABLE %[1]s.version (
		version int NOT NULL,
		upgraded timestamptz NOT NULL DEFAULT pg_catalog.now(),
		by_lockstep text NOT NULL
	);
	INSERT INTO %[1]s.version (version, by_lockstep) VALUES (0, '');
	CREATE TABLE %[1]s.runs (
		id text PRIMARY KEY,
		started timestamptz NOT NULL DEFAULT pg_catalog.now(),
		finished timestamptz,
		host text NOT NULL,
		pid int NOT NULL,
		backend_pid int NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
		lockstep_version text NOT NULL,
		options jsonb NOT NULL,
		trust_since timestamptz,
		units int NOT NULL,
		skipped int NOT NULL DEFAULT 0,
		outcome text
	);
	COMMENT ON TABLE %[1]s.runs IS 'lockstep runs: one row per lockstep copy; outcome is NULL while it runs (or if it died)';
	CREATE TABLE %[1]s.units (
		id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		-- No foreign key: checking one would lock the run's row in every
		-- unit's transaction, while it holds its tables' locks.
		run_id text NOT NULL,
		unit_key text NOT NULL,
		unit text NOT NULL,
		source_relation text NOT NULL,
		dest_relation text NOT NULL,
		members text[],
		key_range text,
		outcome text NOT NULL,
		verify text NOT NULL,
		attempt int NOT NULL,
		rows bigint,
		bytes bigint,
		checksum text,
		member_checksums text[],
		format text,
		dest_lock_wait interval,
		source_lock_wait interval,
		source_lock_held interval,
		writes_blocked interval,
		copy_time interval,
		verify_time interval,
		started timestamptz,
		finished timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
		dest_xid bigint,
		shape text NOT NULL,
		error text
	);
	COMMENT ON TABLE %[1]s.units IS 'lockstep unit attempts: a success row commits in the same transaction as the data it describes'`,
	// 2: the indexes that resume and status read by.
	`CREATE INDEX units_latest ON %[1]s.units (unit_key, id DESC);
	CREATE INDEX units_run ON %[1]s.units (run_id)`,
	// 3: the partitioned tables a unit's copy emptied without copying
	// their partitions (those follow as units of their own).
	`ALTER TABLE %[1]s.units ADD COLUMN emptied text[];
	CREATE INDEX units_emptied ON %[1]s.units USING gin (emptied) WHERE outcome = 'ok' AND emptied IS NOT NULL`,
}

// Version is the ledger version this lockstep writes.
var Version = len(migrations)

// emptiedVersion is the first version whose units have emptied.
const emptiedVersion = 3

// NewerError says the ledger was made by a newer lockstep, whose tables
// this one does not know. Not retryable: upgrade lockstep.
type NewerError struct {
	Schema       string
	Found, Knows int
}

func (e *NewerError) Error() string {
	return fmt.Sprintf("destination: the ledger in schema %s is at version %d, newer than this lockstep knows (%d): "+
		"upgrade lockstep (or use another --ledger-schema, or --ledger none)", quote(e.Schema), e.Found, e.Knows)
}

// PrivilegeError says the destination role may not create or use the
// ledger. Not retryable until a privilege is granted.
type PrivilegeError struct {
	Schema string
	What   string // what was refused, and what would allow it
	Err    error
}

func (e *PrivilegeError) Error() string {
	return fmt.Sprintf("destination: ledger schema %s: %s (or run with --ledger none, which turns resume and claims off): %v",
		quote(e.Schema), e.What, e.Err)
}

func (e *PrivilegeError) Unwrap() error { return e.Err }

func quote(schema string) string { return pgx.Identifier{schema}.Sanitize() }

// key64 is an advisory lock key for parts: the first 8 bytes of their
// SHA-256 (a collision would only make two units wait for each other).
func key64(parts ...string) int64 {
	h := sha256.Sum256([]byte("lockstep\x00" + strings.Join(parts, "\x00")))
	return int64(binary.BigEndian.Uint64(h[:8]))
}

// setup brings the ledger in schema to the current version, creating it
// when it does not exist, in one transaction that holds an advisory lock
// on the schema's name, so that processes starting at once wait for each
// other instead of racing. The transaction is READ COMMITTED whatever the
// database's default, so that what it reads after the lock is read in a
// snapshot taken after the lock: the ledger that the process it waited
// for created. A ledger already current costs a few reads.
func setup(ctx context.Context, conn *pgx.Conn, schema string, upTo int, by string) error {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return fmt.Errorf("destination: ledger: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SELECT pg_catalog.pg_advisory_xact_lock($1)", key64(schema, "setup")); err != nil {
		return fmt.Errorf("destination: ledger: %w", err)
	}
	var schemaExists, tableExists bool
	var role, db string
	err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1),
		EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		        WHERE n.nspname = $1 AND c.relname = 'version' AND c.relkind = 'r'),
		current_user, pg_catalog.current_database()`, schema).Scan(&schemaExists, &tableExists, &role, &db)
	if err != nil {
		return fmt.Errorf("destination: ledger: %w", err)
	}
	s := quote(schema)
	if !schemaExists {
		if _, err := tx.Exec(ctx, "CREATE SCHEMA "+s); err != nil {
			if isPrivilege(err) {
				return &PrivilegeError{Schema: schema, Err: err, What: fmt.Sprintf(
					"it does not exist, and role %s may not create it: that needs the CREATE privilege on database %s "+
						"(GRANT CREATE ON DATABASE %s TO %s; or have the database's owner run CREATE SCHEMA %s AUTHORIZATION %s)",
					quote(role), quote(db), quote(db), quote(role), s, quote(role))}
			}
			return fmt.Errorf("destination: ledger: create schema %s: %w", s, err)
		}
	}
	version := 0
	if tableExists {
		if err := tx.QueryRow(ctx, "SELECT version FROM "+s+".version").Scan(&version); err != nil {
			if isPrivilege(err) {
				return &PrivilegeError{Schema: schema, Err: err, What: fmt.Sprintf("role %s may not read it (GRANT USAGE ON SCHEMA %s "+
					"and SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA %s TO %s)", quote(role), s, s, quote(role))}
			}
			return fmt.Errorf("destination: ledger: read the version of %s: %w", s, err)
		}
	}
	if version > upTo {
		return &NewerError{Schema: schema, Found: version, Knows: upTo}
	}
	if version == upTo {
		return tx.Commit(ctx)
	}
	for v := version; v < upTo; v++ {
		// Simple protocol: a step is several statements.
		if _, err := tx.Conn().PgConn().Exec(ctx, fmt.Sprintf(migrations[v], s)).ReadAll(); err != nil {
			if isPrivilege(err) {
				return &PrivilegeError{Schema: schema, Err: err, What: fmt.Sprintf("role %s may not create tables in it (GRANT CREATE ON SCHEMA %s TO %s)",
					quote(role), s, quote(role))}
			}
			return fmt.Errorf("destination: ledger: upgrade %s to version %d: %w", s, v+1, err)
		}
		if _, err := tx.Exec(ctx, "UPDATE "+s+".version SET version = $1, upgraded = pg_catalog.now(), by_lockstep = $2", v+1, by); err != nil {
			return fmt.Errorf("destination: ledger: upgrade %s to version %d: %w", s, v+1, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("destination: ledger: set up %s: %w", s, err)
	}
	return nil
}

// readVersion is the version of the ledger in schema, 0 when there is
// none; it changes nothing.
func readVersion(ctx context.Context, q Querier, schema string) (int, error) {
	var exists bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = 'version' AND c.relkind = 'r')`, schema).Scan(&exists)
	if err != nil || !exists {
		return 0, err
	}
	var v int
	err = q.QueryRow(ctx, "SELECT version FROM "+quote(schema)+".version").Scan(&v)
	return v, err
}

func isPrivilege(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42501"
}
