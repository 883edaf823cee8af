#!/usr/bin/env bash
#
# bench.sh — lockstep against the tools it is measured by, in one run, on the
# same data, on two throwaway local PostgreSQL servers: the psql|psql pipeline
# it replaces, pgcopydb, and the floor set by the destination server itself.
#
# Data, 32 leaf tables in two partitioned tables (and nothing else, on either
# side, so every method copies exactly the same tables):
#   - pgbench_accounts, SCALE x 100,000 rows in 16 hash partitions
#     (pgbench_accounts_1..16), generated on the source with
#         pgbench -i -s $SCALE --partitions=16 --partition-method=hash -I dtgv
#     ("v" vacuums once after loading, so the first timed run does not pay for
#     setting hint bits); pgbench's other tables (branches, tellers, history)
#     are dropped;
#   - orders, MIXED_ROWS rows of mixed column types in 16 hash partitions
#     (orders_p00..p15): testdata/orders/schema.sql and data.sql, then VACUUM
#     ANALYZE. Its user-defined enum makes lockstep copy it as COPY text.
# The destination gets the same tables and primary keys, empty.
#
# Methods, each run RUNS times, interleaved (run 1 of every method, then run
# 2, ...), median reported:
#     (a) psql|psql pipeline (DESIGN.md), one partition at a time
#     (b) psql|psql pipeline, two partitions at a time (xargs -P2)
#     (c) lockstep --verify checksum --jobs 1
#     (d) lockstep --verify checksum --jobs 2  (skipped if --jobs is unsupported)
#     (e) lockstep --verify none --jobs 1      (what verification costs)
#     (f) lockstep --verify none --jobs 2      (skipped if --jobs is unsupported)
#     (g) pgcopydb copy table-data --table-jobs 2, a fresh --dir per run
#         (skipped, saying so, when pgcopydb is not installed)
#     (h) floor, destination ingest alone: every partition loaded from a file
#         holding its binary COPY from the source (written once, untimed), by
#         TRUNCATE + \copy ... FROM (FORMAT binary, FREEZE) in one transaction,
#         as lockstep loads it; two psql sessions, each taking every other
#         partition, so two partitions at a time
#     (i) floor, destination read-back alone: \copy ... TO '/dev/null'
#         (FORMAT binary) of every destination partition, two sessions as in
#         (h) (the destination is first filled as (h) fills it, untimed,
#         unless the run before was (h))
#   and, only when METHODS names them (the --jobs rule: how many units in
#   flight pay off on this machine):
#     (j) lockstep --verify checksum --jobs 3
#     (k) lockstep --verify checksum --jobs 4
# One untimed warm-up copy comes first (WAL segment files get created, caches
# warm). Before every timed run the destination is truncated (except for (i))
# and both servers checkpoint; after it the row count of every destination
# partition is checked against the source's (untimed).
#
# Measured besides wall time: for lockstep (and pgcopydb) the CPU seconds
# (user + system) and peak RSS of the process, from /usr/bin/time; per unit,
# lockstep's writes-blocked time, averaged over the pgbench partitions and
# over the orders partitions separately. Printed: medians and ratios to (a),
# (d)/(g), (d)/(a), CPU verified/unverified (d/f, c/e), what verification adds
# to writes-blocked (c/e), RSS, and (d) / ((h) + (i)).
#
# Environment:
#     SCALE=N          pgbench scale (default 100 = 10M rows); SCALE=10 for a
#                      quick run
#     MIXED_ROWS=N     rows of the orders table (default 2000000)
#     RUNS=N           runs per method (default 3)
#     METHODS="a b c d e f g h i"  methods to run (default); "c d j k" compares
#                      verified copies at 1 to 4 jobs
#     BENCH_OUT=DIR    where logs and results go (default: a new
#                      /tmp/lockstep-bench.XXXXXX, kept after the run; the
#                      floor's data files are removed at exit)
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
# shellcheck source=lib/benchstats.sh
. "$ROOT/scripts/lib/benchstats.sh"

SCALE=${SCALE:-100}
MIXED_ROWS=${MIXED_ROWS:-2000000}
RUNS=${RUNS:-3}
METHODS=${METHODS:-a b c d e f g h i}
NPART=16
DATA="$ROOT/testdata/orders"

die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
say() { printf '==> %s\n' "$*" >&2; }
usec() { # wall clock in microseconds
    if [[ -n "${EPOCHREALTIME:-}" ]]; then echo "${EPOCHREALTIME/./}"; else date +%s%6N; fi
}
secs() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1e6 }'; }

[[ "$SCALE" =~ ^[0-9]+$ && "$SCALE" -gt 0 ]] || die "SCALE must be a positive integer, got '$SCALE'"
[[ "$MIXED_ROWS" =~ ^[0-9]+$ && "$MIXED_ROWS" -gt 0 ]] || die "MIXED_ROWS must be a positive integer, got '$MIXED_ROWS'"
[[ "$RUNS" =~ ^[0-9]+$ && "$RUNS" -gt 0 ]] || die "RUNS must be a positive integer, got '$RUNS'"
for m in $METHODS; do
    [[ "$m" =~ ^[a-k]$ ]] || die "METHODS may only contain a b c d e f g h i j k, got '$m'"
done
for tool in psql pgbench; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool not found on PATH; install the Debian package 'postgresql-client'"
done
if [[ -z "${LOCKSTEP_BIN:-}" ]] && ! command -v go >/dev/null 2>&1; then
    die "go not found on PATH (needed to build lockstep); install Go or set LOCKSTEP_BIN"
fi
[[ -f "$DATA/schema.sql" && -f "$DATA/data.sql" ]] || die "missing $DATA/schema.sql or data.sql"

OUT=${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/lockstep-bench.XXXXXX")}
mkdir -p "$OUT"
# Keep it readable for whoever inspects it (the servers run as another user
# when we are root; nothing of theirs goes here).
chmod 755 "$OUT"

# ---------------------------------------------------------------- tools
if [[ -n "${LOCKSTEP_BIN:-}" ]]; then
    BIN=$LOCKSTEP_BIN
    [[ -x "$BIN" ]] || die "LOCKSTEP_BIN=$BIN is not executable"
else
    BIN="$OUT/lockstep"
    say "building lockstep"
    (cd "$ROOT" && go build -o "$BIN" .) || die "go build failed in $ROOT"
fi
# The help text is read whole first: grep -q would stop reading at its first
# match, and under pipefail the SIGPIPE that then ends lockstep fails the test.
COPY_HELP=$("$BIN" copy --help 2>&1 || true)
HAVE_JOBS=0
HAVE_REDO=0
if grep -q -- '--redo' <<<"$COPY_HELP"; then
    HAVE_REDO=1
fi
if grep -q -- '--jobs' <<<"$COPY_HELP"; then
    HAVE_JOBS=1
fi
TIME_BIN=
if [[ -x /usr/bin/time ]] && /usr/bin/time -f %M -o /dev/null true 2>/dev/null; then
    TIME_BIN=/usr/bin/time # GNU time: CPU seconds and peak RSS of lockstep
fi

NOTES=()
ACTIVE=()
active() { [[ " ${ACTIVE[*]} " == *" $1 "* ]]; }
for m in $METHODS; do
    if [[ "$m" == [dfjk] && "$HAVE_JOBS" == 0 ]]; then
        NOTES+=("($m) skipped: this lockstep binary has no --jobs option")
        continue
    fi
    if [[ "$m" == g ]] && ! command -v pgcopydb >/dev/null 2>&1; then
        NOTES+=("pgcopydb not installed (Debian package pgcopydb): skipped")
        continue
    fi
    active "$m" || ACTIVE+=("$m")
done
# pgcopydb's table-data step also runs VACUUM ANALYZE on every table it copied,
# in processes of its own, before it returns; versions that can skip that are
# told to, older ones (0.10, Debian 12) are timed with it and the report says so.
PGCOPYDB_ARGS=()
if active g; then
    if grep -q -- '--skip-vacuum' <<<"$(pgcopydb copy table-data --help 2>&1 || true)"; then
        PGCOPYDB_ARGS+=(--skip-vacuum)
    else
        NOTES+=("(g) $(pgcopydb --version 2>&1 | grep -o 'pgcopydb version [^ ]*' | head -n 1 || echo pgcopydb) has no --skip-vacuum: its time includes the VACUUM ANALYZE it runs on every table it copied (in 2 processes of its own, alongside the copies)")
    fi
fi
for n in "${NOTES[@]}"; do echo "$n" >&2; done
((${#ACTIVE[@]} > 0)) || die "no method left to run (METHODS=\"$METHODS\")"

# ---------------------------------------------------------------- servers
SETTINGS=(max_wal_size=4GB checkpoint_timeout=30min)
say "starting source and destination servers (fsync=${PGSERVER_FSYNC:-on}, ${SETTINGS[*]})"
pg_start source 0 "${SETTINGS[@]}"
pg_start dest 0 "${SETTINGS[@]}"
export SOURCE_DSN DEST_DSN

q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
qv() { psql -X -qAt -v ON_ERROR_STOP=1 "$@"; }

say "generating pgbench_accounts on the source: pgbench -i -s $SCALE --partitions=$NPART --partition-method=hash -I dtgv"
t=$(usec)
pgbench -i -q -s "$SCALE" --partitions="$NPART" --partition-method=hash -I dtgv \
    -h 127.0.0.1 -p "$SOURCE_PORT" -U postgres postgres >"$OUT/pgbench-init-source.log" 2>&1 ||
    { tail -n 20 "$OUT/pgbench-init-source.log" >&2; die "pgbench -i on the source failed (log: $OUT/pgbench-init-source.log)"; }
say "generating orders on the source: testdata/orders, $MIXED_ROWS rows"
q -d "$SOURCE_DSN" -c "DROP TABLE pgbench_branches, pgbench_tellers, pgbench_history"
q -d "$SOURCE_DSN" -v rows="$MIXED_ROWS" -f "$DATA/schema.sql" -f "$DATA/data.sql" >"$OUT/orders-source.log" 2>&1 ||
    { tail -n 20 "$OUT/orders-source.log" >&2; die "loading testdata/orders on the source failed (log: $OUT/orders-source.log)"; }
q -d "$SOURCE_DSN" -c "VACUUM (ANALYZE) orders"
gen_s=$(secs $(($(usec) - t)))

say "creating the empty tables on the destination"
pgbench -i -q -s 1 --partitions="$NPART" --partition-method=hash -I dtp \
    -h 127.0.0.1 -p "$DEST_PORT" -U postgres postgres >"$OUT/pgbench-init-dest.log" 2>&1 ||
    { tail -n 20 "$OUT/pgbench-init-dest.log" >&2; die "pgbench -i on the destination failed (log: $OUT/pgbench-init-dest.log)"; }
q -d "$DEST_DSN" -c "DROP TABLE pgbench_branches, pgbench_tellers, pgbench_history"
q -d "$DEST_DSN" -f "$DATA/schema.sql" >"$OUT/orders-dest.log" 2>&1 ||
    { tail -n 20 "$OUT/orders-dest.log" >&2; die "creating testdata/orders on the destination failed (log: $OUT/orders-dest.log)"; }
q -d "$DEST_DSN" -c "TRUNCATE pgbench_accounts, orders"

PARTS=()
for ((i = 1; i <= NPART; i++)); do PARTS+=("pgbench_accounts_$i"); done
for ((i = 0; i < NPART; i++)); do PARTS+=("$(printf 'orders_p%02d' "$i")"); done
NUNITS=${#PARTS[@]}
# Every table in either database (outside the system schemas), so that a tool copying
# "every table" (pgcopydb) copies exactly these.
tables_sql="SELECT string_agg(c.relname, ' ' ORDER BY c.relname) FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relkind IN ('r', 'p', 'f', 'm')"
want="$(printf '%s\n' "${PARTS[@]}" orders pgbench_accounts | sort | tr '\n' ' ')"
for side in source dest; do
    dsn=$SOURCE_DSN
    [[ $side == dest ]] && dsn=$DEST_DSN
    got=$(qv -d "$dsn" -c "$tables_sql")
    [[ "$got " == "$want" ]] || die "expected exactly the tables '$want' on the $side, found '$got'"
done

# count_sql: "partition=rows" of every non-empty leaf, sorted; the check that
# a run copied exactly the source's rows.
count_sql="SELECT coalesce(string_agg(t || '=' || n, ' ' ORDER BY t), '') FROM (
    SELECT tableoid::regclass::text AS t, count(*) AS n FROM pgbench_accounts GROUP BY 1
    UNION ALL SELECT tableoid::regclass::text, count(*) FROM orders GROUP BY 1) s"
EXPECT=$(qv -d "$SOURCE_DSN" -c "$count_sql")

say "measuring the data: row counts and COPY text sizes"
ROWS_ACC=$(qv -d "$SOURCE_DSN" -c "SELECT count(*) FROM pgbench_accounts")
ROWS_ORD=$(qv -d "$SOURCE_DSN" -c "SELECT count(*) FROM orders")
ROWS=$((ROWS_ACC + ROWS_ORD))
BYTES_ACC=$(psql -X -qAt -d "$SOURCE_DSN" -c "COPY (SELECT * FROM pgbench_accounts) TO STDOUT" | wc -c)
BYTES_ORD=$(psql -X -qAt -d "$SOURCE_DSN" -c "COPY (SELECT * FROM orders) TO STDOUT" | wc -c)
mbof() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
MB=$(mbof $((BYTES_ACC + BYTES_ORD)))
say "$ROWS rows ($ROWS_ACC pgbench_accounts, $ROWS_ORD orders), $MB MB as COPY text (generated in ${gen_s}s)"

# ---------------------------------------------------------------- floor files
# The binary COPY of every source partition, written once (untimed), for (h)
# and (i); removed at exit (about 2 GB at the defaults).
FLOOR_DIR="$OUT/floor-data"
[[ "$FLOOR_DIR" != *"'"* ]] || die "BENCH_OUT must not contain a single quote (psql \\copy file names), got '$OUT'"
BIN_MB=
if active h || active i; then
    mkdir -p "$FLOOR_DIR"
    pg_on_exit "rm -rf '$FLOOR_DIR'"
    say "writing the binary COPY of every source partition to $FLOOR_DIR (untimed, for the floor)"
    for p in "${PARTS[@]}"; do
        psql -X -qAt -v ON_ERROR_STOP=1 -d "$SOURCE_DSN" -c "COPY public.$p TO STDOUT (FORMAT binary)" >"$FLOOR_DIR/$p.bin" ||
            die "binary COPY of $p from the source failed"
    done
    BIN_MB=$(mbof "$(cat "$FLOOR_DIR"/*.bin | wc -c)")
fi

# ---------------------------------------------------------------- methods
# The pipeline from DESIGN.md for one table; appends "table ms" to $UNIT_TIMES
# (ms ~ how long the source lock, i.e. the write block, lasted).
pipeline_unit() {
    local t=$1 s e
    s=${EPOCHREALTIME/./}
    psql -X "$SOURCE_DSN" -1qAtc "LOCK TABLE $t IN EXCLUSIVE MODE; COPY $t TO STDOUT" |
        psql -X "$DEST_DSN" -1qAtc "LOCK TABLE $t IN EXCLUSIVE MODE; TRUNCATE $t; COPY $t FROM STDIN"
    e=${EPOCHREALTIME/./}
    echo "$t $(((e - s) / 1000))" >>"$UNIT_TIMES"
}
export -f pipeline_unit
# two_at_a_time FUNCTION: FUNCTION on every partition, two at once.
two_at_a_time() {
    # shellcheck disable=SC2016 # $0 and $1 expand in the child bash
    printf '%s\n' "${PARTS[@]}" | xargs -P2 -n1 bash -c 'set -euo pipefail; "$0" "$1"' "$1"
}

# floor KIND LOG: the floor's work on every partition, two at once: two psql
# sessions on the destination, each taking every other partition in turn.
#   load: TRUNCATE, then \copy ... FROM the partition's file (FORMAT binary,
#         FREEZE), in one transaction per partition, as lockstep loads it;
#   read: \copy ... TO /dev/null (FORMAT binary), on the client.
floor() {
    local kind=$1 log=$2 w p i pids=() rc=0
    for w in 0 1; do
        i=0
        for p in "${PARTS[@]}"; do
            if ((i++ % 2 == w)); then
                if [[ $kind == load ]]; then
                    printf 'BEGIN;\nTRUNCATE public.%s;\n' "$p"
                    printf "%s public.%s FROM '%s' WITH (FORMAT binary, FREEZE)\n" '\copy' "$p" "$FLOOR_DIR/$p.bin"
                    printf 'COMMIT;\n'
                else
                    printf "%s public.%s TO '/dev/null' WITH (FORMAT binary)\n" '\copy' "$p"
                fi
            fi
        done >"$OUT/floor-$kind-$w.sql"
        psql -X -q -v ON_ERROR_STOP=1 -d "$DEST_DSN" -f "$OUT/floor-$kind-$w.sql" >"$log.$w" 2>&1 &
        pids+=($!)
    done
    for w in 0 1; do wait "${pids[$w]}" || rc=1; done
    cat "$log.0" "$log.1" >"$log"
    rm -f "$log.0" "$log.1"
    return "$rc"
}

method_label() {
    case $1 in
    a) echo "(a) psql|psql, 1 partition at a time" ;;
    b) echo "(b) psql|psql, 2 partitions at a time" ;;
    c) echo "(c) lockstep verify=checksum jobs=1" ;;
    d) echo "(d) lockstep verify=checksum jobs=2" ;;
    e) echo "(e) lockstep verify=none jobs=1" ;;
    f) echo "(f) lockstep verify=none jobs=2" ;;
    g) echo "(g) pgcopydb table-data, 2 table jobs" ;;
    h) echo "(h) floor: dest binary COPY FROM, 2 at once" ;;
    i) echo "(i) floor: dest binary COPY TO, 2 at once" ;;
    j) echo "(j) lockstep verify=checksum jobs=3" ;;
    k) echo "(k) lockstep verify=checksum jobs=4" ;;
    *) echo "$1" ;;
    esac
}

# timed CMD...: CMD under GNU time (CPU user/system, peak RSS to $OUT/$m-run$run.time)
# when it is there.
timed() {
    if [[ -n "$TIME_BIN" ]]; then
        "$TIME_BIN" -f '%e %U %S %M' -o "$TIMEFILE" "$@"
    else
        "$@"
    fi
}

# run_method M RUN: one timed run; prints elapsed microseconds on stdout.
run_method() {
    local m=$1 run=$2 log="$OUT/$1-run$2.log" s e rc=0
    export UNIT_TIMES="$OUT/$m-run$run.units"
    TIMEFILE="$OUT/$m-run$run.time"
    local lsargs=(--table public.pgbench_accounts --table public.orders)
    # Every run copies every unit: the run ledger would otherwise skip the
    # units an earlier run verified (its cost stays in the figures).
    ((HAVE_REDO)) && lsargs+=(--redo)
    case $m in
    c | d | j | k) lsargs+=(--verify checksum) ;;
    e | f) lsargs+=(--verify none) ;;
    esac
    if ((HAVE_JOBS)); then
        case $m in c | e) lsargs+=(--jobs 1) ;; d | f) lsargs+=(--jobs 2) ;; j) lsargs+=(--jobs 3) ;; k) lsargs+=(--jobs 4) ;; esac
    fi
    case $m in a | b) : >"$UNIT_TIMES" ;; esac
    s=$(usec)
    case $m in
    a) for t in "${PARTS[@]}"; do pipeline_unit "$t"; done >"$log" 2>&1 || rc=$? ;;
    b) two_at_a_time pipeline_unit >"$log" 2>&1 || rc=$? ;;
    c | d | e | f | j | k)
        timed "$BIN" copy --source "$SOURCE_DSN" --dest "$DEST_DSN" "${lsargs[@]}" >"$log" 2>&1 || rc=$?
        ;;
    g)
        timed pgcopydb copy table-data --source "$SOURCE_DSN" --target "$DEST_DSN" --table-jobs 2 \
            --dir "$OUT/g-run$run.pgcopydb" "${PGCOPYDB_ARGS[@]}" >"$log" 2>&1 || rc=$?
        ;;
    h) floor load "$log" || rc=$? ;;
    i) floor read "$log" || rc=$? ;;
    esac
    e=$(usec)
    if ((rc != 0)); then
        tail -n 20 "$log" >&2
        die "method $(method_label "$m") failed in run $run (exit $rc); log: $log"
    fi
    case $m in
    c | d | e | f | j | k)
        # One line per unit: "unit writes-blocked-ms copy-ms verify-ms".
        parse_unit_lines <"$log" >"$UNIT_TIMES"
        local n
        n=$(wc -l <"$UNIT_TIMES")
        ((n == NUNITS)) ||
            die "method $(method_label "$m") run $run: found $n unit lines with writes-blocked/copy/verify times in $log, expected $NUNITS"
        ;;
    esac
    echo $((e - s))
}

DEST_FULL=0 # 1 while the destination holds every row, loaded with FREEZE
prepare_run() {
    local m=$1
    if [[ $m == i ]]; then
        if ((!DEST_FULL)); then
            q -d "$DEST_DSN" -c "TRUNCATE pgbench_accounts, orders"
            floor load "$OUT/i-fill.log" ||
                die "filling the destination for (i) failed; log: $OUT/i-fill.log"
            DEST_FULL=1
        fi
        q -d "$DEST_DSN" -c "CHECKPOINT"
    else
        q -d "$DEST_DSN" -c "TRUNCATE pgbench_accounts, orders" -c "CHECKPOINT"
        DEST_FULL=0
    fi
    q -d "$SOURCE_DSN" -c "CHECKPOINT"
}

check_run() {
    local m=$1 run=$2 got
    got=$(qv -d "$DEST_DSN" -c "$count_sql")
    if [[ "$got" != "$EXPECT" ]]; then
        die "method $(method_label "$m") run $run left other row counts on the destination than the source's: $(
            awk -v want="$EXPECT" -v got="$got" 'BEGIN {
                n = split(want, w, " "); for (i = 1; i <= n; i++) { split(w[i], kv, "="); s[kv[1]] = kv[2] }
                n = split(got, g, " "); for (i = 1; i <= n; i++) { split(g[i], kv, "="); d[kv[1]] = kv[2] }
                for (t in s) if (d[t] != s[t]) printf "%s %d (source %d); ", t, d[t], s[t]
                for (t in d) if (!(t in s)) printf "%s %d (source 0); ", t, d[t] }'
        )log: $OUT/$m-run$run.log"
    fi
    [[ $m == h ]] && DEST_FULL=1
    return 0
}

if [[ "${WARMUP:-1}" == 1 ]]; then
    # One untimed copy first, so that no timed run pays for first-time costs
    # (new WAL segment files created and fsynced, cold caches on either side).
    prepare_run warm-up
    say "warm-up (untimed): psql|psql pipeline, two partitions at a time"
    export UNIT_TIMES="$OUT/warmup.units"
    two_at_a_time pipeline_unit >"$OUT/warmup.log" 2>&1 || die "warm-up copy failed; log: $OUT/warmup.log"
    check_run warm-up 0
fi

declare -A TIMES=() LOADS=()
ALL_LOADS=()
echo "method,run,seconds,loadavg_1min_before" >"$OUT/runs.csv"
for ((run = 1; run <= RUNS; run++)); do
    for m in "${ACTIVE[@]}"; do
        prepare_run "$m"
        load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?")
        say "run $run/$RUNS: $(method_label "$m") (load average $load)"
        us=$(run_method "$m" "$run")
        check_run "$m" "$run"
        TIMES[$m]+="$us "
        LOADS[$m]+="$load "
        ALL_LOADS+=("$load")
        echo "$m,$run,$(awk -v u="$us" 'BEGIN { printf "%.3f", u / 1e6 }'),$load" >>"$OUT/runs.csv"
        say "    $(secs "$us") s"
    done
done

# ---------------------------------------------------------------- report
REPORT="$OUT/results.txt"
write_report | tee "$REPORT"
echo
echo "logs (lockstep per-unit lines with writes-blocked/copy/verify times): $OUT/{c,d,e,f,j,k}-run*.log"
echo "results: $REPORT (per-run times: $OUT/runs.csv)"

MANY=${MANY-2048 8192}
if [[ -n "$MANY" ]]; then
    pg_stop source
    pg_stop dest
    say "one table in thousands of partitions: scripts/bench-many.sh (MANY=\"$MANY\")"
    MANY="$MANY" LOCKSTEP_BIN="$BIN" BENCH_OUT="$OUT/many" bash "$ROOT/scripts/bench-many.sh"
fi
