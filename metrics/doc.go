// Package metrics owns lockstep's Prometheus metrics: one registry per run
// (never the process-wide default one, and no Go runtime or process
// collectors, so that a textfile holds lockstep's figures only), and its
// two outputs: a file in the text exposition format written atomically
// (a temporary file in the same directory, then a rename) after each unit
// and at exit, for node_exporter's textfile collector, and an HTTP
// endpoint (promhttp) serving the same registry for the length of the run.
//
// The copy and verify run loops know nothing of it: main feeds a Run from
// the callbacks copy.Options already has (OnStart, OnUnit, OnBytes) and
// from the final copy.Report, which the unit counts are reconciled with,
// so the file a run leaves agrees with its report.
//
// Every series carries the label command (copy or verify) and the labels
// given with --metrics-label; the run id is a label of lockstep_run_info
// only, so that runs do not multiply the series of the others. No series
// has a per-unit label.
//
// Adding a figure: a field of Run, created and registered in New, set by a
// method (as SetDeadline sets lockstep_deadline_timestamp_seconds), and a
// line in README.md's metrics table. The Grafana dashboard in deploy/ may
// query only names that a run's file contains; a test checks it.
package metrics
