// Package copy owns the unit protocol and the run loop.
//
// For each unit (one table, or a group of tables that foreign keys tie
// together, copied in order in the same pair of transactions): the
// destination transaction locks the tables ACCESS EXCLUSIVE first, and
// empties them in the same round trip; then the source opens a REPEATABLE READ READ ONLY
// transaction and locks the tables EXCLUSIVE before any query, so its snapshot
// sees every committed write; for each table the source's COPY TO
// streams through a buffered pipe into the destination's COPY FROM while the
// source rows are hashed on the way; once every table is loaded, the
// destination's stored rows are read back and hashed inside its transaction
// (loading one table can change another); on a match, and once a round trip
// has shown the source session (so its lock) still alive, the destination
// commits, and only then the source commits and releases its lock. Any failure before
// the destination's commit rolls both back. A destination commit whose
// outcome is unknown is re-checked from a new connection while the source
// lock is still held. Before the commit point, the destination's sequences
// that feed the copied columns are moved on to the source's values (never
// backwards), read with the source lock (sequences.go); SyncSequences moves
// them again at switch-over.
//
// No server is awaited silently for long, and no server holds a lock long
// for a lockstep that is gone: stalls end the unit, idle transactions get
// heartbeats, and each session carries keepalives and an idle timeout, all
// derived from one stall timeout (liveness.go).
//
// With --create-missing, before the units are planned, the selected tables
// the destination lacks are created there from pg_dump's definitions of the
// source's, in one destination transaction, once every check that needs no
// such table has passed (create.go).
//
// Units run on workers, each with its own source and destination
// connection, set up once (session settings) and kept for the run; a
// connection that saw a failed or cancelled statement is discarded. A unit
// that must follow another (partitions after the group they reference)
// starts once that one has committed.
//
// With a ledger (package ledger, reached through the Ledger interface in
// ledger.go), a run skips the units whose verified copy the ledger holds,
// claims each other unit on the destination before it starts, so that
// several processes share one selection (schedule.go), and writes each
// unit's success row in the unit's destination transaction, in the same
// round trip as its COMMIT.
package copy
