package pgtest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Environment variables that choose where servers come from.
const (
	EnvSource = "LOCKSTEP_TEST_SOURCE" // admin URL of a user-provided source server
	EnvDest   = "LOCKSTEP_TEST_DEST"   // admin URL of a user-provided destination server
	EnvDocker = "LOCKSTEP_TEST_DOCKER" // "1": prefer postgres:15 containers
	EnvPGBin  = "LOCKSTEP_TEST_PGBIN"  // directory holding initdb and pg_ctl
)

// TestPassword is the superuser password of every server pgtest starts.
const TestPassword = "lockstep-test-pw"

// ErrNotControllable is returned by Stop and Start on a server pgtest did not
// start (LOCKSTEP_TEST_SOURCE/DEST). Fault tests use NewServer instead.
var ErrNotControllable = errors.New("pgtest: server is user-provided; pgtest cannot stop or start it")

// Server is one running PostgreSQL server that tests may use as superuser.
type Server struct {
	Host string
	Port int
	User string

	password string
	adminDB  string     // database for admin connections (CREATE/DROP DATABASE)
	query    url.Values // query parameters of every DSN
	name     string     // "source", "dest", "extra": for messages

	mu      sync.Mutex // serialises Stop/Start/remove
	ctl     controller // nil for user-provided servers
	stopped bool       // by Stop, until Start
	removed bool
}

// controller is what a backend (local binaries, docker) does for a server it started.
type controller interface {
	stop() error
	start() error
	// remove stops the server if it runs and deletes everything it left behind.
	remove() error
	// abort stops the server as fast as possible, without locks or waiting:
	// on an interrupt, tests still running may crash the process at any moment.
	abort()
}

// provider starts servers of one backend.
type provider interface {
	describe() string
	newServer(name string) (*Server, error)
}

// DSN returns a postgres:// URL for database db on s, with the superuser's password.
func (s *Server) DSN(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(s.User, s.password),
		Host:     net.JoinHostPort(s.Host, strconv.Itoa(s.Port)),
		Path:     "/" + db,
		RawQuery: s.query.Encode(),
	}
	return u.String()
}

// Password returns the superuser's password.
func (s *Server) Password() string { return s.password }

// String names the server without its password.
func (s *Server) String() string {
	return fmt.Sprintf("%s server %s:%d", s.name, s.Host, s.Port)
}

// Stop shuts the server down (fast shutdown: sessions are terminated, open
// transactions roll back). Start brings it back on the same port with the same data.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctl == nil {
		return ErrNotControllable
	}
	if s.removed {
		return fmt.Errorf("pgtest: stop %s: already removed", s)
	}
	if err := s.ctl.stop(); err != nil {
		return fmt.Errorf("pgtest: stop %s: %w", s, err)
	}
	s.stopped = true
	return nil
}

// Start starts the server again after Stop and waits until it accepts connections.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctl == nil {
		return ErrNotControllable
	}
	if s.removed {
		return fmt.Errorf("pgtest: start %s: already removed", s)
	}
	if err := s.ctl.start(); err != nil {
		return fmt.Errorf("pgtest: start %s: %w", s, err)
	}
	s.stopped = false
	return nil
}

// remove stops and deletes a server pgtest started. It is idempotent.
func (s *Server) remove() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctl == nil || s.removed {
		return nil
	}
	s.removed = true
	unregister(s)
	if err := s.ctl.remove(); err != nil {
		return fmt.Errorf("pgtest: remove %s: %w", s, err)
	}
	return nil
}

// Env is the pair of servers a test package shares.
type Env struct{ Source, Dest *Server }

var (
	pkgEnv      *Env
	pkgProvider provider // nil when the servers are user-provided

	interrupted atomic.Bool // by SIGINT, SIGTERM or SIGHUP

	liveMu sync.Mutex
	live   = map[*Server]struct{}{} // servers to remove if the process is interrupted
)

func register(s *Server) {
	liveMu.Lock()
	live[s] = struct{}{}
	liveMu.Unlock()
}

func unregister(s *Server) {
	liveMu.Lock()
	delete(live, s)
	liveMu.Unlock()
}

// abortLive aborts every server still registered.
func abortLive() {
	liveMu.Lock()
	defer liveMu.Unlock()
	for s := range live {
		if s.ctl != nil {
			s.ctl.abort()
		}
	}
}

// removeLive removes every server still registered, in parallel.
func removeLive() []error {
	liveMu.Lock()
	servers := make([]*Server, 0, len(live))
	for s := range live {
		servers = append(servers, s)
	}
	liveMu.Unlock()
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() { errs[i] = s.remove() })
	}
	wg.Wait()
	return errs
}

// Main is called from TestMain in a package: it starts (or locates) the source
// and destination servers once, runs m.Run(), stops and removes everything it
// started, and exits with m.Run's code. If servers cannot be obtained it prints
// the reason and exits non-zero (never silently skips).
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		return m.Run() // only listing tests: no servers needed
	}

	// An interrupted or terminated test binary would leave its servers
	// running: postgres runs in its own session, so a Ctrl-C does not reach
	// it. (Not SIGPIPE: once notified, Go would deliver every broken socket
	// write, including those of fault tests, to this handler.)
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigc)
	go func() {
		sig := <-sigc
		interrupted.Store(true)
		fmt.Fprintf(os.Stderr, "pgtest: %v: removing test servers\n", sig)
		abortLive()
		removeLive()
		os.Exit(1)
	}()

	env, err := setup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: no PostgreSQL servers for the tests: %v\n", err)
		removeLive()
		return 1
	}
	pkgEnv = env
	if interrupted.Load() {
		select {} // the signal handler removes the servers and exits
	}

	code := m.Run()

	failed := false
	for _, err := range removeLive() {
		if err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			failed = true
		}
	}
	if failed && code == 0 {
		code = 1
	}
	return code
}

// setup chooses the backend and obtains the package's pair of servers.
func setup() (*Env, error) {
	src, dst := os.Getenv(EnvSource), os.Getenv(EnvDest)
	if src != "" || dst != "" {
		if src == "" || dst == "" {
			return nil, fmt.Errorf("set both %s and %s, or neither", EnvSource, EnvDest)
		}
		s, err := externalServer("source", src)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvSource, err)
		}
		d, err := externalServer("dest", dst)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvDest, err)
		}
		if s.Host == d.Host && s.Port == d.Port {
			fmt.Fprintf(os.Stderr, "pgtest: warning: %s and %s are the same server\n", EnvSource, EnvDest)
		}
		for _, srv := range []*Server{s, d} {
			if err := ping(srv); err != nil {
				return nil, fmt.Errorf("%s: %w", srv, err)
			}
		}
		return &Env{Source: s, Dest: d}, nil
	}

	p, err := chooseProvider()
	if err != nil {
		return nil, err
	}
	pkgProvider = p

	began := time.Now()
	var env Env
	var errS, errD error
	var wg sync.WaitGroup
	wg.Go(func() { env.Source, errS = p.newServer("source") })
	wg.Go(func() { env.Dest, errD = p.newServer("dest") })
	wg.Wait()
	if err := errors.Join(errS, errD); err != nil {
		return nil, err
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "pgtest: %s: source on port %d, destination on port %d, ready in %v\n",
			p.describe(), env.Source.Port, env.Dest.Port, time.Since(began).Round(time.Millisecond))
	}
	return &env, nil
}

func chooseProvider() (provider, error) {
	if os.Getenv(EnvDocker) == "1" {
		p, err := newDockerProvider()
		if err == nil {
			return p, nil
		}
		fmt.Fprintf(os.Stderr, "pgtest: %s=1 but no Docker engine (%v); using local PostgreSQL binaries\n", EnvDocker, err)
	}
	return newLocalProvider()
}

// Get returns the package's pair (fails the test if Main was not used).
func Get(t testing.TB) *Env {
	t.Helper()
	if pkgEnv == nil {
		t.Fatal("pgtest: no servers: call pgtest.Main(m) from TestMain in this package")
	}
	return pkgEnv
}

// Option configures a private server started by NewServer.
type Option func(*serverOptions)

type serverOptions struct {
	tlsCert, tlsKey []byte // PEM; nil: no TLS
}

// WithTLS starts the server with ssl=on, serving this certificate and key
// (PEM), and makes it refuse host connections without TLS (hostssl only),
// so that a client that connects is known to use TLS. Its DSNs use
// sslmode=require. Only local servers support it; with Docker the test is
// skipped.
func WithTLS(certPEM, keyPEM []byte) Option {
	return func(o *serverOptions) { o.tlsCert, o.tlsKey = certPEM, keyPEM }
}

// NewServer starts a private extra server just for one test (stopped and
// removed in t.Cleanup), for fault tests that stop a server and tests that
// need a server configured unlike the package's pair. It uses the same
// backend as Main; with user-provided servers the test is skipped.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	Get(t)
	if pkgProvider == nil {
		t.Skipf("pgtest: %s/%s point at user-provided servers; this test needs a private server it can stop", EnvSource, EnvDest)
	}
	var o serverOptions
	for _, f := range opts {
		f(&o)
	}
	var s *Server
	var err error
	if o.tlsCert != nil {
		lp, ok := pkgProvider.(*localProvider)
		if !ok {
			t.Skipf("pgtest: a TLS server needs the local PostgreSQL binaries, not %s", pkgProvider.describe())
		}
		s, err = lp.newServerWith("extra", o)
	} else {
		s, err = pkgProvider.newServer("extra")
	}
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.remove(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// externalServer describes a user-provided server from its admin URL.
func externalServer(name, dsn string) (*Server, error) {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return nil, errors.New("must be a postgres://user:password@host:port/db URL")
	}
	s := &Server{
		Host:    u.Hostname(),
		Port:    5432,
		User:    u.User.Username(),
		adminDB: u.Path,
		query:   u.Query(),
		name:    name,
	}
	s.password, _ = u.User.Password()
	if p := u.Port(); p != "" {
		if s.Port, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("bad port %q", p)
		}
	}
	if len(s.adminDB) > 1 {
		s.adminDB = s.adminDB[1:]
	} else {
		s.adminDB = "postgres"
	}
	if s.User == "" {
		s.User = "postgres"
	}
	return s, nil
}

// ping checks that s accepts the admin connection, for a one-line reason when it does not.
func ping(s *Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := connect(ctx, s.DSN(s.adminDB))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// processAlive reports whether pid may still run (EPERM means it does, as another user).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// speedSettings are the server settings of every server pgtest starts.
var speedSettings = []struct{ name, value string }{
	{"fsync", "off"},
	{"synchronous_commit", "off"},
	{"full_page_writes", "off"},
	{"max_connections", "200"},
	{"shared_buffers", "128MB"},
	{"autovacuum", "off"},
}
