package copy

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Liveness: a lock must not outlive a dead lockstep by long, and a live
// lockstep must not hold one side's lock while the other side is gone.
// Everything here derives from one figure, Options.StallTimeout (S, 30s by
// default), the longest a server may stay silent:
//
//   - Both ends watch the TCP connection. The server's side, through
//     tcp_keepalives_* and tcp_user_timeout: keepalives (first probe after
//     S/3 of silence, then every S/6) and a user timeout of S (data
//     unacknowledged, or refused by a zero window, for S): a lockstep host
//     or network gone is noticed within about S. lockstep's sockets get the
//     same keepalives and, as a backstop behind its own timeouts below
//     (which give the clearer error), a user timeout of 2S.
//   - lockstep gives up on a COPY that moves no bytes for S, on a short
//     statement (BEGIN, TRUNCATE, txid_current) unanswered for S, and on a
//     LOCK unanswered for --lock-timeout + S; it then rolls back both sides
//     and closes its connections, which releases the other server at once.
//   - A transaction lockstep leaves idle while it works on the other side
//     gets a round trip every S/6 (heartbeat), each answered within S/2.
//     Without one, no idle gap is longer than a statement on the other side
//     may go unanswered (S). So lockstep leaves no transaction idle longer
//     than S + S/6 by its own clock. The source server's clock may start
//     earlier: it goes idle once its last COPY bytes are in the network
//     buffers (several MB), which lockstep may still be relaying to a slow
//     destination. idle_in_transaction_session_timeout = 4S covers both, and
//     ends the session of a lockstep that stopped talking to it (hung,
//     stopped, or behind a middlebox that still acknowledges its packets).
//
// So a lock outlives a dead lockstep (killed, host down, network cut) by
// about S, and a lockstep that is alive but silent by at most 4S.

// StallError says a server answered nothing, or a COPY moved no data, for
// the stall timeout: the network to it is down or stalled, or the server
// hangs. The unit was rolled back; retrying it once the server answers is
// safe.
type StallError struct {
	Side  string // "source" or "destination"
	What  string // what was awaited
	After time.Duration
}

func (e *StallError) Error() string {
	return fmt.Sprintf("%s: nothing from the server for %s %s (network down or stalled, or the server hangs; --stall-timeout)",
		e.Side, e.After, e.What)
}

// keepalive is the TCP keepalive schedule for a stall timeout: a silent
// peer is given up after about stall.
type keepalive struct{ idle, interval time.Duration }

func keepaliveFor(stall time.Duration) keepalive {
	return keepalive{idle: max(stall/3, time.Second), interval: max(stall/6, time.Second)}
}

// count is the number of unanswered probes that ends the connection where
// no user timeout supersedes it.
func (k keepalive) count(stall time.Duration) int {
	return max(int((stall-k.idle)/k.interval), 1)
}

// heartbeatEvery and pingTimeout pace the round trips on an idle side.
func heartbeatEvery(stall time.Duration) time.Duration { return stall / 6 }
func pingTimeout(stall time.Duration) time.Duration    { return stall / 2 }

// idleTimeout is idle_in_transaction_session_timeout, against idle gaps of
// at most S + S/6 and the time a destination takes to load what the source
// left in the network buffers.
func idleTimeout(stall time.Duration) time.Duration { return 4 * stall }

// setupSQL is run once on every new connection, outside any transaction:
// session settings that let the server notice a vanished or silent
// lockstep (values in whole seconds are rounded up), and the pinned
// settings of pinnedSQL.
func setupSQL(stall time.Duration, serverVersion int) string {
	k := keepaliveFor(stall)
	secs := func(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }
	s := []string{
		fmt.Sprintf("SET tcp_keepalives_idle = %d", secs(k.idle)),
		fmt.Sprintf("SET tcp_keepalives_interval = %d", secs(k.interval)),
		fmt.Sprintf("SET tcp_keepalives_count = %d", k.count(stall)),
		fmt.Sprintf("SET idle_in_transaction_session_timeout = %d", idleTimeout(stall).Milliseconds()),
	}
	if serverVersion >= 120000 {
		s = append(s, fmt.Sprintf("SET tcp_user_timeout = %d", stall.Milliseconds()))
	}
	return strings.Join(s, "; ") + "; " + pinnedSQL(serverVersion)
}

// bounded gives one step on a side a context that ends after d, with a
// *StallError as its cause.
func bounded(ctx context.Context, side, what string, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, d, &StallError{Side: side, What: what, After: d})
}

// stalled returns the *StallError that ended sctx when err came of it, and
// err otherwise.
func stalled(sctx context.Context, err error) error {
	if se, ok := context.Cause(sctx).(*StallError); ok && err != nil {
		return se
	}
	return err
}

// ping is one round trip on conn, which must not be in use, answered
// within pingTimeout.
func (w *worker) ping(ctx context.Context, sd *side, conn *pgx.Conn) error {
	d := pingTimeout(w.opts.StallTimeout)
	pctx, cancel := bounded(ctx, sd.name, "to a round trip on its idle, locked session", d)
	defer cancel()
	err := conn.PgConn().Ping(pctx)
	if se := stalled(pctx, err); se != err {
		return se
	}
	if err != nil {
		return fmt.Errorf("%s: session lost: %w", sd.name, err)
	}
	return nil
}

// heartbeat keeps a transaction that idles while lockstep works on the
// other side visibly alive: a round trip every heartbeatEvery. It owns the
// connection until stop returns. pgx connections are not safe for
// concurrent use: nothing else may touch the connection meanwhile.
type heartbeat struct {
	quit chan struct{}
	done chan error
}

// startHeartbeat pings conn until stopped. The first failure ends it and
// is passed to onFail (if set) at once, so the caller may give up early.
func (w *worker) startHeartbeat(ctx context.Context, sd *side, conn *pgx.Conn, onFail func(error)) *heartbeat {
	h := &heartbeat{quit: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		t := time.NewTicker(heartbeatEvery(w.opts.StallTimeout))
		defer t.Stop()
		for {
			select {
			case <-h.quit:
				h.done <- nil
				return
			case <-ctx.Done():
				h.done <- nil
				return
			case <-t.C:
			}
			if err := w.ping(ctx, sd, conn); err != nil {
				if onFail != nil {
					onFail(err)
				}
				h.done <- err
				return
			}
		}
	}()
	return h
}

// stop ends the heartbeat, waiting for a round trip in flight, and
// returns the failure that ended it early, if any. A nil heartbeat is
// stopped.
func (h *heartbeat) stop() error {
	if h == nil {
		return nil
	}
	close(h.quit)
	return <-h.done
}

// progress watches a stream: it cancels the stream when no bytes moved for
// the stall timeout, naming the side that was awaited.
type progress struct {
	moved   atomic.Int64
	handing atomic.Bool // blocked handing bytes on to the destination
	ended   atomic.Bool // nothing more to watch: the source has sent all
}

// watch runs until stop is called, cancelling with a *StallError when
// nothing moved for stall. readSide is the side bytes are read from;
// writeSide, if any, the side they are handed to.
func (p *progress) watch(stall time.Duration, what, readSide, writeSide string, cancel context.CancelCauseFunc) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(max(stall/10, 10*time.Millisecond))
		defer t.Stop()
		last, since := p.moved.Load(), time.Now()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			if p.ended.Load() {
				return
			}
			if n := p.moved.Load(); n != last {
				last, since = n, time.Now()
				continue
			}
			if time.Since(since) >= stall {
				side := readSide
				if writeSide != "" && p.handing.Load() {
					side = writeSide
				}
				cancel(&StallError{Side: side, What: "while " + what + " (no bytes moved)", After: stall})
				return
			}
		}
	}()
	return func() { close(quit); <-done }
}

// counter counts the bytes written through it as progress.
type counter struct {
	p   *progress
	out io.Writer
}

func (c *counter) Write(b []byte) (int, error) {
	n, err := c.out.Write(b)
	c.p.moved.Add(int64(n))
	return n, err
}

// handoff marks the writes through it as waiting on the destination.
type handoff struct {
	p   *progress
	out io.Writer
}

func (h *handoff) Write(b []byte) (int, error) {
	h.p.handing.Store(true)
	n, err := h.out.Write(b)
	h.p.handing.Store(false)
	h.p.moved.Add(int64(n))
	return n, err
}
