package pgtest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"lockstep/internal/pgtest"
)

func proxied(t *testing.T) (direct string, p *pgtest.Proxy) {
	t.Helper()
	direct = pgtest.Get(t).Source.NewDB(t)
	return direct, pgtest.NewProxy(t, direct)
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// backendState is the state of the backend with pid, or "" once it is gone.
func backendState(t *testing.T, direct string, pid uint32) string {
	return pgtest.QueryString(t, direct, "SELECT coalesce((SELECT state FROM pg_stat_activity WHERE pid = $1), '')", int64(pid))
}

func TestProxyRelaysLargeStreams(t *testing.T) {
	t.Parallel()
	direct, p := proxied(t)
	pgtest.Exec(t, direct, "CREATE TABLE t (id int, v text)")
	conn := pgtest.Connect(t, p.DSN())
	ctx := ctxFor(t, time.Minute)
	// About 20 MB each way: COPY FROM in many messages, COPY TO back.
	var in bytes.Buffer
	for i := range 200000 {
		in.WriteString(strings.Repeat("x", 90) + "\t" + strconv.Itoa(i) + "\n")
	}
	want := in.Len()
	tag, err := conn.PgConn().CopyFrom(ctx, &in, "COPY t (v, id) FROM STDIN")
	if err != nil || tag.RowsAffected() != 200000 {
		t.Fatalf("copy through the proxy: %v, %v", tag, err)
	}
	var out countingWriter
	if _, err := conn.PgConn().CopyTo(ctx, &out, "COPY t (v, id) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	if int(out) != want {
		t.Fatalf("copied back %d bytes, want %d", out, want)
	}
}

type countingWriter int

func (w *countingWriter) Write(p []byte) (int, error) {
	*w += countingWriter(len(p))
	return len(p), nil
}

// A stall forwards nothing, reads nothing more, and closes nothing:
// after Resume the same connection goes on.
func TestProxyStallHoldsEverythingAndResumes(t *testing.T) {
	t.Parallel()
	direct, p := proxied(t)
	pgtest.Exec(t, direct, "CREATE TABLE t (v text)")
	conn := pgtest.Connect(t, p.DSN())
	pid := conn.PgConn().PID()
	p.Stall()

	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(context.Background(), "SELECT 'sent during the stall'")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if got := pgtest.QueryString(t, direct, "SELECT query FROM pg_stat_activity WHERE pid = $1", int64(pid)); strings.Contains(got, "during the stall") {
		t.Fatal("the query reached the server during the stall")
	}
	select {
	case err := <-done:
		t.Fatalf("the query returned during the stall: %v", err)
	default:
	}
	p.Resume()
	if err := <-done; err != nil {
		t.Fatalf("after Resume: %v", err)
	}

	// Writes fill the buffers and then block: 64 MB cannot all leave.
	p.Stall()
	src := &countingReader{r: io.LimitReader(zeros{}, 64<<20)}
	copied := make(chan error, 1)
	go func() {
		_, err := conn.PgConn().CopyFrom(context.Background(), &textLines{src}, "COPY t FROM STDIN")
		copied <- err
	}()
	time.Sleep(time.Second)
	if n := src.n.Load(); n > 16<<20 {
		t.Fatalf("%d MB left the client during the stall", n>>20)
	}
	p.Resume()
	if err := <-copied; err != nil {
		t.Fatalf("copy after Resume: %v", err)
	}
	if got := pgtest.QueryString(t, direct, "SELECT count(*) FROM t"); got == "0" {
		t.Fatal("nothing copied")
	}
}

// A cut resets both sides: the client errs at once, the server session
// ends, and new connections work.
func TestProxyCut(t *testing.T) {
	t.Parallel()
	direct, p := proxied(t)
	conn := pgtest.Connect(t, p.DSN())
	pid := conn.PgConn().PID()
	p.Cut()
	began := time.Now()
	if _, err := conn.Exec(ctxFor(t, 10*time.Second), "SELECT 1"); err == nil {
		t.Fatal("a query after the cut succeeded")
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("the client took %s to notice the cut", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for backendState(t, direct, pid) != "" {
		if time.Now().After(deadline) {
			t.Fatal("the server session outlived the cut")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := pgtest.QueryString(t, p.DSN(), "SELECT 42"); got != "42" {
		t.Fatalf("a new connection after the cut: %q", got)
	}
}

// CutAfter: the server commits, the client never hears it.
func TestProxyCutAfterCommit(t *testing.T) {
	t.Parallel()
	direct, p := proxied(t)
	pgtest.Exec(t, direct, "CREATE TABLE t (v text)")
	conn := pgtest.Connect(t, p.DSN())
	ctx := ctxFor(t, 10*time.Second)
	if _, err := conn.Exec(ctx, "BEGIN; INSERT INTO t VALUES ('committed unheard')"); err != nil {
		t.Fatal(err)
	}
	fired := p.CutAfter(pgtest.IsQuery("COMMIT"))
	_, err := conn.PgConn().Exec(ctx, "COMMIT").ReadAll()
	if err == nil {
		t.Fatal("the client heard the COMMIT's answer")
	}
	<-fired
	if got := pgtest.QueryString(t, direct, "SELECT count(*) FROM t"); got != "1" {
		t.Fatalf("rows after the cut COMMIT: %s, want 1", got)
	}
}

// CutBefore: the COMMIT never arrives, the server session keeps its open
// transaction until it is terminated.
func TestProxyCutBeforeCommit(t *testing.T) {
	t.Parallel()
	direct, p := proxied(t)
	pgtest.Exec(t, direct, "CREATE TABLE t (v text)")
	conn := pgtest.Connect(t, p.DSN())
	pid := conn.PgConn().PID()
	ctx := ctxFor(t, 10*time.Second)
	if _, err := conn.Exec(ctx, "BEGIN; INSERT INTO t VALUES ('never committed')"); err != nil {
		t.Fatal(err)
	}
	fired := p.CutBefore(pgtest.IsQuery("COMMIT"))
	if _, err := conn.PgConn().Exec(ctx, "COMMIT").ReadAll(); err == nil {
		t.Fatal("COMMIT succeeded")
	}
	<-fired
	time.Sleep(200 * time.Millisecond)
	if st := backendState(t, direct, pid); st != "idle in transaction" {
		t.Fatalf("server session state %q, want idle in transaction", st)
	}
	pgtest.Exec(t, direct, "SELECT pg_terminate_backend($1)", int64(pid))
	if got := pgtest.QueryString(t, direct, "SELECT count(*) FROM t"); got != "0" {
		t.Fatalf("rows: %s, want 0", got)
	}
}

// Not parallel: it counts the proxy's goroutines after Close.
func TestProxyCloseLeavesNoGoroutines(t *testing.T) {
	direct := pgtest.Get(t).Source.NewDB(t)
	p := pgtest.NewProxy(t, direct)
	ctx := ctxFor(t, 10*time.Second)
	var conns []*pgx.Conn
	for range 3 {
		c, err := pgx.Connect(ctx, p.DSN())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		conns = append(conns, c)
	}
	if _, err := conns[0].Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	fired := p.CutBefore(pgtest.IsQuery("COMMIT"))
	if _, err := conns[0].PgConn().Exec(ctx, "COMMIT").ReadAll(); err == nil {
		t.Fatal("COMMIT went through")
	}
	<-fired
	p.Stall() // conns[1] and [2] stalled mid-query
	stalled := make(chan error, 2)
	for _, c := range conns[1:] {
		go func() { _, err := c.Exec(context.Background(), "SELECT 1"); stalled <- err }()
	}
	time.Sleep(100 * time.Millisecond)
	p.Close()
	for range 2 {
		if err := <-stalled; err == nil {
			t.Error("a stalled query succeeded although the proxy was closed")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "pgtest.(*Proxy)") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy goroutines left after Close:\n%s", stacks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'z'
	}
	return len(p), nil
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// textLines cuts a byte stream into COPY text lines of 1000 bytes.
type textLines struct{ r io.Reader }

func (l *textLines) Read(p []byte) (int, error) {
	if len(p) > 1001 {
		p = p[:1001]
	}
	n, err := io.ReadFull(l.r, p[:len(p)-1])
	if n > 0 {
		p[n] = '\n'
		n++
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	return n, err
}

// StallAt holds the chosen message back until Resume.
func TestProxyStallAtMessage(t *testing.T) {
	t.Parallel()
	direct, p := proxied(t)
	conn := pgtest.Connect(t, p.DSN())
	pid := conn.PgConn().PID()
	fired := p.StallAt(pgtest.IsQuery("SELECT 'held back'"))
	if got, err := conn.PgConn().Exec(ctxFor(t, 5*time.Second), "SELECT 'before'").ReadAll(); err != nil || len(got) != 1 {
		t.Fatalf("a query the rule does not match: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := conn.PgConn().Exec(context.Background(), "SELECT 'held back'").ReadAll()
		done <- err
	}()
	<-fired
	time.Sleep(200 * time.Millisecond)
	if got := pgtest.QueryString(t, direct, "SELECT query FROM pg_stat_activity WHERE pid = $1", int64(pid)); got != "SELECT 'before'" {
		t.Fatalf("the server saw %q during the stall", got)
	}
	p.Resume()
	if err := <-done; err != nil {
		t.Fatalf("after Resume: %v", err)
	}
}

// Across a cut partition the server hears nothing from its peer: its
// keepalives fail and it ends the session, as behind a real network cut.
func TestPartitionCut(t *testing.T) {
	t.Parallel()
	s := pgtest.NewServer(t)
	part := pgtest.NewPartition(t, s)
	direct := s.NewDB(t)
	p := part.Proxy(t, direct)
	conn := pgtest.Connect(t, p.DSN())
	ctx := ctxFor(t, 30*time.Second)
	var client string
	if err := conn.QueryRow(ctx, "SELECT host(inet_client_addr())").Scan(&client); err != nil {
		t.Fatal(err)
	}
	if client == "127.0.0.1" {
		t.Fatal("the connection did not cross the link")
	}
	// Keepalives for a silent peer, a user timeout for one that does not
	// acknowledge what was sent (such as the answer to this very SET).
	if _, err := conn.Exec(ctx, "SET tcp_keepalives_idle = 1; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = 2; SET tcp_user_timeout = 2000"); err != nil {
		t.Fatal(err)
	}
	pid := conn.PgConn().PID()
	if err := part.Cut(); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	qctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := conn.Exec(qctx, "SELECT 1"); err == nil {
		t.Fatal("a query crossed the cut link")
	}
	for backendState(t, direct, pid) != "" {
		if time.Since(cut) > 10*time.Second {
			t.Fatal("the server session outlived its keepalives behind the cut")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("server session ended %s after the cut", time.Since(cut).Round(10*time.Millisecond))
	if time.Since(cut) < 2*time.Second {
		t.Errorf("the session ended before its keepalives could have failed: the cut was not silent")
	}
	if err := part.Heal(); err != nil {
		t.Fatal(err)
	}
	if got := pgtest.QueryString(t, p.DSN(), "SELECT 7"); got != "7" {
		t.Fatalf("after Heal: %q", got)
	}
}

// HoldAt holds one connection for good; the others go on.
func TestProxyHoldAtMessage(t *testing.T) {
	t.Parallel()
	direct, p := proxied(t)
	pgtest.Exec(t, direct, "CREATE TABLE t (v text)")
	held, other := pgtest.Connect(t, p.DSN()), pgtest.Connect(t, p.DSN())
	ctx := ctxFor(t, 10*time.Second)
	if _, err := held.Exec(ctx, "BEGIN; INSERT INTO t VALUES ('held')"); err != nil {
		t.Fatal(err)
	}
	fired := p.HoldAt(pgtest.IsQuery("COMMIT"))
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := held.PgConn().Exec(cctx, "COMMIT").ReadAll(); err == nil {
		t.Fatal("the held COMMIT was answered")
	}
	<-fired
	if _, err := other.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("another connection stopped too: %v", err)
	}
	if st := backendState(t, direct, held.PgConn().PID()); st != "idle in transaction" {
		t.Fatalf("held session: %q, want idle in transaction", st)
	}
}
