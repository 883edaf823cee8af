package redact

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Mask is what a password is replaced with.
const Mask = "xxxxx"

var (
	// The password of a postgres:// URL runs to the last @ before the
	// host, as URL parsers read it: it may itself hold @ and :.
	urlPassword = regexp.MustCompile(`(?i)(postgres(?:ql)?://[^:/?#@\s]*:)[^/?#\s]*@`)
	// A key=value password (or sslpassword, the client key's passphrase):
	// quoted as in an SQL literal (a connection string passed to dblink,
	// its quotes doubled), quoted (backslash escapes), or up to a space.
	kvPassword = regexp.MustCompile(`(?i)(\b(?:ssl)?password\s*=\s*)(''(?:\\''|\\[^']|[^'\\])*(?:''|$)|'(?:[^'\\]|\\.)*(?:'|$)|[^\s']\S*)`)
	// The keyword before an SQL password literal (CREATE/ALTER ROLE ...
	// [ENCRYPTED] PASSWORD '...').
	sqlPassword = regexp.MustCompile(`(?i)\bpassword\s+`)
)

// Passwords removes passwords from a message: those of postgres:// URLs,
// of key=value connection strings (dblink's too), SQL password literals
// (PASSWORD '...', E'...' or $$...$$, even when the text was cut short
// inside one), and each of secrets in any form it may take in a message:
// as is, percent-encoded (any mix of encoded and plain characters), quoted
// as in key=value strings, SQL literals and Go's %q, or escaped by Control.
func Passwords(msg string, secrets ...string) string {
	for _, s := range secrets {
		if s == "" {
			continue
		}
		for _, v := range variants(s) {
			msg = strings.ReplaceAll(msg, v, Mask)
		}
		msg = percentEncoded(s).ReplaceAllLiteralString(msg, Mask)
	}
	msg = urlPassword.ReplaceAllString(msg, "${1}"+Mask+"@")
	msg = kvPassword.ReplaceAllString(msg, "${1}"+Mask)
	return sqlLiterals(msg)
}

// variants are the quoted forms of s, longest first so that a form
// containing another is replaced whole.
func variants(s string) []string {
	kv := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s)
	var out []string
	for _, f := range []string{s, kv, strings.ReplaceAll(s, "'", "''"), Control(s)} {
		out = append(out, f, unquote(strconv.Quote(f)))
	}
	slices.SortFunc(out, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	return slices.Compact(out)
}

// percentEncoded matches s with any of its characters percent-encoded
// (hex digits in either case, a space also as +), as URLs carry it.
func percentEncoded(s string) *regexp.Regexp {
	var b strings.Builder
	for _, r := range s {
		b.WriteString("(?:" + regexp.QuoteMeta(string(r)))
		if r == ' ' {
			b.WriteString(`|\+`)
		}
		b.WriteString("|")
		for _, c := range []byte(string(r)) {
			fmt.Fprintf(&b, "%%(?i:%02x)", c)
		}
		b.WriteString(")")
	}
	return regexp.MustCompile(b.String())
}

func unquote(q string) string { return q[1 : len(q)-1] }

// sqlLiterals replaces the string literal after each PASSWORD keyword.
func sqlLiterals(msg string) string {
	var b strings.Builder
	rest := msg
	for {
		loc := sqlPassword.FindStringIndex(rest)
		if loc == nil {
			b.WriteString(rest)
			return b.String()
		}
		b.WriteString(rest[:loc[1]])
		rest = rest[loc[1]:]
		if n := literalLen(rest); n > 0 {
			b.WriteString("'" + Mask + "'")
			rest = rest[n:]
		}
	}
}

// literalLen is the length of the SQL string literal s starts with ('...',
// E'...', U&'...', $tag$...$tag$), to the end of s when it is not closed;
// 0 when s starts with none.
func literalLen(s string) int {
	i, backslash := 0, false
	switch {
	case len(s) > 1 && (s[0] == 'E' || s[0] == 'e') && s[1] == '\'':
		i, backslash = 1, true
	case len(s) > 2 && (s[0] == 'U' || s[0] == 'u') && s[1] == '&' && s[2] == '\'':
		i = 2
	case strings.HasPrefix(s, "$"):
		end := strings.IndexByte(s[1:], '$')
		if end < 0 || !validTag(s[1:1+end]) {
			return 0
		}
		tag := s[:end+2]
		if close := strings.Index(s[len(tag):], tag); close >= 0 {
			return len(tag) + close + len(tag)
		}
		return len(s)
	}
	if i >= len(s) || s[i] != '\'' {
		return 0
	}
	for i++; i < len(s); i++ {
		switch {
		case backslash && s[i] == '\\':
			i++
		case s[i] == '\'' && i+1 < len(s) && s[i+1] == '\'':
			i++
		case s[i] == '\'':
			return i + 1
		}
	}
	return len(s)
}

func validTag(t string) bool {
	for i, r := range t {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= 0x80 || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
