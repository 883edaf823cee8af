package copy

import (
	"errors"
	"fmt"

	"lockstep/internal/redact"
)

// BadInputError wraps what was found wrong before anything was copied: a
// connection string, a server, a table, a schema difference. Nothing was
// changed on either side. Not retryable without changing the input.
type BadInputError struct{ Err error }

func (e *BadInputError) Error() string { return e.Err.Error() }
func (e *BadInputError) Unwrap() error { return e.Err }

// CommitUnknownError says the destination's COMMIT got no answer and the
// re-check that would have decided it failed too: the destination may hold
// the unit's copy, or not. Not an interruption, even when the run was being
// stopped: nothing says it was rolled back. Verify the unit.
type CommitUnknownError struct {
	Commit, Recheck error
}

func (e *CommitUnknownError) Error() string {
	return fmt.Sprintf("destination: commit outcome unknown (%v), and the re-check failed: %v; the destination may hold the copy: verify it", e.Commit, e.Recheck)
}

// ErrInterrupted says the run was stopped (signal or deadline) with units
// left; the in-flight ones were rolled back. Re-running resumes safely.
var ErrInterrupted = errors.New("interrupted")

// Redact removes passwords from a message: those of URLs, key=value
// strings and SQL password literals, and each secret given, in any form it
// may take (see redact.Passwords).
func Redact(msg string, secrets ...string) string {
	return redact.Passwords(msg, secrets...)
}
