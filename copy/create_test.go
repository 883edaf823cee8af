package copy

import (
	"errors"
	"strings"
	"testing"
)

func TestEntryAt(t *testing.T) {
	script := "SET x = 1;\n\n--\n-- Name: t; Type: TABLE; Schema: app; Owner: -\n--\n\nCREATE TABLE app.t (id int DEFAULT app.f());\n\n" +
		"--\n-- Name: c c_fk; Type: FK CONSTRAINT; Schema: app; Owner: -\n--\n\nALTER TABLE ONLY app.c ADD CONSTRAINT c_fk FOREIGN KEY (id) REFERENCES app.t(id);\n"
	pos := func(s string) int { return len([]rune(script[:strings.Index(script, s)])) + 1 }
	cases := []struct {
		pos  int
		want string
	}{
		{pos("app.f()"), "TABLE t of schema app"},
		{pos("REFERENCES"), "FK CONSTRAINT c c_fk of schema app"},
		{pos("SET"), ""},
		{0, ""},
		{len(script) + 10, ""},
	}
	for _, c := range cases {
		if got := entryAt(script, c.pos); got != c.want {
			t.Errorf("position %d: %q, want %q", c.pos, got, c.want)
		}
	}
}

func TestCreatedStay(t *testing.T) {
	err := errors.New("boom")
	if got := (*Created)(nil).stay(err); got != err {
		t.Errorf("nil: %v", got)
	}
	if got := (&Created{Tables: []string{"a"}}).stay(err); got != err {
		t.Errorf("only planned: %v", got)
	}
	c := &Created{Done: true, Tables: []string{"a", "b", "c", "d", "e", "f", "g"}}
	got := c.stay(err)
	if !errors.Is(got, err) || !strings.Contains(got.Error(), "7 table(s)") || !strings.Contains(got.Error(), "a, b, c, d, e and 2 more") ||
		!strings.Contains(got.Error(), "they stay there, empty") {
		t.Errorf("done: %v", got)
	}
}
