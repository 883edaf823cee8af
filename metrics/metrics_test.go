package metrics

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"lockstep/copy"
)

func TestParseLabels(t *testing.T) {
	got, err := ParseLabels([]string{"move=orders", "site=eu-1=x"})
	if err != nil || got["move"] != "orders" || got["site"] != "eu-1=x" || len(got) != 2 {
		t.Errorf("ParseLabels = %v, %v", got, err)
	}
	for _, bad := range []string{"move", "=x", "1a=x", "bad-name=x", "__name__=x", "command=x", "run=x", "outcome=x", "le=x"} {
		if _, err := ParseLabels([]string{bad}); err == nil {
			t.Errorf("ParseLabels(%q) accepted it", bad)
		}
	}
	if _, err := ParseLabels([]string{"a=1", "a=2"}); err == nil {
		t.Error("a label given twice was accepted")
	}
}

// Units ending at once from many workers are all counted, and each write
// replaces the file whole: the directory never holds a partial or
// temporary file afterwards.
func TestConcurrentUnitsAndAtomicFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lockstep.prom")
	r := New(Config{Command: "copy", RunID: "x", File: path, Labels: map[string]string{"move": "m"}})
	if err := r.Open(); err != nil {
		t.Fatal(err)
	}
	r.Planned(64, 64*100)
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			r.UnitStarted("u")
			r.Streamed(100)
			st := copy.StatusOK
			if i%8 == 0 {
				st = copy.StatusFailed
			}
			r.UnitDone(copy.Result{Status: st, Rows: 10, Bytes: 100, EstBytes: 100, WritesBlocked: time.Duration(i) * time.Millisecond})
		})
	}
	wg.Wait()
	if err := r.Finish(&copy.Report{OK: 56, Failed: 8}, 1); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(r.units.WithLabelValues("ok")); got != 56 {
		t.Errorf("units ok %v", got)
	}
	if got := testutil.ToFloat64(r.remaining); got != 8 {
		t.Errorf("remaining %v", got)
	}
	if got := testutil.ToFloat64(r.remainingBytes); got != 800 {
		t.Errorf("remaining bytes %v", got)
	}
	if got := testutil.ToFloat64(r.blockedMax); got != 0.063 {
		t.Errorf("max blocked %v", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("files left beside the metrics file: %v", entries)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `lockstep_units_total{command="copy",move="m",outcome="failed"} 8`) {
		t.Errorf("file:\n%s", b)
	}
}

// An unwritable file is bad input at Open, said once; the run's later
// writes are skipped.
func TestOpenUnwritable(t *testing.T) {
	r := New(Config{Command: "copy", File: filepath.Join(t.TempDir(), "missing", "x.prom")})
	if err := r.Open(); err == nil || !strings.Contains(err.Error(), "--metrics-file") {
		t.Fatalf("Open: %v", err)
	}
	if err := r.Finish(nil, 2); err != nil {
		t.Errorf("Finish after a failed Open: %v", err)
	}
}
