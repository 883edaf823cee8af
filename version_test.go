package main

import (
	"context"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Path: "lockstep", Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2025-03-14T02:15:00Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	got := parseBuildInfo(bi).String()
	if !strings.HasPrefix(got, "lockstep (devel), revision 0123456789abcdef0123456789abcdef01234567 (modified) of 2025-03-14T02:15:00Z, go1.") {
		t.Errorf("version line: %q", got)
	}
	bi.Main.Version, bi.Settings = "v1.2.3", nil
	if got := parseBuildInfo(bi).String(); !strings.HasPrefix(got, "lockstep v1.2.3, go1.") {
		t.Errorf("released, no VCS: %q", got)
	}
	// -X main.revision stands in where the build had no VCS information.
	defer func(r string) { revision = r }(revision)
	revision = "feedface"
	if got := parseBuildInfo(bi).String(); !strings.HasPrefix(got, "lockstep v1.2.3, revision feedface, go1.") {
		t.Errorf("revision from -ldflags: %q", got)
	}

	code, out, errOut := lockstep(t, context.Background(), "--version")
	if code != 0 || !strings.HasPrefix(out, "lockstep ") || strings.Count(out, "\n") != 1 || errOut != "" {
		t.Errorf("lockstep --version: exit %d: %q %q", code, out, errOut)
	}
}
