// Package schema runs the PostgreSQL client programs that --create-missing
// needs: pg_dump --schema-only of the tables to create, and pg_dump plus
// pg_restore --list to extract the definitions of the types they need. It
// finds the programs, refuses one older than the source server, and hands
// them the source's connection without its password on their command line
// (the password travels in PGPASSWORD in the child's environment). It
// returns plain SQL with psql's \restrict and \unrestrict lines taken out,
// for the caller to run on the destination in one transaction; it never
// connects to a server itself.
package schema
