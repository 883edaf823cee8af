#!/usr/bin/env bash
#
# bench-ledger.sh — what the run ledger costs per unit: many small tables
# copied with the ledger (the default) and with --ledger none, alternately,
# on the same two servers.
#
# N small tables (default 500, ROWS rows each, default 100) on the source,
# empty on the destination. Each round runs
#     lockstep copy --jobs JOBS --ledger none
#     lockstep copy --jobs JOBS --redo          (the ledger: every unit copied,
#                                                recorded, claimed, released)
# (the order alternates between rounds), RUNS rounds (default 5), and prints
# the median wall time of each, the median of the rounds' differences per
# unit (with the smallest and largest: on a shared machine only the pairs
# say much), and the mean writes-blocked time per unit of each, from the
# --report files (the ledger's success row rides in the COMMIT, inside the
# lock; its claims do not). One warm-up run creates the ledger.
#
# FORMAT=text gives the source's tables a varchar column where the
# destination's is text, so that the units are copied (and read back) in
# text format instead of binary.
#
# Environment: N=500 ROWS=100 RUNS=5 JOBS=2 FORMAT=binary BENCH_OUT=DIR
# LOCKSTEP_BIN=PATH PGSERVER_FSYNC=on (default).

set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/pgserver.sh
. "$ROOT/scripts/lib/pgserver.sh"

N=${N:-500}
ROWS=${ROWS:-100}
RUNS=${RUNS:-5}
JOBS=${JOBS:-2}

die() { printf 'bench-ledger: error: %s\n' "$*" >&2; exit 1; }
say() { printf '==> %s\n' "$*" >&2; }
FORMAT=${FORMAT:-binary}
case $FORMAT in
binary) SRCTYPE=text ;;
text) SRCTYPE='varchar(40)' ;;
*) die "FORMAT must be binary or text" ;;
esac
usec() { echo "${EPOCHREALTIME/./}"; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

command -v psql >/dev/null 2>&1 || die "psql not found on PATH; install the Debian package 'postgresql-client'"

OUT=${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/lockstep-bench-ledger.XXXXXX")}
mkdir -p "$OUT"
chmod 755 "$OUT"
if [[ -n "${LOCKSTEP_BIN:-}" ]]; then
    BIN=$LOCKSTEP_BIN
else
    BIN="$OUT/lockstep"
    say "building lockstep"
    (cd "$ROOT" && go build -o "$BIN" .) || die "go build failed in $ROOT"
fi

say "starting source and destination servers (fsync=${PGSERVER_FSYNC:-on})"
pg_start ledger_source 0
pg_start ledger_dest 0
SRC=$LEDGER_SOURCE_DSN
DST=$LEDGER_DEST_DSN

say "$N tables of $ROWS rows on the source, empty on the destination ($FORMAT format)"
schema() { for ((i = 0; i < N; i++)); do printf 'CREATE TABLE s%04d (id int PRIMARY KEY, v %s);\n' "$i" "$1"; done; }
rows=$(for ((i = 0; i < N; i++)); do printf "INSERT INTO s%04d SELECT g, md5(g::text) FROM generate_series(1, %d) g;\n" "$i" "$ROWS"; done)
psql -X -q -v ON_ERROR_STOP=1 "$SRC" <<<"$(schema "$SRCTYPE")$rows" || die "loading the source failed"
psql -X -q -v ON_ERROR_STOP=1 "$DST" <<<"$(schema text)" || die "creating the destination tables failed"

copy() { # copy LABEL ARGS...: one run, its wall time in µs on stdout
    local label=$1 s
    shift
    s=$(usec)
    "$BIN" copy --source "$SRC" --dest "$DST" --tables-matching '^public\.s[0-9]+$' --jobs "$JOBS" \
        --progress-interval 0 --quiet --report "$OUT/$label.json" "$@" >"$OUT/$label.log" 2>&1 ||
        { tail -n 20 "$OUT/$label.log" >&2; die "lockstep copy ($label) failed"; }
    echo $(($(usec) - s))
}
# blocked LABEL: the mean writes-blocked time per unit of a run, in ms, from
# its --report (the units' own writes_blocked_ns, not the groups' members')
blocked() {
    grep -o '^        "writes_blocked_ns": [0-9]*' "$OUT/$1.json" |
        awk '{ s += $2; n++ } END { if (n) printf "%.3f", s / n / 1e6 }'
}

say "warm-up (creates the ledger)"
copy warmup >/dev/null
declare -a with=() without=() with_blocked=() without_blocked=()
for ((r = 1; r <= RUNS; r++)); do
    say "round $r of $RUNS"
    if ((r % 2)); then
        without+=("$(copy none-$r --ledger none)")
        with+=("$(copy ledger-$r --redo)")
    else
        with+=("$(copy ledger-$r --redo)")
        without+=("$(copy none-$r --ledger none)")
    fi
    with_blocked+=("$(blocked ledger-$r)")
    without_blocked+=("$(blocked none-$r)")
done
w=$(printf '%s\n' "${with[@]}" | median)
wo=$(printf '%s\n' "${without[@]}" | median)
diffs=$(for ((r = 0; r < RUNS; r++)); do echo $((with[r] - without[r])); done | sort -n)
dmed=$(median <<<"$diffs")
REPORT="$OUT/results.txt"
{
    echo "lockstep bench-ledger — $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs; fsync=${PGSERVER_FSYNC:-on}"
    echo "$N tables of $ROWS rows, $FORMAT format, --jobs $JOBS, medians of $RUNS runs (plan included)"
    awk -v w="$w" -v wo="$wo" -v n="$N" 'BEGIN {
        printf "--ledger none     %8.2f s\n", wo / 1e6
        printf "ledger (default)  %8.2f s\n", w / 1e6
        printf "difference of medians  %.2f ms per unit (%+.1f%%)\n", (w - wo) / n / 1000, (w - wo) / wo * 100 }'
    awk -v d="$dmed" -v lo="$(head -n 1 <<<"$diffs")" -v hi="$(tail -n 1 <<<"$diffs")" -v n="$N" 'BEGIN {
        printf "paired difference      %.2f ms per unit (median of the rounds; %.2f to %.2f)\n", d / n / 1000, lo / n / 1000, hi / n / 1000 }'
    printf 'writes blocked per unit (mean over the units, median of the runs): --ledger none %s ms, ledger %s ms\n' \
        "$(printf '%s\n' "${without_blocked[@]}" | median)" "$(printf '%s\n' "${with_blocked[@]}" | median)"
} | tee "$REPORT"
