package copy

import (
	"net"
	"time"
)

// SetCommitTimeouts shortens the commit point's timeouts, so that a test
// can let a COMMIT time out.
func SetCommitTimeouts(o *Options, commit, recheck time.Duration) {
	o.commitTimeout, o.recheckTimeout = commit, recheck
}

// SetConnWrapper wraps every connection a run opens, for tests that watch
// the traffic.
func SetConnWrapper(o *Options, wrap func(side string, c net.Conn) net.Conn) {
	o.wrapConn = wrap
}
