package partition

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"lockstep/verify"
)

// Querier is what catalog reads need: a *pgx.Conn or a pgx.Tx; the same
// as the diff's.
type Querier = verify.Querier

// Table is a resolved relation on one server.
type Table struct {
	OID    uint32
	Schema string
	Name   string
	Kind   string // pg_class.relkind: "r" ordinary, "p" partitioned, ...
	Bound  string // for a leaf listed by Leaves: its partition bounds, outermost first
}

// Partitioned reports whether the table is a declaratively partitioned parent.
func (t Table) Partitioned() bool { return t.Kind == "p" }

// Ident is the table's quoted identifier.
func (t Table) Ident() pgx.Identifier { return pgx.Identifier{t.Schema, t.Name} }

// String is the table's name as SQL would write it.
func (t Table) String() string { return t.Ident().Sanitize() }

// NotFoundError says a table does not exist on one side. Not retryable.
type NotFoundError struct {
	Side string
	Name string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("%s: table %s does not exist", e.Side, e.Name)
}

// Resolve looks a name up as the server's regclass would (search_path,
// quoting and all). A name that is not valid SQL is an error naming it.
func Resolve(ctx context.Context, q Querier, side, name string) (Table, error) {
	var t Table
	err := q.QueryRow(ctx, `
		SELECT c.oid, n.nspname, c.relname, c.relkind::text
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = pg_catalog.to_regclass($1)`, name).Scan(&t.OID, &t.Schema, &t.Name, &t.Kind)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, &NotFoundError{Side: side, Name: name}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42602" || pgErr.Code == "42601" || pgErr.Code == "3F000" || pgErr.Code == "42P01") {
		// invalid name syntax, or a schema that does not exist
		return t, &NotFoundError{Side: side, Name: fmt.Sprintf("%s (%s)", name, pgErr.Message)}
	}
	if err != nil {
		return t, fmt.Errorf("%s: resolve table %s: %w", side, name, err)
	}
	switch t.Kind {
	case "r", "p":
		return t, nil
	}
	return t, &UnsupportedError{Side: side, Table: t.String(), Why: "is a " + kindName(t.Kind) + ", not a table"}
}

// UnsupportedError says an object cannot be copied as asked. Not retryable.
type UnsupportedError struct {
	Side, Table, Why string
}

func (e *UnsupportedError) Error() string { return fmt.Sprintf("%s: %s %s", e.Side, e.Table, e.Why) }

func kindName(k string) string {
	switch k {
	case "v":
		return "view"
	case "m":
		return "materialized view"
	case "f":
		return "foreign table"
	case "S":
		return "sequence"
	case "r":
		return "table"
	case "p":
		return "partitioned table"
	case "i", "I":
		return "index"
	case "c":
		return "composite type"
	case "t":
		return "TOAST table"
	}
	return "relation of kind " + k
}

// Column is one column of a table as the catalog describes it.
type Column struct {
	Name    string
	Type    string // format_type with type modifier, user types schema-qualified
	TypeOID uint32
	TypMod  int32
	BuiltIn bool // the type and any element/base type ship with PostgreSQL
	// Wire, for a user type whose binary form carries no OID, names that
	// form: "enum" (an enum travels as its label) or "domain over T" (a
	// domain travels as its built-in base type T); "" otherwise.
	Wire string
	// BaseOID and BaseTypMod, for a domain whose Wire is set, are its
	// base type and modifier (0 and -1 otherwise).
	BaseOID    uint32
	BaseTypMod int32
	// Composite, for a type that is or holds composite types or user range
	// types (directly, or through arrays, domains, ranges and other
	// composites), lists each of them with its attributes in order, or its
	// subtype: a composite's text form fills attributes by position, and a
	// range's bounds are parsed as its subtype, so one name must mean one
	// structure on both servers. "" for every other type.
	Composite  string
	Generated  bool
	NotNull    bool
	HasDefault bool
}

// PinCatalogPath sets search_path to pg_catalog for the rest of the
// transaction q runs in, so that format_type qualifies every other type.
func PinCatalogPath(ctx context.Context, q Querier) error {
	rows, err := q.Query(ctx, "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)")
	if err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = pgx.Identifier{n}.Sanitize()
	}
	return strings.Join(q, ", ")
}
