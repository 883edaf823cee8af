// Package pgtest gives tests real PostgreSQL servers. It is imported only by
// _test.go files.
//
// A test package calls Main from its TestMain. Main obtains one source and one
// destination server for the whole package, runs the tests and then stops and
// removes everything it started. Tests call Get for that pair, Env.NewDBs for
// a fresh database on each server, and NewServer for a private server they
// may stop and start (fault tests), or one that takes TLS connections only
// (NewServer with WithTLS; local binaries only), and NewProxy for a TCP
// proxy that can stall or cut the network between a client and a server,
// and (as root) NewPartition for a link to a private server whose packets
// can be dropped.
//
// Servers come from the first of these that applies:
//
//  1. LOCKSTEP_TEST_SOURCE and LOCKSTEP_TEST_DEST: postgres:// URLs of admin
//     (superuser) connections to servers the user runs. pgtest only creates
//     and drops databases on them; tests that need to stop a server or start
//     an extra one are skipped.
//  2. LOCKSTEP_TEST_DOCKER=1 and a reachable Docker engine: postgres:15
//     containers (dockertest). Without an engine pgtest falls back to 3.
//  3. Local binaries (initdb, pg_ctl): LOCKSTEP_TEST_PGBIN, then $PATH, then
//     the newest /usr/lib/postgresql/*/bin, then `pg_config --bindir`. Each
//     server is a throwaway cluster under os.TempDir on a free loopback port.
//     When the tests run as root the servers run as the postgres system user
//     (or nobody), because PostgreSQL refuses to run as root.
//
// What pgtest promises: servers it starts accept host connections only with a
// password (scram-sha-256), so wrong-password handling can be tested; they are
// tuned for speed, not durability (fsync off), and autovacuum is off so that
// no background lock interferes with lock tests. Main never skips silently: if
// it cannot obtain servers it says why and exits non-zero. A test process that
// is killed can leave servers behind; the next Main that runs on the machine
// stops and removes clusters and containers whose owning process is gone.
package pgtest
