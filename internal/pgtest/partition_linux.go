package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// Partition is a network link between the test process and a private
// server that a test can cut the way a real network fails: every packet
// dropped, both ways, with no reset, acknowledgement or keepalive answer
// from either side. Unlike a Proxy's stall, the server's kernel then sees
// its peer vanish, so what PostgreSQL notices by itself (keepalives,
// tcp_user_timeout) can be tested truthfully.
//
// The server listens on one end of a veth pair; the other end lives in a
// network namespace, from which Proxy's connections to the server are
// dialled. Cut drops all traffic on both ends. It needs root, iproute2 and
// a local server from NewServer; otherwise the test is skipped with the
// reason.
type Partition struct {
	ns           string // network namespace
	hostIf, nsIf string // veth ends
	hostIP, nsIP string
	server       *Server
}

var partitions atomic.Int64

// NewPartition puts server s (from NewServer) behind a link the test can
// cut. It restarts s to listen on the link too; removed in t.Cleanup.
func NewPartition(t testing.TB, s *Server) *Partition {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("pgtest: a network partition needs root (network namespaces, veth, tc)")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("pgtest: a network partition needs %s (iproute2)", tool)
		}
	}
	if _, ok := s.ctl.(*localServer); !ok {
		t.Skip("pgtest: a network partition needs a server started from local binaries")
	}
	sweepNamespaces()
	n := partitions.Add(1)
	tag := fmt.Sprintf("%06x", rand.N(1<<24))
	p := &Partition{
		ns:     fmt.Sprintf("lockstep-%d-%d", os.Getpid(), n),
		hostIf: "ls" + tag + "h", nsIf: "ls" + tag + "n",
		server: s,
	}
	prefix := freeSubnet(t)
	p.hostIP, p.nsIP = prefix+".1", prefix+".2"
	t.Cleanup(func() {
		_ = netcmd("ip", "netns", "del", p.ns)
		_ = netcmd("ip", "link", "del", p.hostIf)
	})
	steps := [][]string{
		{"ip", "netns", "add", p.ns},
		{"ip", "link", "add", p.hostIf, "type", "veth", "peer", "name", p.nsIf, "netns", p.ns},
		{"ip", "addr", "add", p.hostIP + "/30", "dev", p.hostIf},
		{"ip", "link", "set", p.hostIf, "up"},
		{"ip", "-n", p.ns, "addr", "add", p.nsIP + "/30", "dev", p.nsIf},
		{"ip", "-n", p.ns, "link", "set", p.nsIf, "up"},
		// The qdisc Cut uses; skip where the kernel lacks it.
		{"tc", "qdisc", "add", "dev", p.hostIf, "root", "blackhole"},
		{"tc", "qdisc", "del", "dev", p.hostIf, "root"},
	}
	for _, st := range steps {
		if err := netcmd(st...); err != nil {
			t.Skipf("pgtest: cannot build a network partition here: %v", err)
		}
	}

	// Let the server accept connections from the namespace's address.
	admin := s.DSN(s.adminDB)
	hba := QueryString(t, admin, "SHOW hba_file")
	f, err := os.OpenFile(hba, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("pgtest: partition: %v", err)
	}
	_, err = fmt.Fprintf(f, "host all all %s/32 scram-sha-256\n", p.nsIP)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("pgtest: partition: %v", err)
	}
	Exec(t, admin, fmt.Sprintf("ALTER SYSTEM SET listen_addresses = '127.0.0.1, %s'", p.hostIP))
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return p
}

// Proxy returns a proxy whose connections to the server of dsn (on the
// partitioned server) cross the link. Clients reach it on loopback, which
// a cut does not touch: they see a stall, as a client behind a middlebox
// would; the server sees its peer vanish.
func (p *Partition) Proxy(t testing.TB, dsn string) *Proxy {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("pgtest: partition: %v", err)
	}
	u.Host = net.JoinHostPort(p.hostIP, strconv.Itoa(p.server.Port))
	return NewProxyVia(t, u.String(), p.dial)
}

// Cut drops every packet on the link, both ways.
func (p *Partition) Cut() error {
	if err := netcmd("tc", "qdisc", "add", "dev", p.hostIf, "root", "blackhole"); err != nil {
		return err
	}
	return netcmd("ip", "netns", "exec", p.ns, "tc", "qdisc", "add", "dev", p.nsIf, "root", "blackhole")
}

// Heal lets traffic through again.
func (p *Partition) Heal() error {
	err := netcmd("tc", "qdisc", "del", "dev", p.hostIf, "root")
	if err2 := netcmd("ip", "netns", "exec", p.ns, "tc", "qdisc", "del", "dev", p.nsIf, "root"); err == nil {
		err = err2
	}
	return err
}

// dial connects from inside the namespace: a socket belongs to the network
// namespace of the thread that creates it.
func (p *Partition) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, still in
		// the namespace, and no other goroutine ever runs on it.
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + p.ns)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("setns %s: %w", p.ns, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// freeSubnet returns the first three octets of a 10.x.y.0/24 that no
// interface here uses; the link takes its .1 and .2.
func freeSubnet(t testing.TB) string {
	out, _ := exec.Command("ip", "-o", "-4", "addr").Output()
	for range 100 {
		base := fmt.Sprintf("10.%d.%d", 100+rand.N(100), rand.N(256))
		if !bytes.Contains(out, []byte(" "+base+".")) {
			return base
		}
	}
	t.Skip("pgtest: no free 10.x.y.0/24 for a partition")
	return ""
}

// sweepNamespaces removes namespaces left by test processes that died.
func sweepNamespaces() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, "lockstep-")
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		if pid, err := strconv.Atoi(pidStr); err == nil && !processAlive(pid) {
			_ = netcmd("ip", "netns", "del", name)
		}
	}
}

func netcmd(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
