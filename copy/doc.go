// Package copy owns the unit protocol and the run loop.
//
// For each unit: the destination transaction locks the table ACCESS
// EXCLUSIVE first; then the source opens a REPEATABLE READ READ ONLY
// transaction and locks the table EXCLUSIVE before any query, so its snapshot
// sees every committed write; the destination truncates; the source's COPY TO
// streams through a buffered pipe into the destination's COPY FROM while the
// source rows are hashed on the way; the destination's stored rows are read
// back and hashed inside its transaction; on a match, and once a round trip
// has shown the source session (so its lock) still alive, the destination
// commits, and only then the source commits and releases its lock. Any failure before
// the destination's commit rolls both back. A destination commit whose
// outcome is unknown is re-checked from a new connection while the source
// lock is still held.
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
// connection; a connection that saw a failed or cancelled statement is
// discarded.
package copy
