package main

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"lockstep/internal/pgtest"
)

// promFile parses Prometheus text with the Prometheus parser.
func promFile(t *testing.T, r io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	return fams
}

func readProm(t *testing.T, path string) map[string]*dto.MetricFamily {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return promFile(t, f)
}

// metric is the series of family name whose labels include want.
func metric(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) *dto.Metric {
	t.Helper()
	fam := fams[name]
	if fam == nil {
		t.Fatalf("no %s in the metrics", name)
	}
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for i := 0; i+1 < len(want); i += 2 {
			ok = ok && labels[want[i]] == want[i+1]
		}
		if ok {
			return m
		}
	}
	t.Fatalf("no %s%v in the metrics", name, want)
	return nil
}

// value is a gauge's or counter's value.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	m := metric(t, fams, name, labels...)
	if m.GetGauge() != nil {
		return m.GetGauge().GetValue()
	}
	return m.GetCounter().GetValue()
}

func readReport(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

func near(a, b, eps float64) bool { return math.Abs(a-b) <= eps }

// The metrics file parses with the Prometheus text parser and its figures
// are the report's: units by outcome, rows, bytes, writes-blocked and lock
// queue times, units remaining, the exit code and the run id; the last
// success time survives a failed run and a flag error.
func TestMetricsFileMatchesReport(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	for _, n := range []string{"1000", "3000", "20"} {
		schema := "CREATE TABLE m_" + n + " (id int PRIMARY KEY, note text);"
		pgtest.Exec(t, src, schema+"INSERT INTO m_"+n+" SELECT g, repeat('x', g % 50) FROM generate_series(1, "+n+") g")
		pgtest.Exec(t, dst, schema)
	}
	dir := t.TempDir()
	prom, report := filepath.Join(dir, "lockstep.prom"), filepath.Join(dir, "run.json")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"--source", src, "--dest", dst, "--tables-matching", `^public\.m_`, "--metrics-file", prom,
		"--metrics-label", "move=m", "--report", report}

	check := func(wantCode int) (map[string]*dto.MetricFamily, map[string]any) {
		t.Helper()
		fams, rep := readProm(t, prom), readReport(t, report)
		run := rep["run"].(map[string]any)
		units := run["units"].([]any)
		l := []string{"command", "copy", "move", "m"}
		if got := value(t, fams, "lockstep_run_exit_code", l...); got != float64(wantCode) || rep["exit_code"] != float64(wantCode) {
			t.Errorf("exit code: metrics %v, report %v, want %d", got, rep["exit_code"], wantCode)
		}
		metric(t, fams, "lockstep_run_info", append(l, "run", rep["run_id"].(string))...)
		for outcome, key := range map[string]string{"ok": "ok", "failed": "failed", "mismatch": "mismatch",
			"interrupted": "interrupted", "not_started": "not_started"} {
			if got := value(t, fams, "lockstep_units_total", append(l, "outcome", outcome)...); got != run[key] {
				t.Errorf("units %s: metrics %v, report %v", outcome, got, run[key])
			}
		}
		if got := value(t, fams, "lockstep_rows_total", l...); got != run["rows"] {
			t.Errorf("rows: metrics %v, report %v", got, run["rows"])
		}
		if got := value(t, fams, "lockstep_bytes_total", l...); got != run["bytes"] {
			t.Errorf("bytes: metrics %v, report %v", got, run["bytes"])
		}
		if got := value(t, fams, "lockstep_streamed_bytes_total", l...); got < run["bytes"].(float64) {
			t.Errorf("streamed bytes %v < bytes of the units ok %v", got, run["bytes"])
		}
		planned := value(t, fams, "lockstep_units_planned", l...)
		if planned != float64(len(units)) || value(t, fams, "lockstep_units_remaining", l...) != planned-run["ok"].(float64) {
			t.Errorf("planned %v of %d units, remaining %v with %v ok", planned, len(units), value(t, fams, "lockstep_units_remaining", l...), run["ok"])
		}
		var okBlocked, maxBlocked, srcWait float64
		var okCount, srcCount uint64
		for _, u := range units {
			u := u.(map[string]any)
			if u["status"] == "ok" {
				okBlocked += u["writes_blocked_s"].(float64)
				okCount++
			}
			maxBlocked = max(maxBlocked, u["writes_blocked_s"].(float64))
			if w := u["source_lock_wait_s"].(float64); w > 0 {
				srcWait += w
				srcCount++
			}
		}
		h := metric(t, fams, "lockstep_writes_blocked_seconds", append(l, "outcome", "ok")...).GetHistogram()
		if h.GetSampleCount() != okCount || !near(h.GetSampleSum(), okBlocked, 1e-6) {
			t.Errorf("writes blocked of units ok: metrics %d units, %vs; report %d units, %vs", h.GetSampleCount(), h.GetSampleSum(), okCount, okBlocked)
		}
		if b := h.GetBucket(); len(b) != 15 || b[0].GetUpperBound() != 0.002 || b[13].GetUpperBound() != 60 || !math.IsInf(b[14].GetUpperBound(), 1) {
			t.Errorf("writes-blocked buckets: %v", b)
		}
		if got := value(t, fams, "lockstep_writes_blocked_max_seconds", l...); !near(got, maxBlocked, 1e-6) {
			t.Errorf("writes blocked max: metrics %v, report %v", got, maxBlocked)
		}
		if okCount == uint64(len(units)) && !near(maxBlocked, run["writes_blocked_max_s"].(float64), 1e-6) {
			t.Errorf("report's max %v, units' max %v", run["writes_blocked_max_s"], maxBlocked)
		}
		q := metric(t, fams, "lockstep_lock_queue_seconds", append(l, "side", "source")...).GetHistogram()
		if q.GetSampleCount() != srcCount || !near(q.GetSampleSum(), srcWait, 1e-6) {
			t.Errorf("source lock queue: metrics %d, %vs; report %d, %vs", q.GetSampleCount(), q.GetSampleSum(), srcCount, srcWait)
		}
		started, _ := time.Parse(time.RFC3339Nano, rep["started"].(string))
		finished, _ := time.Parse(time.RFC3339Nano, rep["finished"].(string))
		if d := value(t, fams, "lockstep_run_duration_seconds", l...); !near(d, finished.Sub(started).Seconds(), 1) {
			t.Errorf("run duration %vs, report %s to %s", d, started, finished)
		}
		if end := value(t, fams, "lockstep_run_end_timestamp_seconds", l...); !near(end, float64(finished.UnixNano())/1e9, 1) {
			t.Errorf("end %v, report %s", end, finished)
		}
		if v := value(t, fams, "lockstep_deadline_timestamp_seconds", l...); v != 0 {
			t.Errorf("deadline %v without one", v)
		}
		return fams, rep
	}

	code, out, errOut := lockstep(t, ctx, append([]string{"copy"}, args...)...)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	fams, rep := check(0)
	finished, _ := time.Parse(time.RFC3339Nano, rep["finished"].(string))
	lastOK := value(t, fams, "lockstep_last_success_timestamp_seconds", "command", "copy")
	if !near(lastOK, float64(finished.UnixNano())/1e9, 1) || value(t, fams, "lockstep_unit_last_success_timestamp_seconds", "command", "copy") > lastOK {
		t.Errorf("last success %v, run finished %s", lastOK, finished)
	}
	if info, err := os.Stat(prom); err != nil || info.Mode().Perm() != 0o644 {
		t.Errorf("the file must be readable by node_exporter: %v %v", info.Mode(), err)
	}

	// One unit mismatches and, with --fail-fast, the next is not started:
	// exit 4, each counted as the report counts it; the last success is
	// the first run's.
	pgtest.Exec(t, dst, `CREATE FUNCTION up() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.note := NEW.note || '!'; RETURN NEW; END $$;
	                     CREATE TRIGGER up BEFORE INSERT ON m_20 FOR EACH ROW EXECUTE FUNCTION up();`)
	if code, out, errOut := lockstep(t, ctx, append([]string{"copy", "--order", "name", "--jobs", "1", "--fail-fast", "--redo"}, args...)...); code != 4 {
		t.Fatalf("exit %d, want 4\n%s%s", code, out, errOut)
	}
	fams, _ = check(4)
	if value(t, fams, "lockstep_units_total", "outcome", "mismatch") != 1 || value(t, fams, "lockstep_units_total", "outcome", "not_started") != 1 {
		t.Errorf("mismatched units %v, not started %v", value(t, fams, "lockstep_units_total", "outcome", "mismatch"),
			value(t, fams, "lockstep_units_total", "outcome", "not_started"))
	}
	if v := value(t, fams, "lockstep_units_remaining", "command", "copy"); v != 2 {
		t.Errorf("units remaining after a mismatch: %v", v)
	}
	if v := value(t, fams, "lockstep_last_success_timestamp_seconds", "command", "copy"); v != lastOK {
		t.Errorf("last success after a failed run: %v, want the earlier %v", v, lastOK)
	}

	// A flag error still writes the file, with exit code 2.
	if code, _, _ := lockstep(t, ctx, append([]string{"copy", "--frobnicate"}, args...)...); code != 2 {
		t.Fatalf("flag error: exit %d", code)
	}
	fams = readProm(t, prom)
	if value(t, fams, "lockstep_run_exit_code", "move", "m") != 2 || value(t, fams, "lockstep_last_success_timestamp_seconds", "move", "m") != lastOK {
		t.Errorf("after a flag error: exit code %v, last success %v", value(t, fams, "lockstep_run_exit_code"), value(t, fams, "lockstep_last_success_timestamp_seconds"))
	}

	// verify: units compared and mismatches, under command="verify".
	vprom := filepath.Join(dir, "verify.prom")
	began := time.Now()
	if code, out, errOut := lockstep(t, ctx, "verify", "--source", src, "--dest", dst, "--tables-matching", `^public\.m_`, "--metrics-file", vprom,
		"--max-duration", "1h"); code != 0 {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errOut)
	}
	fams = readProm(t, vprom)
	if d := value(t, fams, "lockstep_deadline_timestamp_seconds", "command", "verify"); !near(d, float64(began.Add(time.Hour).UnixNano())/1e9, 5) {
		t.Errorf("deadline %v with --max-duration 1h from %s", d, began)
	}
	if value(t, fams, "lockstep_units_total", "command", "verify", "outcome", "ok") != 3 || value(t, fams, "lockstep_units_total", "command", "verify", "outcome", "mismatch") != 0 ||
		value(t, fams, "lockstep_rows_total", "command", "verify") != 4020 {
		t.Errorf("verify metrics: units ok %v, mismatched %v, rows %v", value(t, fams, "lockstep_units_total", "outcome", "ok"),
			value(t, fams, "lockstep_units_total", "outcome", "mismatch"), value(t, fams, "lockstep_rows_total"))
	}
	if h := metric(t, fams, "lockstep_writes_blocked_seconds", "outcome", "ok").GetHistogram(); h.GetSampleCount() != 0 {
		t.Errorf("a verify without --lock blocked no writes, but the histogram counts %d", h.GetSampleCount())
	}

	// The Grafana dashboard is JSON and queries only names the file has.
	checkDashboard(t, readProm(t, prom))
}

// checkDashboard fails on a metric name in the dashboard's queries that
// lockstep's metrics do not contain (histograms as their _bucket, _sum and
// _count series).
func checkDashboard(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	names := map[string]bool{}
	for name, fam := range fams {
		names[name] = true
		if fam.GetType() == dto.MetricType_HISTOGRAM {
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		}
	}
	b, err := os.ReadFile("deploy/grafana/lockstep.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("deploy/grafana/lockstep.json is not JSON: %v", err)
	}
	var exprs []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "query") {
					exprs = append(exprs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(dash)
	if len(exprs) < 8 {
		t.Fatalf("the dashboard has %d queries", len(exprs))
	}
	used := map[string]bool{}
	for _, e := range exprs {
		for _, n := range regexp.MustCompile(`\blockstep_[a-zA-Z0-9_]+`).FindAllString(e, -1) {
			used[n] = true
			if !names[n] {
				t.Errorf("the dashboard queries %s, which lockstep's metrics do not contain (in %q)", n, e)
			}
		}
	}
	for _, n := range []string{"lockstep_units_remaining", "lockstep_streamed_bytes_total", "lockstep_writes_blocked_seconds_bucket",
		"lockstep_writes_blocked_max_seconds", "lockstep_units_total", "lockstep_deadline_timestamp_seconds"} {
		if !used[n] {
			t.Errorf("the dashboard does not show %s", n)
		}
	}
}

// --metrics-listen serves the run's metrics while it runs, and stops with
// it; an address that cannot be listened on, an unwritable metrics file and
// a bad label are bad input, before anything is locked.
func TestMetricsListen(t *testing.T) {
	t.Parallel()
	src, dst := pgtest.Get(t).NewDBs(t)
	pgtest.Exec(t, src, `CREATE TABLE l (id int PRIMARY KEY); INSERT INTO l SELECT generate_series(1, 100);`)
	pgtest.Exec(t, dst, `CREATE TABLE l (id int PRIMARY KEY); INSERT INTO l VALUES (-1);`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()

	// The port is taken: bad input, nothing copied.
	code, _, errOut := lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--table", "l", "--metrics-listen", addr)
	if code != 2 || !strings.Contains(errOut, "--metrics-listen "+addr) {
		t.Errorf("address in use: exit %d: %s", code, errOut)
	}
	ln.Close()
	for _, c := range []struct{ args []string }{
		{[]string{"--metrics-file", filepath.Join(t.TempDir(), "no", "such", "dir.prom")}},
		{[]string{"--metrics-label", "command=x", "--metrics-file", filepath.Join(t.TempDir(), "x.prom")}},
		{[]string{"--metrics-label", "bad-name=x", "--metrics-listen", addr}},
	} {
		code, _, errOut := lockstep(t, ctx, append([]string{"copy", "--source", src, "--dest", dst, "--table", "l"}, c.args...)...)
		if code != 2 || !strings.Contains(errOut, "--metrics-") {
			t.Errorf("%v: exit %d: %s", c.args, code, errOut)
		}
	}
	if got := pgtest.QueryString(t, dst, "SELECT count(*) FROM l"); got != "1" {
		t.Fatalf("bad input changed the destination: %s rows", got)
	}

	// A lock held on the source keeps the unit in flight while we scrape.
	blocker := pgtest.Connect(t, src)
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE l IN SHARE ROW EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		code, _, _ := lockstep(t, ctx, "copy", "--source", src, "--dest", dst, "--table", "l", "--metrics-listen", addr, "--lock-timeout", "30s")
		done <- code
	}()
	waitForLockQueue(t, ctx, src, "l")
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	fams := promFile(t, resp.Body)
	resp.Body.Close()
	if value(t, fams, "lockstep_units_in_flight") != 1 || value(t, fams, "lockstep_run_exit_code") != -1 ||
		value(t, fams, "lockstep_units_remaining") != 1 || value(t, fams, "lockstep_run_end_timestamp_seconds") != 0 {
		t.Errorf("scraped mid-run: in flight %v, exit code %v, remaining %v", value(t, fams, "lockstep_units_in_flight"),
			value(t, fams, "lockstep_run_exit_code"), value(t, fams, "lockstep_units_remaining"))
	}
	tx.Rollback(ctx)
	if code := <-done; code != 0 {
		t.Fatalf("exit %d", code)
	}
	if _, err := http.Get("http://" + addr + "/metrics"); err == nil {
		t.Errorf("still serving metrics after the run")
	}
	if got := pgtest.QueryString(t, dst, "SELECT count(*) FROM l"); got != "100" {
		t.Errorf("copied %s rows", got)
	}
}
