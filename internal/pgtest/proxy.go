package pgtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy relays TCP connections from a loopback port to a PostgreSQL server
// so that a test can break the network between a client and the server the
// ways a real network breaks:
//
//   - Stall: nothing more is read or forwarded in either direction, and no
//     socket is closed, so both peers' send buffers fill and each sees
//     silence, as behind a partition or a hung middlebox. Resume ends it.
//   - Cut: every relayed connection is reset at once.
//   - CutAfter, CutBefore: one connection is cut at a chosen client message,
//     after or instead of forwarding it; StallAt stalls the proxy, and
//     HoldAt that connection alone, at such a message.
//
// Stalls are seen truthfully by the client and the server processes, but
// not by their kernels: the proxy's sockets still acknowledge data and
// answer keepalive probes. Partition simulates a link that drops packets.
//
// The proxy is closed, and its goroutines waited for, in t.Cleanup.
type Proxy struct {
	dsn      url.URL
	upstream string
	dial     DialFunc
	ln       net.Listener
	ctx      context.Context // cancelled by Close
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu    sync.Mutex
	open  chan struct{} // closed while forwarding; a new one on each Stall
	links map[*link]struct{}
	rule  *rule
	shut  bool
}

// DialFunc opens the proxy's connection to its server.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Message is one message of a client to the server, after the startup
// message: its type byte and its body.
type Message struct {
	Type byte
	Body []byte
}

// IsQuery matches a simple-protocol query message whose text is sql.
func IsQuery(sql string) func(Message) bool {
	return func(m Message) bool { return m.Type == 'Q' && string(m.Body) == sql+"\x00" }
}

// IsStatement matches a message that sends sql: a simple-protocol query of
// it, or an extended-protocol Parse of it (as in a pipeline).
func IsStatement(sql string) func(Message) bool {
	return func(m Message) bool {
		switch m.Type {
		case 'Q':
			return string(m.Body) == sql+"\x00"
		case 'P':
			_, rest, ok := bytes.Cut(m.Body, []byte{0})
			return ok && bytes.HasPrefix(rest, []byte(sql+"\x00"))
		}
		return false
	}
}

type rule struct {
	match func(Message) bool
	do    action
	fired chan struct{} // closed once the rule has acted
}

type action int

const (
	cutAfter  action = iota // forward the message, cut at the answer
	cutBefore               // drop the message, reset the client
	stallAt                 // stall the proxy, holding the message back
	holdAt                  // stall that connection for good, holding the message back
)

// link is one relayed connection.
type link struct {
	client, server net.Conn
	done           chan struct{} // closed once both sides are closed
	once           sync.Once
	dropReply      atomic.Pointer[rule] // cut at the server's next bytes
	clientGone     atomic.Bool          // the server side is kept, its bytes discarded
	held           atomic.Bool          // nothing more forwarded, nothing closed
}

// NewProxy starts a proxy to the server of dsn (a postgres:// URL, as pgtest
// makes them). DSN gives the same URL through the proxy.
func NewProxy(t testing.TB, dsn string) *Proxy {
	t.Helper()
	return NewProxyVia(t, dsn, nil)
}

// NewProxyVia is NewProxy with the connections to the server opened by dial
// (nil: a plain TCP dial).
func NewProxyVia(t testing.TB, dsn string, dial DialFunc) *Proxy {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		t.Fatalf("pgtest: proxy: %q is not a postgres:// URL with a host", redactURL(dsn))
	}
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: proxy: %v", err)
	}
	p := &Proxy{dsn: *u, upstream: u.Host, dial: dial, ln: ln, open: make(chan struct{}), links: map[*link]struct{}{}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	close(p.open)
	p.dsn.Host = ln.Addr().String()
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

// DSN is the proxied server's URL with the proxy's address.
func (p *Proxy) DSN() string { return p.dsn.String() }

// Stall stops all forwarding and reading, keeping every socket open, until
// Resume. New connections are accepted but stall too.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
		p.open = make(chan struct{})
	default: // already stalled
	}
}

// Resume ends a stall: everything held back flows again.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
	default:
		close(p.open)
	}
}

// Cut resets every relayed connection on both sides. Later connections are
// relayed as usual (or stall, during a stall).
func (p *Proxy) Cut() {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.reset()
	}
}

// CutAfter arms a one-shot rule for the next client message, on any
// connection, that match accepts: the message is forwarded, and the
// connection is reset on both sides as soon as the server starts to answer,
// so that the server acted on it but the client never learns how. The
// channel is closed once the connection is cut.
func (p *Proxy) CutAfter(match func(Message) bool) <-chan struct{} {
	return p.arm(&rule{match: match, do: cutAfter, fired: make(chan struct{})})
}

// CutBefore arms a one-shot rule for the next client message that match
// accepts: the message is dropped and the client's side of the connection
// reset, while the server's side stays open and silent until the server
// closes it or the proxy is closed: the server session lives on as it was,
// a transaction still open. The channel is closed once the client is cut.
func (p *Proxy) CutBefore(match func(Message) bool) <-chan struct{} {
	return p.arm(&rule{match: match, do: cutBefore, fired: make(chan struct{})})
}

// StallAt arms a one-shot rule for the next client message that match
// accepts: the proxy stalls (see Stall) before forwarding it, so the
// message reaches the server only after Resume. The channel is closed once
// the proxy stalled.
func (p *Proxy) StallAt(match func(Message) bool) <-chan struct{} {
	return p.arm(&rule{match: match, do: stallAt, fired: make(chan struct{})})
}

// HoldAt arms a one-shot rule for the next client message that match
// accepts: that message and everything after it on its connection, both
// ways, is held back for good, with both sockets left open, while other
// connections go on. The channel is closed once the connection is held.
func (p *Proxy) HoldAt(match func(Message) bool) <-chan struct{} {
	return p.arm(&rule{match: match, do: holdAt, fired: make(chan struct{})})
}

func (p *Proxy) arm(r *rule) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rule = r
	return r.fired
}

// take returns the armed rule if m fires it, disarming it.
func (p *Proxy) take(m Message) *rule {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rule
	if r == nil || !r.match(m) {
		return nil
	}
	p.rule = nil
	return r
}

// Close stops the proxy, resets every connection and waits for its
// goroutines. It is idempotent.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.shut {
		p.mu.Unlock()
		return
	}
	p.shut = true
	p.cancel()
	p.mu.Unlock()
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go p.relay(c)
	}
}

// wait blocks while the proxy is stalled or the link held; false means
// the link or the proxy was closed meanwhile.
func (p *Proxy) wait(l *link) bool {
	if l.held.Load() {
		select {
		case <-l.done:
		case <-p.ctx.Done():
		}
		return false
	}
	p.mu.Lock()
	open := p.open
	p.mu.Unlock()
	select {
	case <-open:
		return true
	case <-l.done:
	case <-p.ctx.Done():
	}
	return false
}

func (p *Proxy) relay(client net.Conn) {
	defer p.wg.Done()
	l := &link{client: client, done: make(chan struct{})}
	if !p.wait(l) {
		reset(client)
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	server, err := p.dial(ctx, "tcp", p.upstream)
	cancel()
	if err != nil {
		reset(client)
		return
	}
	l.server = server
	p.mu.Lock()
	if p.shut {
		p.mu.Unlock()
		l.reset()
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { p.fromClient(l) })
	wg.Go(func() { p.fromServer(l) })
	wg.Wait()
	l.close()
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// Codes of the untyped messages that may open a connection.
const (
	codeCancel = 80877102
	codeSSL    = 80877103
	codeGSSENC = 80877104
)

// fromClient forwards the client's messages one by one, so that rules can
// see them. After an SSL or GSS encryption request it forwards raw bytes:
// an encrypted stream cannot be read.
func (p *Proxy) fromClient(l *link) {
	defer func() {
		if !l.clientGone.Load() {
			l.close()
		}
	}()
	r := bufio.NewReaderSize(l.client, 32<<10)
	var msg []byte
	startup := true
	for {
		if !p.wait(l) {
			return
		}
		var err error
		var typ byte
		if startup {
			msg, err = readMessage(r, msg[:0], true)
		} else if typ, err = r.ReadByte(); err == nil {
			msg, err = readMessage(r, append(msg[:0], typ), false)
		}
		if err != nil {
			return
		}
		if startup {
			code := binary.BigEndian.Uint32(msg[4:8])
			if code == codeSSL || code == codeGSSENC {
				if p.wait(l) && write(l.server, msg) {
					p.copyRaw(l, r, l.server)
				}
				return
			}
			startup = code == codeCancel
		} else if rl := p.take(Message{Type: typ, Body: msg[5:]}); rl != nil {
			switch rl.do {
			case cutBefore:
				l.clientGone.Store(true)
				reset(l.client)
				close(rl.fired)
				return
			case cutAfter:
				l.dropReply.Store(rl)
			case stallAt:
				p.Stall()
				close(rl.fired)
			case holdAt:
				l.held.Store(true)
				close(rl.fired)
			}
		}
		if !p.wait(l) || !write(l.server, msg) {
			return
		}
	}
}

// readMessage appends to buf one message's length word and the rest it
// counts (an untyped message counts at least its code too).
func readMessage(r *bufio.Reader, buf []byte, untyped bool) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return buf, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n < 4 || n > 1<<30 || (untyped && n < 8) {
		return buf, fmt.Errorf("pgtest: proxy: bad message length %d", n)
	}
	buf = append(buf, hdr[:]...)
	start := len(buf)
	buf = append(buf, make([]byte, n-4)...)
	_, err := io.ReadFull(r, buf[start:])
	return buf, err
}

// fromServer forwards the server's bytes as they come.
func (p *Proxy) fromServer(l *link) {
	defer func() {
		if !l.clientGone.Load() {
			l.close()
		}
	}()
	p.copyRaw(l, l.server, l.client)
}

// copyRaw relays bytes from src to dst until either fails. Bytes from the
// server are dropped once its client is gone, and a link waiting for the
// answer of a CutAfter message is cut at its first byte.
func (p *Proxy) copyRaw(l *link, src io.Reader, dst net.Conn) {
	fromServer := dst == l.client
	buf := make([]byte, 32<<10)
	for {
		if !p.wait(l) {
			return
		}
		n, err := src.Read(buf)
		if n > 0 && fromServer {
			if r := l.dropReply.Load(); r != nil {
				l.reset()
				close(r.fired)
				return
			}
		}
		if n > 0 && !(fromServer && l.clientGone.Load()) {
			if !p.wait(l) || !write(dst, buf[:n]) {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func write(c net.Conn, b []byte) bool {
	_, err := c.Write(b)
	return err == nil
}

// reset closes c with a TCP reset rather than an orderly shutdown.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// reset resets both sides.
func (l *link) reset() {
	reset(l.client)
	if l.server != nil {
		reset(l.server)
	}
	l.once.Do(func() { close(l.done) })
}

// close closes both sides in the orderly way.
func (l *link) close() {
	l.client.Close()
	if l.server != nil {
		l.server.Close()
	}
	l.once.Do(func() { close(l.done) })
}

// redactURL drops the password from a URL for messages.
func redactURL(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
