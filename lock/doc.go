// Package lock owns table-lock acquisition: one bounded attempt under
// lock_timeout, a report of who blocked it (pg_blocking_pids, watched from a
// second connection while the attempt waits), and the backoff between
// attempts. A lock waits in the server's queue for at most its timeout, so
// lockstep never stalls the writers and readers that queue behind it for
// longer than that.
package lock
