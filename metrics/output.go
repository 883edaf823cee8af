package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// write replaces the file (with r.mu held, so writes happen in order).
func (r *Run) write() error {
	if r.cfg.File == "" {
		return nil
	}
	if err := prometheus.WriteToTextfile(r.cfg.File, r.reg); err != nil {
		return fmt.Errorf("--metrics-file: %w", err)
	}
	return nil
}

// writeLogged writes the file during the run: a failure is logged (once)
// and the run goes on; Finish reports its own.
func (r *Run) writeLogged() {
	if err := r.write(); err != nil && !r.warned {
		r.warned = true
		r.cfg.Logger.Warn("cannot write the metrics file; the run goes on", "error", err)
	}
}

func (r *Run) serve(ln net.Listener) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	r.served = make(chan error, 1)
	go func() { r.served <- r.srv.Serve(ln) }()
}

// shutdown stops the HTTP server, if any, and waits for it.
func (r *Run) shutdown() error {
	if r.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := r.srv.Shutdown(ctx)
	if serr := <-r.served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	r.srv = nil
	if err != nil {
		return fmt.Errorf("--metrics-listen: %w", err)
	}
	return nil
}

// carryOver sets lockstep_last_success_timestamp_seconds from the file a
// previous run left at the same path (its series with this run's labels),
// so that a failed run does not hide when the last good one was. A missing
// or unreadable file carries nothing over.
func (r *Run) carryOver() {
	f, err := os.Open(r.cfg.File)
	if err != nil {
		return
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(f)
	if err != nil {
		r.cfg.Logger.Warn("the previous metrics file does not parse; the last success time starts afresh",
			"file", r.cfg.File, "error", err)
		return
	}
	fam := families["lockstep_last_success_timestamp_seconds"]
	if fam == nil {
		return
	}
	for _, m := range fam.GetMetric() {
		if r.ours(m.GetLabel()) && m.GetGauge() != nil {
			r.lastSuccess.Set(m.GetGauge().GetValue())
			return
		}
	}
}

// ours tells whether labels are this run's constant labels.
func (r *Run) ours(labels []*dto.LabelPair) bool {
	if len(labels) != len(r.cfg.Labels)+1 {
		return false
	}
	for _, l := range labels {
		want, ok := r.cfg.Labels[l.GetName()]
		if l.GetName() == "command" {
			want, ok = r.cfg.Command, true
		}
		if !ok || want != l.GetValue() {
			return false
		}
	}
	return true
}
