package schema

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// libpqKeywords are the connection parameters libpq knows (PostgreSQL 17).
// lockstep's connection strings are read by pgx, which also takes run-time
// settings (search_path=..., say) and options of its own; libpq refuses any
// keyword it does not know, so only these are handed on to pg_dump.
var libpqKeywords = []string{
	"host", "hostaddr", "port", "dbname", "user", "passfile", "require_auth", "channel_binding",
	"connect_timeout", "client_encoding", "options", "application_name", "fallback_application_name",
	"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
	"gssencmode", "sslmode", "requiressl", "sslnegotiation", "sslcompression", "sslcert", "sslkey",
	"sslcertmode", "sslrootcert", "sslcrl", "sslcrldir", "sslsni", "requirepeer",
	"ssl_min_protocol_version", "ssl_max_protocol_version", "krbsrvname", "gsslib", "gssdelegation",
	"service", "target_session_attrs", "load_balance_hosts",
}

// Conn is a connection to hand to a client program: a libpq connection
// string without the password, and the password, which goes into the
// child's environment (PGPASSWORD) and never onto its command line, where
// every user of the host could read it.
type Conn struct {
	Info     string // for --dbname; empty: libpq's environment variables and defaults alone
	Password string
}

// Env is the child's environment: this process's, with PGPASSWORD set to
// the connection's password when it has one.
func (c Conn) Env(environ []string) []string {
	if c.Password == "" {
		return environ
	}
	env := slices.DeleteFunc(slices.Clone(environ), func(kv string) bool { return strings.HasPrefix(kv, "PGPASSWORD=") })
	return append(env, "PGPASSWORD="+c.Password)
}

// ParseConn turns a connection string lockstep accepts (a postgres:// URL
// or key=value pairs) into one for libpq: the password is taken out,
// pgx's own name "database" becomes "dbname", keywords libpq does not know
// are dropped, and each of defaults is added unless the string sets it.
// An sslpassword is refused: libpq takes it from nowhere but its
// connection string, which would put it on pg_dump's command line.
func ParseConn(dsn string, defaults map[string]string) (Conn, error) {
	var c Conn
	var pairs [][2]string
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return c, fmt.Errorf("cannot read the connection string for pg_dump: %w", redactURLError(err))
		}
		if u.User != nil {
			c.Password, _ = u.User.Password()
			u.User = url.User(u.User.Username())
			if u.User.Username() == "" {
				u.User = nil
			}
		}
		q := u.Query()
		for k, vs := range q {
			for _, v := range vs {
				pairs = append(pairs, [2]string{k, v})
			}
		}
		slices.SortStableFunc(pairs, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
		kept, err := keep(pairs, &c, defaults)
		if err != nil {
			return c, err
		}
		nq := url.Values{}
		for _, p := range kept {
			nq.Add(p[0], p[1])
		}
		u.RawQuery = nq.Encode()
		c.Info = u.String()
		return c, nil
	}
	pairs, err := parseKeywordValue(dsn)
	if err != nil {
		return c, err
	}
	kept, err := keep(pairs, &c, defaults)
	if err != nil {
		return c, err
	}
	parts := make([]string, len(kept))
	for i, p := range kept {
		parts[i] = p[0] + "=" + quoteValue(p[1])
	}
	c.Info = strings.Join(parts, " ")
	return c, nil
}

// redactURLError keeps a URL parse error from echoing the URL, password
// and all.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// keep filters the pairs as ParseConn says and appends the defaults.
func keep(pairs [][2]string, c *Conn, defaults map[string]string) ([][2]string, error) {
	var out [][2]string
	set := map[string]bool{}
	for _, p := range pairs {
		k := p[0]
		if k == "database" {
			k = "dbname"
		}
		switch {
		case k == "password":
			c.Password = p[1]
		case k == "sslpassword":
			return nil, errors.New("the connection string has an sslpassword, which pg_dump could only be given on its command line: " +
				"use a client key without a passphrase for --create-missing")
		case slices.Contains(libpqKeywords, k):
			out = append(out, [2]string{k, p[1]})
			set[k] = true
		}
	}
	keys := make([]string, 0, len(defaults))
	for k := range defaults {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !set[k] {
			out = append(out, [2]string{k, defaults[k]})
		}
	}
	return out, nil
}

// parseKeywordValue reads libpq's key=value syntax: values may be single
// quoted, and a backslash escapes the next character.
func parseKeywordValue(s string) ([][2]string, error) {
	var out [][2]string
	i := 0
	skip := func() {
		for i < len(s) && strings.ContainsRune(" \t\n\r\f\v", rune(s[i])) {
			i++
		}
	}
	for {
		skip()
		if i >= len(s) {
			return out, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && !strings.ContainsRune(" \t\n\r\f\v", rune(s[i])) {
			i++
		}
		key := s[start:i]
		skip()
		if i >= len(s) || s[i] != '=' {
			return nil, fmt.Errorf("cannot read the connection string for pg_dump: %q is not followed by =", key)
		}
		i++
		skip()
		var v strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				ch := s[i]
				i++
				if ch == '\\' && i < len(s) {
					v.WriteByte(s[i])
					i++
					continue
				}
				if ch == '\'' {
					closed = true
					break
				}
				v.WriteByte(ch)
			}
			if !closed {
				return nil, fmt.Errorf("cannot read the connection string for pg_dump: the value of %s lacks its closing quote", key)
			}
		} else {
			for i < len(s) && !strings.ContainsRune(" \t\n\r\f\v", rune(s[i])) {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				v.WriteByte(s[i])
				i++
			}
		}
		out = append(out, [2]string{key, v.String()})
	}
}

// quoteValue writes a value as libpq reads it back: single quoted, with
// quotes and backslashes escaped.
func quoteValue(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(v) + "'"
}
