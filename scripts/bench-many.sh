#!/usr/bin/env bash
#
# bench-many.sh — lockstep on one table split into thousands of partitions,
# against the psql|psql pipeline, in one run. scripts/bench.sh runs it after
# its main comparison (MANY= to skip); it also runs on its own.
#
# For each N in $MANY (default "2048 8192"): a hash-partitioned
# pgbench_accounts with N partitions and about 250 rows per partition
# (pgbench scale N/400, at least 1) on the source, empty on the destination;
# then, measured:
#     plan         lockstep plan of the whole table (median of 3)
#     copy         one verified lockstep copy of every partition, --jobs 2
#                  (plan included), with its writes-blocked p50/p95
#     pipeline     the psql|psql pipeline of DESIGN.md on every 32nd
#                  partition, one at a time, scaled by 32 (running it on
#                  thousands of partitions would take many minutes)
# and the ratio copy / pipeline.
#
# The servers run with max_locks_per_transaction=256: truncating a
# partitioned table of 8192 partitions in one transaction (done between runs
# on the destination) locks every partition, more than the default lock
# table holds.
#
# Environment: MANY="2048 8192", BENCH_OUT=DIR, LOCKSTEP_BIN=PATH,
# PGSERVER_FSYNC=on (default).

set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/pgserver.sh
. "$ROOT/scripts/lib/pgserver.sh"

MANY=${MANY:-2048 8192}
TABLE=pgbench_accounts
SAMPLE=32

die() { printf 'bench-many: error: %s\n' "$*" >&2; exit 1; }
say() { printf '==> %s\n' "$*" >&2; }
usec() { echo "${EPOCHREALTIME/./}"; }
secs() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1e6 }'; }

for n in $MANY; do
    [[ "$n" =~ ^[0-9]+$ && "$n" -ge $SAMPLE ]] || die "MANY must list partition counts of at least $SAMPLE, got '$n'"
done
for tool in psql pgbench; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found on PATH; install the Debian package 'postgresql-client'"
done

OUT=${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/lockstep-bench-many.XXXXXX")}
mkdir -p "$OUT"
chmod 755 "$OUT"
if [[ -n "${LOCKSTEP_BIN:-}" ]]; then
    BIN=$LOCKSTEP_BIN
else
    BIN="$OUT/lockstep"
    say "building lockstep"
    (cd "$ROOT" && go build -o "$BIN" .) || die "go build failed in $ROOT"
fi

SETTINGS=(max_wal_size=4GB checkpoint_timeout=30min max_locks_per_transaction=256)
say "starting source and destination servers (fsync=${PGSERVER_FSYNC:-on}, ${SETTINGS[*]})"
pg_start many_source 0 "${SETTINGS[@]}"
pg_start many_dest 0 "${SETTINGS[@]}"
SRC=$MANY_SOURCE_DSN
DST=$MANY_DEST_DSN

q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
qv() { psql -X -qAt -v ON_ERROR_STOP=1 "$@"; }

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

pipeline_unit() {
    psql -X "$SRC" -1qAtc "LOCK TABLE $1 IN EXCLUSIVE MODE; COPY $1 TO STDOUT" |
        psql -X "$DST" -1qAtc "LOCK TABLE $1 IN EXCLUSIVE MODE; TRUNCATE $1; COPY $1 FROM STDIN"
}

# ms FIELD LINE: a duration written by lockstep (e.g. 4ms, 1.2s, 850µs) in ms
to_ms() { awk '{ v = $1; if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 } else if (v ~ /[µu]s$/) { sub(/[µu]s$/, "", v); print v / 1000 } else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000 } }'; }

RESULTS=()
for n in $MANY; do
    scale=$((n / 400))
    ((scale >= 1)) || scale=1
    say "$n partitions: pgbench -i -s $scale --partitions=$n on the source, empty on the destination"
    q -d "$SRC" -c "DROP TABLE IF EXISTS $TABLE"
    q -d "$DST" -c "DROP TABLE IF EXISTS $TABLE"
    pgbench -i -q -s "$scale" --partitions="$n" --partition-method=hash -I dtgv "$SRC" >"$OUT/init-$n-source.log" 2>&1 ||
        { tail -n 20 "$OUT/init-$n-source.log" >&2; die "pgbench -i on the source failed"; }
    pgbench -i -q -s 1 --partitions="$n" --partition-method=hash -I dtp "$DST" >"$OUT/init-$n-dest.log" 2>&1 ||
        { tail -n 20 "$OUT/init-$n-dest.log" >&2; die "pgbench -i on the destination failed"; }
    q -d "$DST" -c "TRUNCATE $TABLE"
    rows=$(qv -d "$SRC" -c "SELECT count(*) FROM $TABLE")

    plans=()
    for _ in 1 2 3; do
        s=$(usec)
        "$BIN" plan --source "$SRC" --dest "$DST" --table "$TABLE" >"$OUT/plan-$n.txt" 2>&1 ||
            { tail -n 5 "$OUT/plan-$n.txt" >&2; die "lockstep plan failed ($n partitions)"; }
        plans+=($(($(usec) - s)))
    done
    plan_us=$(printf '%s\n' "${plans[@]}" | median)

    q -d "$DST" -c "CHECKPOINT"
    q -d "$SRC" -c "CHECKPOINT"
    say "$n partitions: lockstep copy --jobs 2 (verified)"
    s=$(usec)
    /usr/bin/time -f %M -o "$OUT/copy-$n.rss" "$BIN" copy --source "$SRC" --dest "$DST" --table "$TABLE" --jobs 2 \
        --progress-interval 0 >"$OUT/copy-$n.log" 2>&1 ||
        { tail -n 20 "$OUT/copy-$n.log" >&2; die "lockstep copy failed ($n partitions)"; }
    copy_us=$(($(usec) - s))
    got=$(qv -d "$DST" -c "SELECT count(*) FROM $TABLE")
    [[ "$got" == "$rows" ]] || die "lockstep left $got rows on the destination, expected $rows"
    summary=$(grep '^total:' "$OUT/copy-$n.log" | tail -n 1)
    p50=$(grep -o 'p50=[^ ]*' <<<"$summary" | cut -d= -f2 | to_ms)
    p95=$(grep -o 'p95=[^ ]*' <<<"$summary" | cut -d= -f2 | to_ms)
    rss=$(awk '{ printf "%.0f", $1 / 1024 }' "$OUT/copy-$n.rss")

    q -d "$DST" -c "TRUNCATE $TABLE" -c "CHECKPOINT"
    q -d "$SRC" -c "CHECKPOINT"
    say "$n partitions: psql|psql pipeline on one partition in ${SAMPLE}"
    s=$(usec)
    for ((i = 1; i <= n; i += SAMPLE)); do pipeline_unit "${TABLE}_$i"; done >"$OUT/pipeline-$n.log" 2>&1 ||
        { tail -n 20 "$OUT/pipeline-$n.log" >&2; die "pipeline failed ($n partitions)"; }
    sampled=$(((n + SAMPLE - 1) / SAMPLE))
    pipe_us=$(awk -v u="$(($(usec) - s))" -v k="$sampled" -v n="$n" 'BEGIN { printf "%d", u / k * n }')
    ratio=$(awk -v a="$copy_us" -v b="$pipe_us" 'BEGIN { printf "%.3f", a / b }')
    RESULTS+=("$(printf '%-10s %10s %9s %9s %14s %8s %8s %8s %7s' "$n" "$rows" "$(secs "$plan_us")" "$(secs "$copy_us")" \
        "$(secs "$pipe_us")" "$ratio" "$p50" "$p95" "$rss")")
done

REPORT="$OUT/results.txt"
{
    echo "lockstep bench-many — $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs; fsync=${PGSERVER_FSYNC:-on}"
    echo "plan: median of 3 'lockstep plan'; copy: one verified 'lockstep copy --jobs 2' (plan included);"
    echo "pipeline: psql|psql on one partition in ${SAMPLE}, one at a time, scaled to all partitions"
    printf '%-10s %10s %9s %9s %14s %8s %8s %8s %7s\n' partitions rows "plan s" "copy s" "pipeline s" "x pipe" "p50 ms" "p95 ms" "RSS MB"
    printf '%s\n' "${RESULTS[@]}"
    echo "(p50/p95: writes blocked per unit; RSS: lockstep's peak during the copy)"
} | tee "$REPORT"
