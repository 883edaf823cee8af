package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
)

// SmallTablespace creates a tablespace on s backed by a tmpfs file system
// of size bytes, for tests that fill a disk, and returns its name. It is
// dropped and unmounted in t.Cleanup: call it before creating the databases
// that use it, so that their cleanup (dropping them) runs first.
//
// It needs a server pgtest started from local binaries and root, which can
// mount a file system; elsewhere the test is skipped with the reason.
func SmallTablespace(t testing.TB, s *Server, size int64) string {
	t.Helper()
	ls, ok := s.ctl.(*localServer)
	if !ok {
		t.Skipf("pgtest: a small tablespace needs a server started from local binaries; %s is not", s)
	}
	if os.Geteuid() != 0 {
		t.Skip("pgtest: a small tablespace needs a tmpfs mount, which needs root")
	}
	dir, err := os.MkdirTemp(ls.p.parent, dirPrefix+"space-*")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	uid, gid := os.Getuid(), os.Getgid()
	if c := ls.p.cred; c != nil {
		uid, gid = int(c.Uid), int(c.Gid)
	}
	opts := fmt.Sprintf("size=%d,mode=0700,uid=%d,gid=%d", size, uid, gid)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("pgtest: cannot mount a tmpfs for a small tablespace: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// Lazily: the server may keep a file of a dropped table open a moment.
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("pgtest: umount %s: %v: %s", dir, err, out)
		}
	})
	loc := filepath.Join(dir, "ts")
	if err := os.Mkdir(loc, 0o700); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if err := os.Chown(loc, uid, gid); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	name := "small_" + strconv.Itoa(os.Getpid()) + "_" + filepath.Base(dir)[len(dirPrefix+"space-"):]
	ident := pgx.Identifier{name}.Sanitize()
	if err := adminExec(s, fmt.Sprintf("CREATE TABLESPACE %s LOCATION '%s'", ident, loc)); err != nil {
		t.Fatalf("pgtest: %s: create tablespace: %v", s, err)
	}
	t.Cleanup(func() {
		if err := adminExec(s, "DROP TABLESPACE IF EXISTS "+ident); err != nil {
			t.Errorf("pgtest: %s: drop tablespace %s: %v", s, name, err)
		}
	})
	return name
}
