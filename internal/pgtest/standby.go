package pgtest

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// NewStandby starts a streaming standby of primary (pg_basebackup -R),
// stopped and removed in t.Cleanup, for tests of replication lag: pause its
// replay with pg_wal_replay_pause(). primary must be a server pgtest
// started from local binaries (NewServer); elsewhere the test is skipped.
func NewStandby(t testing.TB, primary *Server) *Server {
	t.Helper()
	pl, ok := primary.ctl.(*localServer)
	if !ok {
		t.Skipf("pgtest: a standby needs a primary started from local binaries; %s is not", primary)
	}
	p := pl.p
	base, err := os.MkdirTemp(p.parent, dirPrefix+"*")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	ls := &localServer{p: p, base: base, data: filepath.Join(base, "data")}
	ls.log = filepath.Join(ls.data, "postgres.log")
	s := &Server{Host: "127.0.0.1", User: "postgres", password: TestPassword, adminDB: "postgres",
		query: url.Values{"sslmode": {"disable"}}, name: "standby", ctl: ls}
	register(s)
	t.Cleanup(func() {
		if err := s.remove(); err != nil {
			t.Error(err)
		}
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.WriteFile(filepath.Join(base, "owner"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if err := p.chown(base); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	cmd := p.command(base, p.tool("pg_basebackup"), "-h", primary.Host, "-p", strconv.Itoa(primary.Port),
		"-U", primary.User, "-D", ls.data, "-R", "-X", "stream", "--no-sync", "-c", "fast")
	cmd.Env = append(cmd.Env, "PGPASSWORD="+primary.password)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pgtest: pg_basebackup of %s: %v\n%s", primary, err, tail(string(out), 20))
	}
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		if err := ls.writeSettings(port); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		if err = ls.start(); err == nil {
			s.Port = port
			return s
		}
		if attempt == 5 || !strings.Contains(readTail(ls.log, 50), "could not bind") {
			t.Fatalf("pgtest: start the standby of %s: %v", primary, fmt.Errorf("%w", err))
		}
	}
}

// tool finds a server tool that may not sit beside initdb where initdb is
// a link (/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb): beside
// initdb, then beside the file it links to, then on PATH.
func (p *localProvider) tool(name string) string {
	if path := filepath.Join(p.bindir, name); isFile(path) {
		return path
	}
	if real, err := filepath.EvalSymlinks(filepath.Join(p.bindir, "initdb")); err == nil {
		if path := filepath.Join(filepath.Dir(real), name); isFile(path) {
			return path
		}
	}
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	return name
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir()
}
