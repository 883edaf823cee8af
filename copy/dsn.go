package copy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ParseDSN parses a connection string as libpq does, and refuses one whose
// host name holds an @: libpq and pgx end a URL's user part at its first @,
// so a password with an @ left unencoded would leave the rest of itself in
// the host name, which messages print and DNS is asked about.
//
// Its errors never quote the connection string nor any piece of it: a
// malformed string is just where the masking of passwords cannot tell
// where a password ends (a space in an unquoted key=value password, an
// unclosed quote, an unencoded @ or %), and pgx's errors quote both the
// string and the piece that failed.
func ParseDSN(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("invalid connection string (not shown: it may hold a password): %s", parseCause(err))
	}
	hosts := []string{cfg.Host}
	for _, f := range cfg.Fallbacks {
		hosts = append(hosts, f.Host)
	}
	for _, h := range hosts {
		if !strings.HasPrefix(h, "/") && strings.Contains(h, "@") {
			return nil, errors.New("invalid connection string (not shown: it may hold a password): a host name holds an @; " +
				"in a URL, write an @ of the user name or password as %40")
		}
	}
	return cfg, nil
}

// parseCause is what pgx found wrong with a connection string, without the
// string (pgx quotes it with only the passwords it recognises masked) and
// without the quoted piece of it some causes carry.
func parseCause(err error) string {
	var pce *pgconn.ParseConfigError
	if !errors.As(err, &pce) {
		return "it does not parse"
	}
	msg := pce.Error()
	inner := ""
	if u := errors.Unwrap(pce); u != nil {
		inner = u.Error()
		msg = strings.TrimSuffix(msg, " ("+inner+")")
	}
	// "cannot parse `STRING`: MSG": pgx's messages hold no backquote.
	if i := strings.LastIndex(msg, "`: "); i >= 0 {
		msg = msg[i+3:]
	} else {
		msg = "it does not parse"
	}
	// Causes end with the piece that failed, quoted: keep what comes before.
	inner = strings.ReplaceAll(inner, `"="`, "=")
	if i := strings.IndexByte(inner, '"'); i >= 0 {
		inner = strings.TrimRight(inner[:i], " :")
		for _, w := range []string{" in", " after", " at"} {
			inner = strings.TrimSuffix(inner, w)
		}
	}
	if inner == "" {
		return msg
	}
	return msg + " (" + inner + ")"
}

// RedactDSN is a connection string as messages and reports may show it:
// its passwords (and secrets) masked, or, when it does not parse, a note
// that it is not shown (see ParseDSN).
func RedactDSN(dsn string, secrets ...string) string {
	if dsn == "" {
		return ""
	}
	if _, err := ParseDSN(dsn); err != nil {
		return "(invalid connection string, not shown)"
	}
	return Redact(dsn, secrets...)
}
