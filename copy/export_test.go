package copy

import "time"

// SetCommitTimeouts shortens the commit point's timeouts, so that a test
// can let a COMMIT time out.
func SetCommitTimeouts(o *Options, commit, recheck time.Duration) {
	o.commitTimeout, o.recheckTimeout = commit, recheck
}
