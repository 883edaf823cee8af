// Package throttle owns what decides whether the next unit may start, and
// how fast data may flow: a deadline after which, or so close to which, no
// unit starts (--deadline, --max-duration); the replication lag of the
// servers' standbys (--max-replica-lag); a rest between units
// (--pause-between); and a cap on the bytes streamed per second across all
// units (--max-rate). The run loop asks one Gate before each unit. A unit in
// flight is never paused by a gate: it holds locks; only the rate cap acts
// on it, and the plan's write-block prediction accounts for that.
package throttle
