package redact

import (
	"fmt"
	"strings"
	"unicode"
)

// Control escapes what could make s escape its line or mislead a reader:
// C0 and C1 control characters and DEL (newline and carriage return among
// them: they end an SQL comment, and ESC drives a terminal), Unicode line
// and paragraph separators, and bidirectional formatting characters (which
// reorder text on screen). They come out as Go escapes (\n, \x1b, \u202e).
// Other text, backslashes included, is unchanged, so escaping is
// idempotent.
func Control(s string) string {
	if strings.IndexFunc(s, unsafe) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if !unsafe(r) {
			b.WriteRune(r)
			continue
		}
		switch r {
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x100 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		}
	}
	return b.String()
}

func unsafe(r rune) bool {
	switch {
	case unicode.IsControl(r): // C0, DEL, C1
		return true
	case r == '\u2028' || r == '\u2029': // line and paragraph separators
		return true
	case r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069', r == '\u200e' || r == '\u200f', r == '\u061c':
		return true // bidirectional embeddings, overrides, isolates and marks
	}
	return false
}

// Text is Control for text of several lines whose line breaks are
// lockstep's own (a unit line followed by its differences): it keeps
// newlines and escapes everything else Control does. The parts of such
// text that came from a server must have been escaped with Control.
func Text(s string) string {
	if !strings.Contains(s, "\n") {
		return Control(s)
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = Control(l)
	}
	return strings.Join(lines, "\n")
}
