package pgtest

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// dirPrefix names the throwaway directories, so that leftovers can be found.
const dirPrefix = "lockstep-pgtest-"

// localProvider starts throwaway clusters with the local initdb and pg_ctl.
type localProvider struct {
	bindir  string
	version string // "initdb (PostgreSQL) 15.x"
	parent  string // where the throwaway directories go
	cred    *syscall.Credential
	runAs   string // user name when cred is set
}

func newLocalProvider() (*localProvider, error) {
	bindir, err := findBinDir()
	if err != nil {
		return nil, err
	}
	p := &localProvider{bindir: bindir, parent: os.TempDir()}
	if os.Geteuid() == 0 {
		if err := p.dropRoot(); err != nil {
			return nil, err
		}
	}
	out, err := p.command("", filepath.Join(bindir, "initdb"), "--version").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s/initdb --version: %v: %s", bindir, err, bytes.TrimSpace(out))
	}
	p.version = strings.TrimSpace(string(out))
	p.sweep()
	return p, nil
}

func (p *localProvider) describe() string {
	d := fmt.Sprintf("local %s from %s", p.version, p.bindir)
	if p.cred != nil {
		d += " as user " + p.runAs
	}
	return d
}

// findBinDir locates the directory holding initdb and pg_ctl.
func findBinDir() (string, error) {
	has := func(dir string) bool {
		for _, b := range []string{"initdb", "pg_ctl"} {
			if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if dir := os.Getenv(EnvPGBin); dir != "" {
		if !has(dir) {
			return "", fmt.Errorf("%s=%s has no initdb and pg_ctl", EnvPGBin, dir)
		}
		return dir, nil
	}
	if path, err := exec.LookPath("initdb"); err == nil {
		if dir := filepath.Dir(path); has(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionLess(dirs[j], dirs[i]) })
	for _, dir := range dirs {
		if has(dir) {
			return dir, nil
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); has(dir) {
			return dir, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found in $PATH, /usr/lib/postgresql/*/bin " +
		"or pg_config --bindir: install the PostgreSQL server package (Debian/Ubuntu: postgresql), set " +
		EnvPGBin + ", or see scripts/test.sh")
}

// versionLess orders /usr/lib/postgresql/<version>/bin paths by numeric version.
func versionLess(a, b string) bool {
	pa := strings.Split(filepath.Base(filepath.Dir(a)), ".")
	pb := strings.Split(filepath.Base(filepath.Dir(b)), ".")
	for i := 0; i < len(pa) && i < len(pb); i++ {
		na, errA := strconv.Atoi(pa[i])
		nb, errB := strconv.Atoi(pb[i])
		if errA != nil || errB != nil {
			return pa[i] < pb[i]
		}
		if na != nb {
			return na < nb
		}
	}
	return len(pa) < len(pb)
}

// dropRoot picks the unprivileged user the servers run as, because PostgreSQL
// refuses to run as root, and a parent directory that user can reach.
func (p *localProvider) dropRoot() error {
	var u *user.User
	var err error
	for _, name := range []string{"postgres", "nobody"} {
		if u, err = user.Lookup(name); err == nil {
			break
		}
	}
	if err != nil {
		return errors.New("running as root, and neither a postgres nor a nobody user exists to run PostgreSQL as")
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("user %s: bad uid/gid %s/%s", u.Username, u.Uid, u.Gid)
	}
	// Groups is empty so that the servers do not keep root's supplementary groups.
	p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	p.runAs = u.Username
	if !traversable(p.parent, uid, gid) {
		if !traversable("/tmp", uid, gid) {
			return fmt.Errorf("neither %s nor /tmp can be reached by user %s", p.parent, u.Username)
		}
		p.parent = "/tmp"
	}
	return nil
}

// traversable reports whether uid/gid may search every directory from / down to dir.
func traversable(dir string, uid, gid int) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || !fi.IsDir() {
			return false
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return false
		}
		mode := fi.Mode().Perm()
		var bit os.FileMode = 0o001
		switch {
		case int(st.Uid) == uid:
			bit = 0o100
		case int(st.Gid) == gid:
			bit = 0o010
		}
		if mode&bit == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// command builds a command that runs as the server user, in dir, with an
// environment free of PG* variables that could redirect it.
func (p *localProvider) command(dir, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "LC_") && !strings.HasPrefix(kv, "LANG=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "LC_ALL=C")
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	return cmd
}

func (p *localProvider) chown(path string) error {
	if p.cred == nil {
		return nil
	}
	return os.Chown(path, int(p.cred.Uid), int(p.cred.Gid))
}

// localServer is one throwaway cluster.
type localServer struct {
	p    *localProvider
	base string // throwaway directory: owner, data/
	data string
	log  string
	tls  bool // ssl=on with server.crt and server.key in data, hostssl only
}

func (p *localProvider) newServer(name string) (*Server, error) {
	return p.newServerWith(name, serverOptions{})
}

func (p *localProvider) newServerWith(name string, o serverOptions) (*Server, error) {
	base, err := os.MkdirTemp(p.parent, dirPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("%s server: %w", name, err)
	}
	ls := &localServer{p: p, base: base, data: filepath.Join(base, "data")}
	ls.log = filepath.Join(ls.data, "postgres.log")
	s := &Server{
		Host:     "127.0.0.1",
		User:     "postgres",
		password: TestPassword,
		adminDB:  "postgres",
		query:    url.Values{"sslmode": {"disable"}},
		name:     name,
		ctl:      ls,
	}
	if o.tlsCert != nil {
		ls.tls = true
		s.query = url.Values{"sslmode": {"require"}}
	}
	register(s)
	// Holding s.mu makes an interrupt's removal wait until the server is
	// fully started or has failed, so that nothing escapes it.
	s.mu.Lock()
	err = ls.create(s, o)
	s.mu.Unlock()
	if err != nil {
		_ = s.remove()
		return nil, fmt.Errorf("%s server: %w", name, err)
	}
	return s, nil
}

// create runs initdb, writes the settings and starts the server on a free port.
func (ls *localServer) create(s *Server, o serverOptions) error {
	p := ls.p
	// The owner file lets a later run remove this directory if this process dies.
	owner := filepath.Join(ls.base, "owner")
	if err := os.WriteFile(owner, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	if err := p.chown(ls.base); err != nil {
		return err
	}
	pwfile := filepath.Join(ls.base, "pwfile")
	if err := os.WriteFile(pwfile, []byte(TestPassword+"\n"), 0o600); err != nil {
		return err
	}
	if err := p.chown(pwfile); err != nil {
		return err
	}
	out, err := p.command(ls.base, filepath.Join(p.bindir, "initdb"),
		"-D", ls.data, "-U", "postgres", "--pwfile="+pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256",
		"--encoding=UTF8", "--locale=C", "--no-sync").CombinedOutput()
	_ = os.Remove(pwfile)
	if err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, tail(string(out), 20))
	}

	if ls.tls {
		if err := ls.setupTLS(o.tlsCert, o.tlsKey); err != nil {
			return err
		}
	}

	conf := filepath.Join(ls.data, "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "\n# lockstep tests\ninclude 'lockstep_test.conf'\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}

	// Another process may take the port between freePort and the server's
	// bind; then try another one.
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		if err := ls.writeSettings(port); err != nil {
			return err
		}
		err = ls.start()
		if err == nil {
			s.Port = port
			return nil
		}
		if attempt == 5 || !strings.Contains(readTail(ls.log, 50), "could not bind") {
			return err
		}
	}
}

// setupTLS writes the server's certificate and key where ssl_cert_file
// and ssl_key_file find them (the key owned by the server user, mode 0600,
// as PostgreSQL requires) and makes every host line of pg_hba.conf
// hostssl, so that connections without TLS are refused.
func (ls *localServer) setupTLS(cert, key []byte) error {
	for _, f := range []struct {
		name string
		pem  []byte
	}{{"server.crt", cert}, {"server.key", key}} {
		path := filepath.Join(ls.data, f.name)
		if err := os.WriteFile(path, f.pem, 0o600); err != nil {
			return err
		}
		if err := ls.p.chown(path); err != nil {
			return err
		}
	}
	hba := filepath.Join(ls.data, "pg_hba.conf")
	b, err := os.ReadFile(hba)
	if err != nil {
		return err
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "host" {
			lines[i] = "hostssl" + strings.TrimPrefix(l, "host")
		}
	}
	return os.WriteFile(hba, []byte(strings.Join(lines, "\n")), 0o600)
}

func (ls *localServer) writeSettings(port int) error {
	var b strings.Builder
	fmt.Fprintf(&b, "listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n",
		port, strings.ReplaceAll(ls.data, "'", "''"))
	for _, s := range speedSettings {
		fmt.Fprintf(&b, "%s = %s\n", s.name, s.value)
	}
	if ls.tls {
		b.WriteString("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
	}
	path := filepath.Join(ls.data, "lockstep_test.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return ls.p.chown(path)
}

func (ls *localServer) pgctl(args ...string) error {
	args = append([]string{"-D", ls.data}, args...)
	out, err := ls.p.command(ls.base, filepath.Join(ls.p.bindir, "pg_ctl"), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %v: %s", strings.Join(args[2:], " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (ls *localServer) start() error {
	if err := ls.pgctl("-l", ls.log, "-w", "-t", "60", "start"); err != nil {
		return fmt.Errorf("%w\nlast lines of %s:\n%s", err, ls.log, readTail(ls.log, 30))
	}
	return nil
}

func (ls *localServer) stop() error {
	return ls.pgctl("-m", "fast", "-w", "-t", "60", "stop")
}

func (ls *localServer) running() bool {
	_, err := os.Stat(filepath.Join(ls.data, "postmaster.pid"))
	return err == nil
}

func (ls *localServer) remove() error {
	var err error
	if ls.running() {
		if err = ls.stop(); err != nil {
			err = errors.Join(err, ls.pgctl("-m", "immediate", "-w", "-t", "30", "stop"))
			if !ls.running() {
				err = nil
			}
		}
	}
	if rerr := os.RemoveAll(ls.base); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

// abort sends the postmaster SIGQUIT, an immediate shutdown.
func (ls *localServer) abort() {
	b, err := os.ReadFile(filepath.Join(ls.data, "postmaster.pid"))
	if err != nil {
		return
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGQUIT)
	}
}

// sweep removes clusters left behind by test processes that were killed
// before Main could clean up. Directories without an owner file are left
// alone unless they are old, since their creator may still be starting up.
func (p *localProvider) sweep() {
	dirs, _ := filepath.Glob(filepath.Join(p.parent, dirPrefix+"*"))
	for _, base := range dirs {
		b, err := os.ReadFile(filepath.Join(base, "owner"))
		if err != nil {
			fi, serr := os.Stat(base)
			if serr != nil || time.Since(fi.ModTime()) < time.Hour {
				continue
			}
		} else if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); processAlive(pid) {
			continue
		}
		ls := &localServer{p: p, base: base, data: filepath.Join(base, "data")}
		if ls.running() {
			_ = ls.pgctl("-m", "immediate", "-w", "-t", "30", "stop")
		}
		if err := os.RemoveAll(base); err == nil {
			fmt.Fprintf(os.Stderr, "pgtest: removed %s left by an earlier test run\n", base)
		}
	}
}

func readTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read: %v)", err)
	}
	return tail(string(b), n)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
