#!/usr/bin/env bash
# lockstep-cron.sh CONFIG: one window of a batch move, run by cron (see
# lockstep.cron). CONFIG (see orders.conf) names the move and sets the
# connection strings and the arguments of `lockstep copy`.
#
# Exit codes of lockstep and what this makes of them:
#   0  everything copied and verified: NAME.done is written and later runs
#      do nothing (remove it to move again); silent, exit 0
#   3  stopped early (a SIGTERM, a window's end): units remain and the next
#      window runs again (with the run ledger, skipping what was
#      verified); silent, exit 0
#   1  a unit failed (rolled back; the others stand): one line, exit 1; the
#      next window runs again
#   2  bad input, nothing changed: one line with the error, exit 2
#   4  verification mismatch (rolled back): one line, exit 4
# Cron mails what is printed. SIGTERM and SIGINT are passed on to lockstep,
# which rolls back the units in flight and exits 3.
set -uo pipefail

config=${1:?usage: lockstep-cron.sh CONFIG}
NAME='' ARGS=()
# shellcheck source=orders.conf
source "$config" || exit 2
: "${NAME:?$config must set NAME}"
LOG_DIR=${LOG_DIR:-/var/log/lockstep}
STATE_DIR=${STATE_DIR:-/var/lib/lockstep}
METRICS_DIR=${METRICS_DIR:-/var/lib/prometheus/node-exporter}
LOCKSTEP=${LOCKSTEP:-lockstep}
log=$LOG_DIR/$NAME.log out=$LOG_DIR/$NAME.out
report=$STATE_DIR/$NAME.report.json done=$STATE_DIR/$NAME.done
metrics=$METRICS_DIR/$NAME.prom

mkdir -p "$LOG_DIR" "$STATE_DIR" "$METRICS_DIR" || exit 2
if [ -e "$done" ]; then
	printf '%s lockstep-cron: %s is done (%s); remove it to move again\n' "$(date -u +%FT%TZ)" "$NAME" "$done" >>"$out"
	exit 0
fi

"$LOCKSTEP" copy "${ARGS[@]}" --quiet --log-format json --report "$report" \
	--metrics-file "$metrics" --metrics-label "move=$NAME" >>"$out" 2>>"$log" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM
trap 'kill -INT "$pid" 2>/dev/null' INT
# wait returns early (above 128) when a trapped signal arrives: wait again
# for lockstep's own exit code. A child that already ended is reaped by
# the second wait; one that a signal killed was reaped by the first (127).
while true; do
	wait "$pid"
	code=$?
	[ "$code" -gt 128 ] || break
	if ! kill -0 "$pid" 2>/dev/null; then
		wait "$pid"
		again=$?
		[ "$again" -eq 127 ] || code=$again
		break
	fi
done
trap - TERM INT

case $code in
0)
	date -u +%FT%TZ >"$done"
	exit 0
	;;
3)
	exit 0
	;;
1)
	echo "lockstep $NAME: a unit failed and was rolled back; the next window runs it again. Report: $report, log: $log"
	exit 1
	;;
2)
	echo "lockstep $NAME: bad input, nothing changed: $(tail -n 1 "$log")"
	exit 2
	;;
4)
	echo "lockstep $NAME: verification mismatch (rolled back). Report: $report, log: $log"
	exit 4
	;;
*)
	echo "lockstep $NAME: lockstep ended with exit code $code. Log: $log"
	exit "$code"
	;;
esac
