#!/usr/bin/env bash
#
# bench-diff.sh — what `lockstep verify --diff` costs to pinpoint a few rows
# in a big table: one unpartitioned pgbench_accounts of SCALE*100k rows
# (default SCALE=100: 10M rows) on two throwaway servers, copied with
# lockstep, then one row changed, one deleted and one inserted on the
# destination. Prints the full verify time, the diff's time, segments
# compared and rows fetched over the network, against the table's rows.
#
#     scripts/bench-diff.sh            SCALE=10 for a quick run
#
# LOCKSTEP_BIN=path runs that binary instead of building this checkout (to
# measure another version on the same data and machine). The machine's load
# average is printed before the verify: other work on it slows the servers.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/pgserver.sh
. "$ROOT/scripts/lib/pgserver.sh"
SCALE=${SCALE:-100}
OUT=${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/lockstep-bench-diff.XXXXXX")}
mkdir -p "$OUT"
say() { printf '==> %s\n' "$*"; }

BIN=${LOCKSTEP_BIN:-}
if [[ -z "$BIN" ]]; then
	say "building lockstep"
	BIN="$OUT/lockstep"
	(cd "$ROOT" && go build -o "$BIN" .)
else
	say "using $BIN"
fi
say "starting two servers"
pg_start source 0 max_wal_size=4GB checkpoint_timeout=30min >/dev/null
pg_start dest 0 max_wal_size=4GB checkpoint_timeout=30min >/dev/null
psqlq() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

say "loading pgbench_accounts, scale $SCALE, unpartitioned, on the source"
pgbench -i -q -s "$SCALE" -I dtgvp "$SOURCE_DSN" >/dev/null 2>&1
pgbench -i -q -s 1 -I dtp "$DEST_DSN" >/dev/null 2>&1
rows=$(psqlq -At "$SOURCE_DSN" -c "SELECT count(*) FROM pgbench_accounts")
say "$rows rows; copying them with lockstep"
"$BIN" copy --quiet --source "$SOURCE_DSN" --dest "$DEST_DSN" --table pgbench_accounts | tail -1

say "changing 3 rows on the destination (one updated, one deleted, one inserted)"
psqlq "$DEST_DSN" -c "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = $((rows / 3));
	DELETE FROM pgbench_accounts WHERE aid = $((rows / 2)); INSERT INTO pgbench_accounts VALUES ($((rows + 7)), 1, 0, '')" \
	-c "VACUUM ANALYZE pgbench_accounts"

say "verify --diff (load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
start=$(date +%s.%N)
set +e
"$BIN" verify --source "$SOURCE_DSN" --dest "$DEST_DSN" --table pgbench_accounts --diff \
	--report "$OUT/report.json" >"$OUT/verify.log" 2>&1
code=$?
set -e
end=$(date +%s.%N)
cat "$OUT/verify.log" | sed -n '1,6p'
python3 - "$OUT/report.json" "$rows" "$code" "$start" "$end" <<'PY' 2>/dev/null || grep -E "diff on" "$OUT/verify.log"
import json, sys
r = json.load(open(sys.argv[1]))
u = r["run"]["units"][0]
d = u["diff"]
rows = int(sys.argv[2])
print(f"exit {sys.argv[3]}; table {rows} rows per side")
print(f"whole verify: {float(sys.argv[5]) - float(sys.argv[4]):.1f}s (count+checksum of both sides {u['verify_ns']/1e9:.1f}s, diff {d['elapsed_ns']/1e9:.1f}s)")
print(f"diff: {d['missing_count']} missing, {d['extra_count']} extra, {d['changed_count']} changed; "
      f"{d['segments_compared']} segments, depth {d['depth']}, {d['rows_fetched']} rows fetched "
      f"= {100 * d['rows_fetched'] / (2 * rows):.4f}% of the rows of both sides; "
      f"segments hashed by {d['hash_function']}" + (f" ({d['note']})" if d.get('note') else ""))
PY
say "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
say "logs: $OUT"
