package redact

import "testing"

func TestControl(t *testing.T) {
	cases := []struct{ in, want string }{
		{"plain \"name\" with \\ backslash", "plain \"name\" with \\ backslash"},
		{"evil\nDROP TABLE victim;--", `evil\nDROP TABLE victim;--`},
		{"a\r\tb", `a\r\tb`},
		{"\x1b]52;c;cm0K\x07", `\x1b]52;c;cm0K\x07`},
		{"del\x7f c1\u009b", `del\x7f c1\x9b`},
		{"rtl\u202eevil\u2066", `rtl\u202eevil\u2066`},
		{"line\u2028sep", `line\u2028sep`},
		{"ünïcødé ok", "ünïcødé ok"},
	}
	for _, c := range cases {
		got := Control(c.in)
		if got != c.want {
			t.Errorf("Control(%q) = %q, want %q", c.in, got, c.want)
		}
		if again := Control(got); again != got {
			t.Errorf("Control is not idempotent on %q: %q", got, again)
		}
	}
	if got, want := Text("unit \x1b[2J\n  diff\tline"), "unit \\x1b[2J\n  diff\\tline"; got != want {
		t.Errorf("Text = %q, want %q", got, want)
	}
}
