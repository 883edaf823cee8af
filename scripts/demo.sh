#!/usr/bin/env bash
#
# demo.sh — lockstep end to end on two throwaway local PostgreSQL servers.
#
# Builds lockstep, starts a source and a destination server (loopback only,
# temporary directories, removed at exit), loads testdata/orders on the source
# (a 16-way hash-partitioned table, ~1M rows of mixed types) and its empty
# schema on the destination, runs
#
#     lockstep copy --source SRC --dest DST --table public.orders
#
# and checks the result independently with psql (row counts and an md5 over
# every row on both sides). Runs from any directory, as root or as a normal
# user. Needs: go, psql, and the PostgreSQL server binaries (Debian package
# "postgresql"); nothing is installed.
#
# Environment:
#     DEMO_ROWS=N          rows to generate (default 1000000)
#     LOCKSTEP_BIN=PATH    use this lockstep binary instead of building one
#     LOCKSTEP_ARGS="..."  extra arguments for lockstep copy (e.g. "--jobs 2")
#     PGSERVER_KEEP=1      keep the servers' data directories (and logs) at exit
#     PG_BINDIR=DIR        where initdb/pg_ctl/postgres live, if not found

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/pgserver.sh
. "$ROOT/scripts/lib/pgserver.sh"

ROWS=${DEMO_ROWS:-1000000}
DATA="$ROOT/testdata/orders"

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }
now() { echo "${EPOCHREALTIME:-$(date +%s.%N)}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

[[ "$ROWS" =~ ^[0-9]+$ && "$ROWS" -gt 0 ]] || die "DEMO_ROWS must be a positive integer, got '$ROWS'"
command -v psql >/dev/null 2>&1 ||
    die "psql not found on PATH; install the Debian package 'postgresql-client'"
if [[ -z "${LOCKSTEP_BIN:-}" ]] && ! command -v go >/dev/null 2>&1; then
    die "go not found on PATH (needed to build lockstep); install Go from https://go.dev/dl/ or set LOCKSTEP_BIN"
fi
[[ -f "$DATA/schema.sql" && -f "$DATA/data.sql" ]] || die "missing $DATA/schema.sql or data.sql"

T0=$(now)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lockstep-demo.XXXXXX")
pg_on_exit "rm -rf '$WORK'"

# Every psql call: no ~/.psqlrc, stop on the first error, UTC so that row text
# (timestamptz) is rendered the same way on both servers.
export PGTZ=UTC
q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

if [[ -n "${LOCKSTEP_BIN:-}" ]]; then
    BIN=$LOCKSTEP_BIN
    [[ -x "$BIN" ]] || die "LOCKSTEP_BIN=$BIN is not an executable file"
    say "using lockstep binary $BIN"
else
    BIN="$WORK/lockstep"
    say "building lockstep (go build)"
    t=$(now)
    (cd "$ROOT" && go build -o "$BIN" .) || die "go build failed in $ROOT"
    echo "built $BIN in $(since "$t")"
fi

say "starting two throwaway PostgreSQL servers (source, destination)"
t=$(now)
pg_start source
pg_start dest
echo "source:      $SOURCE_DSN"
echo "destination: $DEST_DSN"
echo "started in $(since "$t")"

say "loading testdata/orders on the source: $ROWS rows in 16 hash partitions; empty schema on the destination"
t=$(now)
q -d "$DEST_DSN" -f "$DATA/schema.sql" &
dest_pid=$!
q -d "$SOURCE_DSN" -v rows="$ROWS" -f "$DATA/schema.sql" -f "$DATA/data.sql" ||
    die "loading testdata/orders on the source failed"
wait "$dest_pid" || die "creating the schema on the destination failed"
echo "loaded in $(since "$t")"

say "lockstep copy --table public.orders"
# shellcheck disable=SC2086 # LOCKSTEP_ARGS is split on purpose
echo "+ lockstep copy --source \"\$SOURCE_DSN\" --dest \"\$DEST_DSN\" --table public.orders${LOCKSTEP_ARGS:+ $LOCKSTEP_ARGS}"
t=$(now)
rc=0
# shellcheck disable=SC2086
"$BIN" copy --source "$SOURCE_DSN" --dest "$DEST_DSN" --table public.orders ${LOCKSTEP_ARGS:-} || rc=$?
if ((rc != 0)); then
    die "lockstep copy failed with exit code $rc (rerun with PGSERVER_KEEP=1 to keep the server logs)"
fi
echo "lockstep finished in $(since "$t")"

say "independent check with psql"
t=$(now)
# Row count and an md5 over every row's text, in id order, on each side (both
# at once).
check_sql="SELECT count(*) || ' ' || md5(coalesce(string_agg(md5(o::text), '' ORDER BY id), '')) FROM orders o"
psql -X -At -v ON_ERROR_STOP=1 -d "$SOURCE_DSN" -c "$check_sql" >"$WORK/src.check" &
src_pid=$!
psql -X -At -v ON_ERROR_STOP=1 -d "$DEST_DSN" -c "$check_sql" >"$WORK/dst.check" ||
    die "checking the destination failed"
wait "$src_pid" || die "checking the source failed"
read -r src_rows src_md5 <"$WORK/src.check"
read -r dst_rows dst_md5 <"$WORK/dst.check"
if [[ "$src_rows" == "$dst_rows" && "$src_md5" == "$dst_md5" ]]; then
    echo "proof: source orders = $src_rows rows, destination orders = $dst_rows rows; md5 of all rows identical (${src_md5:0:12}…) [$(since "$t")]"
else
    echo "MISMATCH: source orders = $src_rows rows (md5 $src_md5), destination orders = $dst_rows rows (md5 $dst_md5)" >&2
    exit 1
fi

say "done in $(since "$T0"); stopping the servers"
