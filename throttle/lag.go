package throttle

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Querier is a connection a gate reads a server's state through.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Primary is a server whose standbys' replication lag a ReplicaLag gate
// watches.
type Primary struct {
	Side string // "source" or "destination"
	Q    Querier
}

// ReplicaLag holds the next unit back while a standby of a watched server
// replays more than Max behind it, checking every Every (1s when zero).
// Lag is pg_stat_replication.replay_lag, the server's own measure of how
// long ago the WAL a standby has just replayed was written.
type ReplicaLag struct {
	Max     time.Duration
	Servers []Primary
	Every   time.Duration
	Logger  *slog.Logger
}

// lagSQL is the largest replay lag among a server's standbys, and which.
const lagSQL = `
	SELECT COALESCE(max(EXTRACT(epoch FROM replay_lag)), 0)::float8,
	       COALESCE(string_agg(application_name || COALESCE(' ' || host(client_addr), ''), ', ')
	                FILTER (WHERE replay_lag > $1::interval), '')
	FROM pg_catalog.pg_stat_replication`

// Lag reads a server's largest standby replay lag and the standbys over
// limit.
func Lag(ctx context.Context, q Querier, limit time.Duration) (time.Duration, string, error) {
	var secs float64
	var over string
	err := q.QueryRow(ctx, lagSQL, fmt.Sprintf("%d milliseconds", limit.Milliseconds())).Scan(&secs, &over)
	return time.Duration(secs * float64(time.Second)), over, err
}

// Admit implements Gate.
func (r *ReplicaLag) Admit(ctx context.Context, next Next) error {
	every := r.Every
	if every <= 0 {
		every = time.Second
	}
	logger := r.Logger
	if logger == nil {
		logger = slog.Default()
	}
	waited := false
	for {
		var behind []string
		for _, s := range r.Servers {
			lag, over, err := Lag(ctx, s.Q, r.Max)
			if err != nil {
				return fmt.Errorf("%s: read replication lag: %w", s.Side, err)
			}
			if lag > r.Max {
				behind = append(behind, fmt.Sprintf("%s standby %s replays %s behind", s.Side, over, lag.Round(100*time.Millisecond)))
			}
		}
		if len(behind) == 0 {
			if waited {
				logger.Info("replication lag back under --max-replica-lag; starting", "unit", next.Unit)
			}
			return nil
		}
		logger.Warn("waiting before the next unit: replication lag over --max-replica-lag",
			"unit", next.Unit, "max", r.Max, "lag", strings.Join(behind, "; "))
		waited = true
		if err := sleep(ctx, every); err != nil {
			return err
		}
	}
}
