package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// revision is the VCS revision, for builds that carry no VCS information
// (a Docker build, whose context has no .git): go build -ldflags
// "-X main.revision=$(git rev-parse HEAD)". A build from a git work tree
// records its own (vcs.revision), which wins.
var revision string

// buildInfo is what lockstep --version prints and the metrics and report
// carry: the module version ("(devel)" when built from a work tree), the
// VCS revision and whether the tree had uncommitted changes.
type buildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	Time      string `json:"vcs_time,omitempty"`
	GoVersion string `json:"go"`
}

func readBuildInfo() buildInfo {
	bi, _ := debug.ReadBuildInfo()
	return parseBuildInfo(bi)
}

func parseBuildInfo(bi *debug.BuildInfo) buildInfo {
	b := buildInfo{Version: "(devel)", Revision: revision, GoVersion: runtime.Version()}
	if bi == nil {
		return b
	}
	if v := bi.Main.Version; v != "" {
		b.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		case "vcs.time":
			b.Time = s.Value
		}
	}
	return b
}

// String is lockstep --version's line.
func (b buildInfo) String() string {
	s := "lockstep " + b.Version
	if b.Revision != "" {
		s += ", revision " + b.Revision
		if b.Modified {
			s += " (modified)"
		}
		if b.Time != "" {
			s += " of " + b.Time
		}
	}
	return s + fmt.Sprintf(", %s %s/%s", b.GoVersion, runtime.GOOS, runtime.GOARCH)
}
