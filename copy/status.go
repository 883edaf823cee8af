package copy

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"lockstep/ledger"
)

// ReadStatus reads the ledger in schema on the destination, changing
// nothing anywhere: recent runs and, for a selection (planned exactly as a
// copy plans it, so its units and their shapes are the copy's) or for a
// run, the state of each unit. Everything wrong with the input, a ledger
// newer than this lockstep or an unknown run included, is a
// *BadInputError.
func ReadStatus(ctx context.Context, opts Options, schema string, q ledger.StatusQuery) (*ledger.Status, error) {
	if !opts.Selection.Empty() {
		opts.Ledger = nil
		opts.statusOnly = true
		p, err := MakePlan(ctx, opts)
		if err != nil {
			return nil, err
		}
		q.Units = p.LedgerUnits()
	}
	if opts.Dest == "" {
		return nil, &BadInputError{errors.New("destination: no connection string (--dest or LOCKSTEP_DEST)")}
	}
	stall := opts.StallTimeout
	if stall == 0 {
		stall = DefaultStallTimeout
	}
	dst, err := parseSide("destination", opts.Dest, stall)
	if err != nil {
		return nil, &BadInputError{err}
	}
	conn, err := dst.connect(ctx)
	if err != nil {
		return nil, &BadInputError{err}
	}
	defer closeConn(ctx, conn)
	if err := checkVersion(dst.name, conn); err != nil {
		return nil, &BadInputError{err}
	}
	// One snapshot for every read.
	if err := exec(ctx, conn, beginSnapshot); err != nil {
		return nil, err
	}
	defer rollback(ctx, conn)
	st, err := ledger.ReadStatus(ctx, conn, schema, q)
	var newer *ledger.NewerError
	var noRun *ledger.NoRunError
	if errors.As(err, &newer) || errors.As(err, &noRun) {
		return nil, &BadInputError{err}
	}
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "42501" { // insufficient_privilege
		s := pgx.Identifier{schema}.Sanitize()
		return nil, &BadInputError{fmt.Errorf("%w (GRANT USAGE ON SCHEMA %s and SELECT ON ALL TABLES IN SCHEMA %s to the role)", err, s, s)}
	}
	return st, err
}
