package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lockstep/internal/pgtest"
)

// --report is written for every exit, flag errors included, with the exit
// code the process returns.
func TestReportWrittenForEveryExit(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
	pgtest.Exec(t, dst, "CREATE TABLE t (id int PRIMARY KEY)")
	dir := t.TempDir()
	cases := []struct {
		name string
		args []string // the report flag is added where the case says {report}
		code int
		want string
	}{
		{"unknown flag", []string{"copy", "--source", src, "--dest", dst, "--table", "t", "--frobnicate", "--report", "{report}"}, 2, "frobnicate"},
		{"bad flag value", []string{"verify", "--report={report}", "--source", src, "--jobs", "many", "--dest", dst, "--table", "t"}, 2, "many"},
		{"flag after a bad one", []string{"copy", "--lock-timeout", "soon", "-report", "{report}"}, 2, "soon"},
		{"unexpected argument", []string{"copy", "--report", "{report}", "--source", src, "--dest", dst, "stray"}, 2, "stray"},
		{"mode none", []string{"verify", "--report", "{report}", "--source", src, "--dest", dst, "--table", "t", "--mode", "none"}, 2, "--mode none"},
		{"key without diff", []string{"verify", "--report", "{report}", "--source", src, "--dest", dst, "--table", "t", "--key", "id"}, 2, "go with --diff"},
		{"no tables file", []string{"copy", "--report", "{report}", "--source", src, "--dest", dst, "--tables-from", filepath.Join(dir, "nope")}, 2, "--tables-from"},
		{"missing table", []string{"copy", "--report", "{report}", "--source", src, "--dest", dst, "--table", "nope"}, 2, "does not exist"},
		{"mismatch", []string{"verify", "--report", "{report}", "--source", src, "--dest", dst, "--table", "t"}, 4, "verification failed"},
		{"repair file not writable", []string{"verify", "--report", "{report}", "--source", src, "--dest", dst, "--table", "t",
			"--diff", "--diff-sql", filepath.Join(dir, "no", "such", "dir.sql")}, 4, "--diff-sql"},
		{"ok", []string{"copy", "--report", "{report}", "--source", src, "--dest", dst, "--table", "t"}, 0, ""},
	}
	for i, c := range cases {
		report := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".json")
		args := make([]string, len(c.args))
		for j, a := range c.args {
			args[j] = strings.ReplaceAll(a, "{report}", report)
		}
		code, out, errOut := lockstep(t, context.Background(), args...)
		if code != c.code {
			t.Errorf("%d %s: exit %d, want %d\n%s%s", i, c.name, code, c.code, out, errOut)
		}
		b, err := os.ReadFile(report)
		if err != nil {
			t.Errorf("%s: no report: %v", c.name, err)
			continue
		}
		var rep jsonReport
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Errorf("%s: report: %v\n%s", c.name, err, b)
			continue
		}
		if rep.ExitCode != code || !strings.Contains(rep.Error, c.want) || (c.want == "") != (rep.Error == "") {
			t.Errorf("%s: report says exit %d, error %q; want exit %d and an error naming %q", c.name, rep.ExitCode, rep.Error, code, c.want)
		}
	}
	// plan has no --report: a flag error writes nothing.
	report := filepath.Join(dir, "plan.json")
	if code, _, _ := lockstep(t, context.Background(), "plan", "--report", report); code != 2 {
		t.Errorf("plan --report: exit %d", code)
	}
	if _, err := os.Stat(report); !os.IsNotExist(err) {
		t.Errorf("plan --report wrote %s: %v", report, err)
	}
}
