// Package partition owns the catalog: resolving table names the way each
// server's regclass does, expanding partitioned parents into their leaf
// partitions, reading column lists and types, and turning a selection into
// units with their column list and copy format, grouped where foreign keys
// tie tables together (groups.go), with the sequences that feed the copied
// columns (sequences.go); and, for --create-missing, working out what the
// destination lacks and must be created (create.go). Each side's catalog is
// read in a fixed number of queries whatever the number of units
// (batch.go). It reads catalogs only; it never locks or writes.
package partition
