#!/usr/bin/env bash
#
# bench.sh — lockstep against the psql|psql pipeline it replaces, in one run,
# on the same data, on two throwaway local PostgreSQL servers.
#
# Data: pgbench_accounts, SCALE x 100,000 rows in 16 hash partitions
# (pgbench_accounts_1..16), generated on the source with
#     pgbench -i -s $SCALE --partitions=16 --partition-method=hash -I dtgv
# ("v" vacuums once after loading, so the first timed run does not pay for
# setting hint bits); the destination gets the same tables and primary keys,
# empty (pgbench -i -s 1 ... -I dtp).
#
# Methods, each run RUNS times (interleaved: run 1 of every method, then run 2,
# ...), median reported:
#     (a) psql|psql pipeline (DESIGN.md), one partition at a time
#     (b) psql|psql pipeline, two partitions at a time (xargs -P2)
#     (c) lockstep --verify checksum --jobs 1
#     (d) lockstep --verify checksum --jobs 2  (skipped if --jobs is unsupported)
#     (e) lockstep --verify none --jobs 1      (shows what verification costs)
# One untimed warm-up copy comes first (WAL segment files get created, caches
# warm). Before every timed run the destination table is truncated and both
# servers checkpoint; after it the destination row count is checked (untimed).
#
# Environment:
#     SCALE=N          pgbench scale (default 100 = 10M rows, ~1.2 GB as COPY
#                      text); SCALE=10 for a quick run
#     RUNS=N           runs per method (default 3)
#     METHODS="a b c d e"  subset of methods to run
#     BENCH_OUT=DIR    where logs and results go (default: a new
#                      /tmp/lockstep-bench.XXXXXX, kept after the run)
#     LOCKSTEP_BIN=PATH  use this binary instead of building one
#     WARMUP=0         skip the untimed warm-up copy before the timed runs
#     PGSERVER_FSYNC=on  (default; off only for experiments)
#     MANY="2048 8192"  afterwards, scripts/bench-many.sh with these partition
#                      counts (plan time, copy time against the pipeline,
#                      writes blocked); MANY= skips it
#
# Servers: fsync on, PostgreSQL defaults except max_wal_size=4GB and
# checkpoint_timeout=30min.

set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/pgserver.sh
. "$ROOT/scripts/lib/pgserver.sh"

SCALE=${SCALE:-100}
RUNS=${RUNS:-3}
METHODS=${METHODS:-a b c d e}
NPART=16
TABLE=pgbench_accounts

die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
say() { printf '==> %s\n' "$*" >&2; }
usec() { # wall clock in microseconds
    if [[ -n "${EPOCHREALTIME:-}" ]]; then echo "${EPOCHREALTIME/./}"; else date +%s%6N; fi
}

[[ "$SCALE" =~ ^[0-9]+$ && "$SCALE" -gt 0 ]] || die "SCALE must be a positive integer, got '$SCALE'"
[[ "$RUNS" =~ ^[0-9]+$ && "$RUNS" -gt 0 ]] || die "RUNS must be a positive integer, got '$RUNS'"
for m in $METHODS; do
    [[ "$m" =~ ^[a-e]$ ]] || die "METHODS may only contain a b c d e, got '$m'"
done
for tool in psql pgbench; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool not found on PATH; install the Debian package 'postgresql-client'"
done
if [[ -z "${LOCKSTEP_BIN:-}" ]] && ! command -v go >/dev/null 2>&1; then
    die "go not found on PATH (needed to build lockstep); install Go or set LOCKSTEP_BIN"
fi

OUT=${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/lockstep-bench.XXXXXX")}
mkdir -p "$OUT"
# Make the output directory usable by everyone who writes to it (the servers
# run as another user when we are root; nothing of theirs goes here, but keep
# it readable for whoever inspects it).
chmod 755 "$OUT"

# ---------------------------------------------------------------- lockstep
if [[ -n "${LOCKSTEP_BIN:-}" ]]; then
    BIN=$LOCKSTEP_BIN
    [[ -x "$BIN" ]] || die "LOCKSTEP_BIN=$BIN is not executable"
else
    BIN="$OUT/lockstep"
    say "building lockstep"
    (cd "$ROOT" && go build -o "$BIN" .) || die "go build failed in $ROOT"
fi
HAVE_JOBS=0
if "$BIN" copy --help 2>&1 | grep -q -- '--jobs'; then
    HAVE_JOBS=1
fi
TIME_BIN=
if [[ -x /usr/bin/time ]] && /usr/bin/time -f %M -o /dev/null true 2>/dev/null; then
    TIME_BIN=/usr/bin/time # GNU time: peak RSS of lockstep
fi

# ---------------------------------------------------------------- servers
SETTINGS=(max_wal_size=4GB checkpoint_timeout=30min)
say "starting source and destination servers (fsync=${PGSERVER_FSYNC:-on}, ${SETTINGS[*]})"
pg_start source 0 "${SETTINGS[@]}"
pg_start dest 0 "${SETTINGS[@]}"
export SOURCE_DSN DEST_DSN

q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
qv() { psql -X -qAt -v ON_ERROR_STOP=1 "$@"; }

say "generating $TABLE on the source: pgbench -i -s $SCALE --partitions=$NPART --partition-method=hash -I dtgv"
t=$(usec)
pgbench -i -q -s "$SCALE" --partitions="$NPART" --partition-method=hash -I dtgv \
    -h 127.0.0.1 -p "$SOURCE_PORT" -U postgres postgres >"$OUT/pgbench-init-source.log" 2>&1 ||
    { tail -n 20 "$OUT/pgbench-init-source.log" >&2; die "pgbench -i on the source failed (log: $OUT/pgbench-init-source.log)"; }
gen_s=$(awk -v a="$t" -v b="$(usec)" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')
say "creating the empty tables on the destination: pgbench -i -s 1 --partitions=$NPART --partition-method=hash -I dtp"
pgbench -i -q -s 1 --partitions="$NPART" --partition-method=hash -I dtp \
    -h 127.0.0.1 -p "$DEST_PORT" -U postgres postgres >"$OUT/pgbench-init-dest.log" 2>&1 ||
    { tail -n 20 "$OUT/pgbench-init-dest.log" >&2; die "pgbench -i on the destination failed (log: $OUT/pgbench-init-dest.log)"; }
q -d "$DEST_DSN" -c "TRUNCATE $TABLE"

PARTS=()
for ((i = 1; i <= NPART; i++)); do PARTS+=("${TABLE}_$i"); done
nparts_src=$(qv -d "$SOURCE_DSN" -c "SELECT count(*) FROM pg_inherits WHERE inhparent = '$TABLE'::regclass")
nparts_dst=$(qv -d "$DEST_DSN" -c "SELECT count(*) FROM pg_inherits WHERE inhparent = '$TABLE'::regclass")
[[ "$nparts_src" == "$NPART" && "$nparts_dst" == "$NPART" ]] ||
    die "expected $NPART partitions on both sides, found source=$nparts_src destination=$nparts_dst"

say "measuring the data: row count and COPY text size"
ROWS=$(qv -d "$SOURCE_DSN" -c "SELECT count(*) FROM $TABLE")
BYTES=$(psql -X -qAt -d "$SOURCE_DSN" -c "COPY (SELECT * FROM $TABLE) TO STDOUT" | wc -c)
MB=$(awk -v b="$BYTES" 'BEGIN { printf "%.1f", b / 1e6 }')
say "$ROWS rows, $MB MB as COPY text (generated in ${gen_s}s)"

# ---------------------------------------------------------------- methods
# The pipeline from DESIGN.md for one table; appends "table seconds" to
# $UNIT_TIMES (seconds ~ how long the source lock, i.e. the write block, lasted).
pipeline_unit() {
    local t=$1 s e
    s=${EPOCHREALTIME/./}
    psql -X "$SOURCE_DSN" -1qAtc "LOCK TABLE $t IN EXCLUSIVE MODE; COPY $t TO STDOUT" |
        psql -X "$DEST_DSN" -1qAtc "LOCK TABLE $t IN EXCLUSIVE MODE; TRUNCATE $t; COPY $t FROM STDIN"
    e=${EPOCHREALTIME/./}
    echo "$t $(((e - s) / 1000))" >>"$UNIT_TIMES"
}
export -f pipeline_unit

method_label() {
    case $1 in
    a) echo "(a) psql|psql, 1 partition at a time" ;;
    b) echo "(b) psql|psql, 2 partitions at a time" ;;
    c) echo "(c) lockstep verify=checksum jobs=1" ;;
    d) echo "(d) lockstep verify=checksum jobs=2" ;;
    e) echo "(e) lockstep verify=none jobs=1" ;;
    *) echo "$1" ;;
    esac
}

# run_method M RUN: one timed run; prints elapsed microseconds on stdout.
run_method() {
    local m=$1 run=$2 log="$OUT/$1-run$2.log" s e rc=0
    export UNIT_TIMES="$OUT/$m-run$run.units"
    case $m in a | b) : >"$UNIT_TIMES" ;; esac
    local lsargs=()
    case $m in
    c) lsargs=(--verify checksum) ;;
    d) lsargs=(--verify checksum) ;;
    e) lsargs=(--verify none) ;;
    esac
    if ((HAVE_JOBS)); then
        case $m in c | e) lsargs+=(--jobs 1) ;; d) lsargs+=(--jobs 2) ;; esac
    fi
    s=$(usec)
    case $m in
    a)
        for t in "${PARTS[@]}"; do pipeline_unit "$t"; done >"$log" 2>&1 || rc=$?
        ;;
    b)
        # shellcheck disable=SC2016 # $1 expands in the child bash
        printf '%s\n' "${PARTS[@]}" |
            xargs -P2 -n1 bash -c 'set -euo pipefail; pipeline_unit "$1"' _ >"$log" 2>&1 || rc=$?
        ;;
    c | d | e)
        if [[ -n "$TIME_BIN" ]]; then
            "$TIME_BIN" -f %M -o "$OUT/$m-run$run.rss" \
                "$BIN" copy --source "$SOURCE_DSN" --dest "$DEST_DSN" --table "public.$TABLE" "${lsargs[@]}" \
                >"$log" 2>&1 || rc=$?
        else
            "$BIN" copy --source "$SOURCE_DSN" --dest "$DEST_DSN" --table "public.$TABLE" "${lsargs[@]}" \
                >"$log" 2>&1 || rc=$?
        fi
        ;;
    esac
    e=$(usec)
    if ((rc != 0)); then
        tail -n 20 "$log" >&2
        die "method $(method_label "$m") failed in run $run (exit $rc); log: $log"
    fi
    echo $((e - s))
}

prepare_run() {
    q -d "$DEST_DSN" -c "TRUNCATE $TABLE" -c "CHECKPOINT"
    q -d "$SOURCE_DSN" -c "CHECKPOINT"
}

check_run() {
    local m=$1 run=$2 got
    got=$(qv -d "$DEST_DSN" -c "SELECT count(*) FROM $TABLE")
    [[ "$got" == "$ROWS" ]] ||
        die "method $(method_label "$m") run $run left $got rows on the destination, expected $ROWS (log: $OUT/$m-run$run.log)"
}

ACTIVE=()
for m in $METHODS; do
    if [[ "$m" == d && "$HAVE_JOBS" == 0 ]]; then
        echo "note: (d) skipped: this lockstep binary has no --jobs option" >&2
        continue
    fi
    ACTIVE+=("$m")
done

if [[ "${WARMUP:-1}" == 1 ]]; then
    # One untimed copy first, so that no timed run pays for first-time costs
    # (new WAL segment files created and fsynced, cold caches on either side).
    prepare_run
    say "warm-up (untimed): psql|psql pipeline, two partitions at a time"
    export UNIT_TIMES="$OUT/warmup.units"
    # shellcheck disable=SC2016 # $1 expands in the child bash
    printf '%s\n' "${PARTS[@]}" |
        xargs -P2 -n1 bash -c 'set -euo pipefail; pipeline_unit "$1"' _ >"$OUT/warmup.log" 2>&1 ||
        die "warm-up copy failed; log: $OUT/warmup.log"
    check_run warm-up 0
fi

declare -A TIMES=()
LOADS=()
echo "method,run,seconds,loadavg_1min_before" >"$OUT/runs.csv"
for ((run = 1; run <= RUNS; run++)); do
    for m in "${ACTIVE[@]}"; do
        prepare_run
        load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?")
        say "run $run/$RUNS: $(method_label "$m") (load average $load)"
        us=$(run_method "$m" "$run")
        check_run "$m" "$run"
        TIMES[$m]+="$us "
        LOADS+=("$load")
        echo "$m,$run,$(awk -v u="$us" 'BEGIN { printf "%.3f", u / 1e6 }'),$load" >>"$OUT/runs.csv"
        say "    $(awk -v u="$us" 'BEGIN { printf "%.2f s", u / 1e6 }')"
    done
done

# ---------------------------------------------------------------- report
median_us() { # values...
    printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Per-unit "writes blocked" figures: lockstep prints writes-blocked=NNNms per
# unit; for the pipeline the whole per-partition pipeline time is the upper
# bound of the source lock hold.
unit_stats() { # m -> "max mean" in ms over all runs, or "n/a"
    local m=$1
    case $m in
    a | b) cat "$OUT/$m"-run*.units 2>/dev/null | awk '{ print $2 }' ;;
    *) cat "$OUT/$m"-run*.log 2>/dev/null | grep -o 'writes-blocked=[0-9.]*[mµu]*s' |
        sed 's/writes-blocked=//' | awk '/ms$/ { sub(/ms$/, ""); print; next } /[µu]s$/ { sub(/[µu]s$/, ""); print $0 / 1000; next } /s$/ { sub(/s$/, ""); print $0 * 1000 }' ;;
    esac | awk '{ n++; s += $1; if ($1 > mx) mx = $1 } END { if (n) printf "%d %d", mx, s / n; else print "n/a" }'
}
verify_ms() { # m -> mean over runs of the summed per-unit verify= times (ms)
    local m=$1 f
    for f in "$OUT/$m"-run*.log; do
        grep -o 'verify=[0-9.]*[mµu]*s' "$f" | sed 's/verify=//' |
            awk '/ms$/ { sub(/ms$/, ""); s += $0; next } /[µu]s$/ { sub(/[µu]s$/, ""); s += $0 / 1000; next } /s$/ { sub(/s$/, ""); s += $0 * 1000 } END { print s + 0 }'
    done | awk '{ n++; s += $1 } END { if (n && s > 0) printf "%d", s / n; else print "n/a" }'
}
rss_mb() {
    local m=$1
    cat "$OUT/$m"-run*.rss 2>/dev/null | grep -E '^[0-9]+$' |
        awk '{ if ($1 > mx) mx = $1; n++ } END { if (n) printf "%.0f", mx / 1024; else print "n/a" }'
}

REPORT="$OUT/results.txt"
{
    pgv=$(qv -d "$SOURCE_DSN" -c "SHOW server_version")
    cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
    echo "lockstep bench — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "PostgreSQL $pgv, two servers on loopback; $(nproc) CPUs${cpu:+ ($cpu)}"
    echo "server settings: fsync=${PGSERVER_FSYNC:-on}, max_wal_size=4GB, checkpoint_timeout=30min, everything else default"
    echo "data: $TABLE, pgbench scale $SCALE, $NPART hash partitions, $ROWS rows, $MB MB as COPY text"
    echo "runs: $RUNS per method, interleaved, after $([[ "${WARMUP:-1}" == 1 ]] && echo "one untimed warm-up copy" || echo "no warm-up (WARMUP=0)");"
    echo "      destination truncated and both servers checkpointed before each run"
    echo
    a_med=
    if [[ -n "${TIMES[a]:-}" ]]; then
        # shellcheck disable=SC2086
        a_med=$(median_us ${TIMES[a]})
    fi
    printf '%-40s %10s %8s %9s %7s %7s  %s\n' method rows MB "median s" "MB/s" "x (a)" "all runs (s)"
    for m in "${ACTIVE[@]}"; do
        # shellcheck disable=SC2086
        med=$(median_us ${TIMES[$m]})
        all=$(for us in ${TIMES[$m]}; do awk -v u="$us" 'BEGIN { printf "%.2f ", u / 1e6 }'; done)
        ratio=$([[ -n "$a_med" ]] && awk -v x="$med" -v a="$a_med" 'BEGIN { printf "%.2f", x / a }' || echo "-")
        awk -v l="$(method_label "$m")" -v r="$ROWS" -v mb="$MB" -v u="$med" -v x="$ratio" -v all="$all" \
            'BEGIN { printf "%-40s %10d %8.1f %9.2f %7.1f %7s  %s\n", l, r, mb, u / 1e6, mb / (u / 1e6), x, all }'
    done
    echo
    echo "writes blocked per unit over all runs (lockstep: its writes-blocked figure; pipeline: the whole"
    echo "per-partition pipeline time, an upper bound), lockstep verify time summed over units (mean per run),"
    echo "lockstep peak RSS:"
    printf '%-40s %8s %8s %12s %8s\n' method "max ms" "mean ms" "verify ms" "RSS MB"
    for m in "${ACTIVE[@]}"; do
        read -r mx mean <<<"$(unit_stats "$m") "
        case $m in a | b) v="-" rss="-" ;; *) v=$(verify_ms "$m") rss=$(rss_mb "$m") ;; esac
        printf '%-40s %8s %8s %12s %8s\n' "$(method_label "$m")" "${mx:-n/a}" "${mean:-n/a}" "$v" "$rss"
    done
    if [[ "$HAVE_JOBS" == 0 ]]; then
        echo
        echo "note: (d) skipped: this lockstep binary has no --jobs option"
    fi
    echo
    read -r lmin lmax <<<"$(printf '%s\n' "${LOADS[@]}" | sort -g | sed -n '1p;$p' | tr '\n' ' ')"
    echo "1-min load average before the timed runs: $lmin .. $lmax on $(nproc) CPUs (well above the"
    echo "bench's own ~2 means something else was running: rerun; per-run times are in runs.csv)"
} | tee "$REPORT"
echo
echo "logs (lockstep per-unit lines with writes-blocked/copy/verify times): $OUT/{c,d,e}-run*.log"
echo "results: $REPORT (per-run times: $OUT/runs.csv)"

MANY=${MANY-2048 8192}
if [[ -n "$MANY" ]]; then
    pg_stop source
    pg_stop dest
    say "one table in thousands of partitions: scripts/bench-many.sh (MANY=\"$MANY\")"
    MANY="$MANY" LOCKSTEP_BIN="$BIN" BENCH_OUT="$OUT/many" bash "$ROOT/scripts/bench-many.sh"
fi
