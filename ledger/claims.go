package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ClaimKey is the advisory lock key (one bigint) of a unit's claim.
func ClaimKey(schema, unitKey string) int64 { return key64(schema, "claim", unitKey) }

// Claim claims a unit for this process: a session-level advisory lock on
// the ledger's connection. It reports false when another live process
// holds it. Once claimed, the unit's latest record is read again (in a
// statement of its own, so after the claim: a copy another process
// committed before giving its claim up is seen) and returned.
func (l *Ledger) Claim(ctx context.Context, unitKey string) (bool, *Record, error) {
	var got bool
	var rec *Record
	err := l.do(ctx, func(c *pgx.Conn) error {
		b := &pgx.Batch{}
		b.Queue("SELECT pg_catalog.pg_try_advisory_lock($1)", ClaimKey(l.cfg.Schema, unitKey))
		b.Queue(latestSQL(l.schema, "true"), []string{unitKey})
		br := c.SendBatch(ctx, b)
		defer br.Close()
		if err := br.QueryRow().Scan(&got); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if _, rec, err = scanKeyed(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	if err != nil {
		if got {
			l.Release(ctx, unitKey)
		}
		return false, nil, fmt.Errorf("destination: ledger: claim: %w", err)
	}
	return got, rec, nil
}

// Release gives a claim up. It cannot fail in a way that matters: a claim
// that cannot be released goes with the ledger's connection.
func (l *Ledger) Release(ctx context.Context, unitKey string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := l.do(rctx, func(c *pgx.Conn) error {
		_, err := c.Exec(rctx, "SELECT pg_catalog.pg_advisory_unlock($1)", ClaimKey(l.cfg.Schema, unitKey))
		return err
	})
	if err != nil {
		l.log.Warn("ledger: releasing a claim failed; closing the ledger's connection, which releases it", "error", err)
		l.mu.Lock()
		if l.conn != nil {
			l.conn.Close(rctx)
		}
		l.mu.Unlock()
	}
}
