package main

import (
	"io"

	"github.com/urfave/cli/v2"

	"lockstep/copy"
	"lockstep/metrics"
)

// metricsFlags are copy's and verify's flags for Prometheus metrics.
func metricsFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "metrics-file", Usage: "write Prometheus metrics to this file (text format, replaced atomically) " +
			"after each unit and at exit, for node_exporter's textfile collector (name it *.prom)"},
		&cli.StringFlag{Name: "metrics-listen", Usage: "serve the same metrics over HTTP at ADDR (host:port), path /metrics, for the length of the run"},
		&cli.StringSliceFlag{Name: "metrics-label", Usage: "NAME=VALUE: a label for every series (repeatable), e.g. to tell apart " +
			"runs whose files share a textfile directory"},
	}
}

// newMetrics makes st.metrics from the metrics flags, if any is given.
func (st *runState) newMetrics(command, file, listen string, labelArgs []string) error {
	if file == "" && listen == "" {
		return nil
	}
	if err := checkOutputFile("--metrics-file", file); err != nil {
		return err
	}
	labels, err := metrics.ParseLabels(labelArgs)
	if err != nil {
		return err
	}
	bi := readBuildInfo()
	st.metrics = metrics.New(metrics.Config{Command: command, RunID: st.runID, Version: bi.Version, Revision: bi.Revision,
		Labels: labels, File: file, Listen: listen, Logger: st.opts.Logger})
	st.metrics.SetDeadline(st.opts.Deadline) // --deadline, --max-duration
	if st.runID == processRunID {
		processMetrics.Store(st.metrics)
	}
	return nil
}

// metricsArgs makes st.metrics, file only, from the arguments of a copy
// or verify whose flags did not parse (or that failed before its metrics
// were set up), so that the file still records the exit.
func (st *runState) metricsArgs(args []string, stderr io.Writer) {
	cmd, files := flagArgs(args, "metrics-file")
	if (cmd != "copy" && cmd != "verify") || len(files) == 0 || files[len(files)-1] == "" ||
		checkOutputFile("--metrics-file", files[len(files)-1]) != nil {
		return
	}
	_, labels := flagArgs(args, "metrics-label")
	if st.opts.Logger == nil {
		st.opts.Logger = newLogger(stderr, st.logFormat, false, st.runID, st.secrets)
	}
	if err := st.newMetrics(cmd, files[len(files)-1], "", labels); err != nil {
		st.metrics = nil
	}
}

// callbacks are the unit callbacks of a run: the screen's, and the
// metrics' when there are metrics.
func (st *runState) callbacks(ui *output) (start func(string), done func(copy.Result), bytes func(int64)) {
	m := st.metrics
	if m == nil {
		return ui.unitStarted, ui.unitDone, ui.addBytes
	}
	start = func(unit string) { m.UnitStarted(unit); ui.unitStarted(unit) }
	done = func(r copy.Result) { m.UnitDone(r); ui.unitDone(r) }
	bytes = func(n int64) { m.Streamed(n); ui.addBytes(n) }
	return start, done, bytes
}
