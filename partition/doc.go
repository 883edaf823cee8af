// Package partition owns the catalog: resolving table names the way each
// server's regclass does, expanding partitioned parents into their leaf
// partitions, reading column lists and types, and turning a selection into
// units with their column list and copy format; and, for --create-missing,
// working out what the destination lacks and must be created (create.go).
// It reads catalogs only; it never locks or writes.
package partition
