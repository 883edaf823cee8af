package throttle

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

func TestParseDeadline(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	now := time.Date(2026, 11, 25, 22, 30, 0, 0, loc)
	for in, want := range map[string]time.Time{
		"23:15":                     time.Date(2026, 11, 25, 23, 15, 0, 0, loc),
		"06:00":                     time.Date(2026, 11, 26, 6, 0, 0, 0, loc),
		"22:30":                     time.Date(2026, 11, 26, 22, 30, 0, 0, loc),
		"2026-11-26T05:00:00Z":      time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC),
		"2026-11-26T05:00:00+02:00": time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC),
	} {
		got, err := ParseDeadline(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseDeadline(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"25:00", "tomorrow", "7pm", ""} {
		if _, err := ParseDeadline(bad, now); err == nil {
			t.Errorf("ParseDeadline(%q) accepted", bad)
		}
	}
}

// HH:MM is the next time the local clock reads it, across a change of
// daylight saving time too.
func TestParseDeadlineDST(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	for _, c := range []struct {
		now  time.Time
		in   string
		want time.Time
	}{
		// Clocks went forward from 02:00 to 03:00 that night; 02:30 is
		// next the night after.
		{time.Date(2026, 3, 8, 4, 0, 0, 0, ny), "02:30", time.Date(2026, 3, 9, 2, 30, 0, 0, ny)},
		{time.Date(2026, 3, 8, 4, 0, 0, 0, ny), "05:00", time.Date(2026, 3, 8, 5, 0, 0, 0, ny)},
		// Clocks went back from 02:00 EDT to 01:00 EST: at 01:10 EST the
		// next 01:30 is twenty minutes away, not a day.
		{time.Date(2026, 11, 1, 6, 10, 0, 0, time.UTC).In(ny), "01:30", time.Date(2026, 11, 1, 6, 30, 0, 0, time.UTC)},
		{time.Date(2026, 11, 1, 5, 10, 0, 0, time.UTC).In(ny), "01:30", time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC)},
		{time.Date(2026, 11, 1, 6, 40, 0, 0, time.UTC).In(ny), "01:30", time.Date(2026, 11, 2, 6, 30, 0, 0, time.UTC)},
		{time.Date(2026, 10, 31, 23, 0, 0, 0, ny), "06:00", time.Date(2026, 11, 1, 6, 0, 0, 0, ny)},
	} {
		got, err := ParseDeadline(c.in, c.now)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("at %s, ParseDeadline(%q) = %s, %v; want %s", c.now, c.in, got, err, c.want.In(ny))
		}
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{"50MB/s": 50e6, "512KiB/s": 512 << 10, "1.5GB": 1.5e9, "100B/s": 100, "2 MiB/s": 2 << 20} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"fast", "0MB/s", "-5MB/s", "5Mb/s", "5"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
}

func TestDeadlineAdmits(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	rate := 0.0
	d := &Deadline{At: now.Add(time.Minute), Assumed: 1e6, Rate: func() float64 { return rate }, Now: func() time.Time { return now }}
	ctx := context.Background()
	if err := d.Admit(ctx, Next{EstBytes: 30e6}); err != nil { // 30 s at the assumed 1 MB/s
		t.Fatalf("a unit that fits: %v", err)
	}
	var de *DeadlineError
	if err := d.Admit(ctx, Next{EstBytes: 90e6}); !errors.As(err, &de) || de.Predicted != 90*time.Second {
		t.Fatalf("a unit predicted past the deadline: %v", err)
	}
	rate = 10e6 // the run has measured 10 MB/s
	if err := d.Admit(ctx, Next{EstBytes: 90e6}); err != nil {
		t.Fatalf("at the measured rate it fits: %v", err)
	}
	now = now.Add(time.Minute)
	if err := d.Admit(ctx, Next{EstBytes: 1}); !errors.As(err, &de) || de.Predicted != 0 || !IsDeadline(err) {
		t.Fatalf("after the deadline: %v", err)
	}
}

func TestPause(t *testing.T) {
	p := Pause{For: 50 * time.Millisecond}
	began := time.Now()
	if err := p.Admit(context.Background(), Next{First: true}); err != nil || time.Since(began) > 40*time.Millisecond {
		t.Fatal("the first unit waited")
	}
	if err := p.Admit(context.Background(), Next{}); err != nil || time.Since(began) < 50*time.Millisecond {
		t.Fatal("a later unit did not rest")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (Pause{For: time.Hour}).Admit(ctx, Next{}); err == nil {
		t.Fatal("a cancelled run kept resting")
	}
}

// The writer delivers every byte, in order, whatever the burst.
func TestRateWriterDeliversAll(t *testing.T) {
	r := NewRate(1e9)
	var out bytes.Buffer
	data := bytes.Repeat([]byte("0123456789"), 500000) // 5 MB, many bursts
	n, err := io.Copy(r.Writer(context.Background(), &out), bytes.NewReader(data))
	if err != nil || n != int64(len(data)) || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("wrote %d of %d: %v", n, len(data), err)
	}
}
