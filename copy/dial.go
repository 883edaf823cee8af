package copy

import (
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// dialFunc opens lockstep's connections with TCP keepalives on the stall
// timeout's schedule instead of the system's (often two hours), and, where
// the platform has it, TCP_USER_TIMEOUT: a server that vanished is noticed
// within about stall while lockstep waits for an answer, and within twice
// that with data in flight.
func dialFunc(connectTimeout, stall time.Duration) pgconn.DialFunc {
	k := keepaliveFor(stall)
	d := &net.Dialer{
		Timeout: connectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: k.idle, Interval: k.interval, Count: k.count(stall),
		},
		// lockstep's own stall timeouts come first; this is the backstop.
		Control: userTimeout(2 * stall),
	}
	return d.DialContext
}
