// Package ledger owns the run record that lockstep keeps in the destination
// database: which runs there were (host, pid, version, options, outcome),
// every attempt at every unit (figures, checksums, the shape of its columns,
// the error), the claims through which several processes share one
// selection, the resume rule that says which earlier copy can be trusted,
// and the status read from all of it.
//
// What it promises:
//
//   - A unit's success row is written in the unit's own destination
//     transaction (Success gives the statement; package copy sends it in the
//     same round trip as the COMMIT), so the data and its record commit
//     together or not at all. Failures are written afterwards, in their own
//     short transaction, on the ledger's connection.
//   - Claims are session-level advisory locks held on one dedicated
//     connection per process: a claim vanishes with the process (or its
//     connection), so there is nothing stale to clean up. A claim is taken
//     before the unit's record is read again, so a unit finished by another
//     process in between is seen.
//   - The tables live in one schema (lockstep by default), created on first
//     use and versioned by a row in its version table: a newer lockstep
//     upgrades an older ledger in one transaction; an older one refuses a
//     newer ledger. Two processes starting at once set it up one after the
//     other (a transaction-level advisory lock).
//   - Error texts and options are stored with passwords removed.
//
// All of its SQL is here; package copy reaches it through a small interface
// (copy.Ledger), which --ledger none replaces with one that does nothing.
package ledger
