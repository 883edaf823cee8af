package copy

import (
	"errors"
	"regexp"
	"strings"
)

// BadInputError wraps what was found wrong before anything was copied: a
// connection string, a server, a table, a schema difference. Nothing was
// changed on either side. Not retryable without changing the input.
type BadInputError struct{ Err error }

func (e *BadInputError) Error() string { return e.Err.Error() }
func (e *BadInputError) Unwrap() error { return e.Err }

// ErrInterrupted says the run was stopped (signal or deadline) with units
// left; the in-flight ones were rolled back. Re-running resumes safely.
var ErrInterrupted = errors.New("interrupted")

var (
	urlPassword = regexp.MustCompile(`(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@`)
	kvPassword  = regexp.MustCompile(`(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
)

// Redact removes passwords from a message: those of URLs and key=value
// strings, and each secret given.
func Redact(msg string, secrets ...string) string {
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	msg = urlPassword.ReplaceAllString(msg, "${1}xxxxx@")
	return kvPassword.ReplaceAllString(msg, "${1}xxxxx")
}
