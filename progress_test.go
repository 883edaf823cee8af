package main

import (
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Planning that takes longer than the quiet period shows its stage on a
// terminal and clears the line at the end; quick planning, or planning off
// a terminal, shows nothing.
func TestPlanMeter(t *testing.T) {
	var slow lockedBuffer
	m := startPlanMeter(&slow, true, 50*time.Millisecond)
	m.set("reading the catalogs of 8192 tables")
	time.Sleep(300 * time.Millisecond)
	m.end()
	if got := slow.String(); !strings.Contains(got, "planning: reading the catalogs of 8192 tables (") || !strings.HasSuffix(got, "\r\033[K") {
		t.Errorf("slow planning on a terminal: %q", got)
	}
	var quick, notty lockedBuffer
	m = startPlanMeter(&quick, true, time.Second)
	m.set("resolving names")
	m.end()
	m = startPlanMeter(&notty, false, 0)
	m.set("resolving names")
	time.Sleep(50 * time.Millisecond)
	m.end()
	if quick.String() != "" || notty.String() != "" {
		t.Errorf("quick planning or no terminal printed %q, %q", quick.String(), notty.String())
	}
}
