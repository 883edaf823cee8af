package partition

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// RowSecurityError says row-level security would hide rows of a table from
// the role lockstep connects as. lockstep reads and writes with
// row_security off, as pg_dump does, so the server refuses instead of
// silently filtering; this error says what the role needs. Not retryable:
// the role or the table has to change.
type RowSecurityError struct {
	Side, Table string
	Role        string // empty when found at run time
	Policy      string // one of the table's policies; empty when it has none, or at run time
	Forced      bool   // the role owns the table, which forces row security on its owner
	Cause       string // the server's refusal, when found at run time
}

func (e *RowSecurityError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s: ", e.Side, e.Table)
	switch {
	case e.Cause != "":
		fmt.Fprintf(&b, "%s (row-level security was enabled after the plan)", e.Cause)
	case e.Policy == "":
		fmt.Fprintf(&b, "row-level security is enabled without any policy, which hides every row from role %s", e.Role)
	case e.Forced:
		fmt.Fprintf(&b, "row-level security is forced on the table's owner %s (policy %q)", e.Role, e.Policy)
	default:
		fmt.Fprintf(&b, "row-level security policy %q would hide rows from role %s", e.Policy, e.Role)
	}
	role := e.Role
	if role == "" {
		role = "the role"
	}
	b.WriteString("; lockstep must see every row: ")
	if e.Forced {
		fmt.Fprintf(&b, "ALTER ROLE %s BYPASSRLS, run as a superuser, or ALTER TABLE %s NO FORCE ROW LEVEL SECURITY", role, e.Table)
	} else {
		fmt.Fprintf(&b, "ALTER ROLE %s BYPASSRLS, or run as the table's owner or a superuser", role)
	}
	return b.String()
}

// rowSecurityOf finds the tables whose row-level security applies to the
// current role, by PostgreSQL's own rule (row_security_active: the table
// has row security, and the role is neither a superuser, nor BYPASSRLS, nor
// its owner unless the table forces row security on its owner), and returns
// for each the error that says what the role needs.
func rowSecurityOf(ctx context.Context, q Querier, side string, ts []Table) (map[uint32]error, error) {
	rows, err := q.Query(ctx, `
		SELECT c.oid, current_user::text, pg_catalog.pg_has_role(c.relowner, 'USAGE'),
		       (SELECT min(p.polname::text) FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid)
		FROM unnest($1::oid[]) AS u(oid)
		JOIN pg_catalog.pg_class c ON c.oid = u.oid
		WHERE c.relrowsecurity AND pg_catalog.row_security_active(c.oid)`, oidsOf(ts))
	if err != nil {
		return nil, err
	}
	byOID := make(map[uint32]Table, len(ts))
	for _, t := range ts {
		byOID[t.OID] = t
	}
	out := map[uint32]error{}
	var rel uint32
	var role string
	var owner bool
	var policy *string
	_, err = pgx.ForEachRow(rows, []any{&rel, &role, &owner, &policy}, func() error {
		e := &RowSecurityError{Side: side, Table: byOID[rel].String(), Role: role, Forced: owner}
		if policy != nil {
			e.Policy = *policy
		}
		out[rel] = e
		return nil
	})
	return out, err
}

// RowSecurityRefusal turns the server's refusal to read or write t under
// row_security = off (row security was enabled after the plan) into a
// *RowSecurityError; other errors come back unchanged.
func RowSecurityRefusal(side string, t Table, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" && strings.Contains(pgErr.Message, "row-level security") {
		return &RowSecurityError{Side: side, Table: t.String(), Cause: pgErr.Message}
	}
	return err
}
