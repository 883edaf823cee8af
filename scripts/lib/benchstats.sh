# shellcheck shell=bash
#
# benchstats.sh — parsing and the results report of scripts/bench.sh; sourced
# by it, not run on its own. Reads bench.sh's globals (OUT, ACTIVE, TIMES,
# LOADS, ...) and the per-run files it leaves in $OUT:
#     M-runN.units  lockstep: "unit writes-blocked-ms copy-ms verify-ms";
#                   psql|psql: "table ms" (the whole per-table pipeline)
#     M-runN.time   GNU time: "elapsed user-s system-s max-RSS-KB"

# parse_unit_lines: lockstep's output on stdin; prints for each unit that
# committed "unit writes-blocked-ms copy-ms verify-ms". A unit line reads
#     ok "public"."t" rows=... writes-blocked=194ms (src-held=193ms) copy=160ms verify=25ms ...
# with durations as lockstep prints them (0ms, 850ms, 12.3s, 1m4.2s; µs, us
# and ns are understood too). A line whose durations do not parse is an error.
parse_unit_lines() {
    awk '
    function dur_ms(s,   t, n) {
        if (s == "") return -1
        t = 0
        while (s != "") {
            if (!match(s, /^[0-9]+(\.[0-9]+)?/)) return -1
            n = substr(s, 1, RLENGTH) + 0
            s = substr(s, RLENGTH + 1)
            if (substr(s, 1, 2) == "ms") { t += n; s = substr(s, 3) }
            else if (substr(s, 1, 2) == "us") { t += n / 1000; s = substr(s, 3) }
            else if (substr(s, 1, 3) == "\302\265s" || substr(s, 1, 3) == "\316\274s") { t += n / 1000; s = substr(s, 4) }
            else if (substr(s, 1, 2) == "ns") { t += n / 1e6; s = substr(s, 3) }
            else if (substr(s, 1, 1) == "h") { t += n * 3600000; s = substr(s, 2) }
            else if (substr(s, 1, 1) == "m") { t += n * 60000; s = substr(s, 2) }
            else if (substr(s, 1, 1) == "s") { t += n * 1000; s = substr(s, 2) }
            else return -1
        }
        return t
    }
    function field(name,   i) {
        for (i = 1; i <= NF; i++)
            if (index($i, name "=") == 1) return substr($i, length(name) + 2)
        return ""
    }
    {
        for (i = 1; i < NF - 1; i++)
            if ($i == "ok" && $(i + 2) ~ /^rows=[0-9]+$/) break
        if (i >= NF - 1) next
        wb = dur_ms(field("writes-blocked")); cp = dur_ms(field("copy")); vf = dur_ms(field("verify"))
        if (wb < 0 || cp < 0 || vf < 0) {
            printf "bench: cannot read the durations of this unit line: %s\n", $0 > "/dev/stderr"
            exit 1
        }
        printf "%s %.3f %.3f %.3f\n", $(i + 1), wb, cp, vf
    }'
}

median_of() { # values on stdin
    sort -g | awk '{ v[NR] = $1 } END { if (!NR) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# med_s M: median seconds of method M, or empty.
med_s() {
    [[ -n "${TIMES[$1]:-}" ]] || return 0
    # shellcheck disable=SC2086
    printf '%s\n' ${TIMES[$1]} | median_of | awk '{ printf "%.6f", $1 / 1e6 }'
}

# cpu M: "cpu user sys rss" — medians over runs of user+system, user and
# system seconds, and the largest peak RSS in MB; empty without GNU time.
cpu() {
    local f
    for f in "$OUT/$1"-run*.time; do
        [[ -f "$f" ]] && tail -n 1 "$f"
    done | awk 'NF == 4 && $2 ~ /^[0-9.]+$/ { print $2 + $3, $2, $3, $4 }' >"$OUT/.cpu.$1"
    [[ -s "$OUT/.cpu.$1" ]] || { rm -f "$OUT/.cpu.$1"; return 0; }
    local k
    for k in 1 2 3; do
        printf '%.2f ' "$(cut -d' ' -f$k "$OUT/.cpu.$1" | median_of)"
    done
    awk '$4 > m { m = $4 } END { printf "%.0f", m / 1024 }' "$OUT/.cpu.$1"
    rm -f "$OUT/.cpu.$1"
}

# blocked M: "pgbench-mean orders-mean max verify" in ms over every unit of
# every run of M (verify: summed over the units of a run, mean over runs;
# "-" for the pipeline, which has no separate verify step).
blocked() {
    local f files=()
    for f in "$OUT/$1"-run*.units; do [[ -f "$f" ]] && files+=("$f"); done
    ((${#files[@]})) || return 0
    awk '
        FNR == 1 { runs++ }
        { cls = ($1 ~ /pgbench_accounts/) ? "p" : ($1 ~ /orders/) ? "o" : "x"; n[cls]++; s[cls] += $2
          if ($2 > mx) mx = $2; if (NF >= 4) { v += $4; hasv = 1 } }
        END { printf "%s %s %.0f %s", (n["p"] ? sprintf("%.1f", s["p"] / n["p"]) : "n/a"),
                  (n["o"] ? sprintf("%.1f", s["o"] / n["o"]) : "n/a"), mx, (hasv ? sprintf("%.0f", v / runs) : "-") }' "${files[@]}"
}

# div A B [FMT]: A / B, or "n/a" when either is missing.
div() {
    awk -v a="${1:-}" -v b="${2:-}" -v f="${3:-%.2f}" 'BEGIN { if (a == "" || b == "" || a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"; else printf f, a / b }'
}
# goal VALUE OP LIMIT: "goal OP LIMIT: met" / "missed" / "not measured".
goal() {
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        if (v == "n/a" || v == "") { printf "goal %s %s: not measured", op, l; exit }
        ok = (op == "<=") ? (v + 0 <= l + 0) : (v + 0 < l + 0)
        printf "goal %s %s: %s", op, l, ok ? "met" : "missed" }'
}

write_report() {
    local pgv cpu_model m med a_med
    pgv=$(qv -d "$SOURCE_DSN" -c "SHOW server_version")
    cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
    echo "lockstep bench — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "PostgreSQL $pgv, two servers on loopback; $(nproc) CPUs${cpu_model:+ ($cpu_model)}"
    echo "server settings: fsync=${PGSERVER_FSYNC:-on}, max_wal_size=4GB, checkpoint_timeout=30min, everything else default"
    echo "data: pgbench_accounts (scale $SCALE, $NPART hash partitions) $ROWS_ACC rows, $(mbof "$BYTES_ACC") MB;"
    echo "      orders (mixed types incl. an enum, jsonb, text[], inet; $NPART hash partitions) $ROWS_ORD rows, $(mbof "$BYTES_ORD") MB;"
    echo "      $NUNITS partitions, $ROWS rows, $MB MB as COPY text${BIN_MB:+, $BIN_MB MB as binary COPY}"
    echo "runs: $RUNS per method, interleaved, after $([[ "${WARMUP:-1}" == 1 ]] && echo "one untimed warm-up copy" || echo "no warm-up (WARMUP=0)");"
    echo "      destination truncated (except before (i)) and both servers checkpointed before each run"
    echo
    a_med=$(med_s a)
    printf '%-44s %8s %6s %7s  %-22s %s\n' method "median s" "x (a)" "MB/s" "all runs (s)" "1-min load before each run"
    for m in "${ACTIVE[@]}"; do
        med=$(med_s "$m")
        local all
        all=$(for us in ${TIMES[$m]}; do awk -v u="$us" 'BEGIN { printf "%.2f ", u / 1e6 }'; done)
        printf '%-44s %8.2f %6s %7.1f  %-22s %s\n' "$(method_label "$m")" "$med" "$(div "$med" "$a_med")" \
            "$(div "$MB" "$med" %.1f)" "$all" "${LOADS[$m]}"
    done

    local lm=() have_time=
    for m in "${ACTIVE[@]}"; do [[ $m == [cdefgjk] ]] && lm+=("$m"); done
    [[ -n "$TIME_BIN" ]] && have_time=1
    if ((${#lm[@]})); then
        echo
        if [[ -n "$have_time" ]]; then
            echo "the lockstep process (pgcopydb: with the processes it forks): CPU seconds, medians over runs; peak RSS, largest"
            printf '%-44s %8s %8s %8s %12s\n' method "CPU s" "user s" "sys s" "peak RSS MB"
            for m in "${lm[@]}"; do
                local c u s r
                read -r c u s r <<<"$(cpu "$m") "
                printf '%-44s %8s %8s %8s %12s\n' "$(method_label "$m")" "${c:-n/a}" "${u:-n/a}" "${s:-n/a}" "${r:-n/a}"
            done
        else
            echo "CPU and peak RSS: not measured (GNU time, /usr/bin/time, is not installed)"
        fi
    fi

    local bm=()
    for m in "${ACTIVE[@]}"; do [[ $m == [abcdefjk] ]] && bm+=("$m"); done
    if ((${#bm[@]})); then
        echo
        echo "writes blocked per unit, ms, mean over every run's pgbench_accounts / orders partitions and max"
        echo "(lockstep: its writes-blocked figure; psql|psql: the whole per-partition pipeline, an upper bound);"
        echo "lockstep's verify time summed over the units of a run, mean over runs"
        printf '%-44s %13s %12s %8s %10s\n' method "mean pgbench" "mean orders" "max" "verify ms"
        for m in "${bm[@]}"; do
            local p o x v
            read -r p o x v <<<"$(blocked "$m") "
            printf '%-44s %13s %12s %8s %10s\n' "$(method_label "$m")" "${p:-n/a}" "${o:-n/a}" "${x:-n/a}" "${v:-n/a}"
        done
    fi

    # The ratios the project's performance goals are stated in.
    local d_med g_med h_med i_med cd cf cc ce pc pe oc oe r rss_max=
    d_med=$(med_s d) g_med=$(med_s g) h_med=$(med_s h) i_med=$(med_s i)
    read -r cd _ _ _ <<<"$(cpu d) "
    read -r cf _ _ _ <<<"$(cpu f) "
    read -r cc _ _ _ <<<"$(cpu c) "
    read -r ce _ _ _ <<<"$(cpu e) "
    read -r pc oc _ _ <<<"$(blocked c) "
    read -r pe oe _ _ <<<"$(blocked e) "
    for m in c d e f j k; do
        read -r _ _ _ r <<<"$(cpu "$m") "
        [[ -n "$r" ]] && { [[ -z "$rss_max" ]] || ((r > rss_max)); } && rss_max=$r
    done
    echo
    echo "ratios"
    local ratio
    ratio=$(div "$d_med" "$g_med")
    printf '  %-62s %6s   %s\n' "(d) verified lockstep, 2 jobs / (g) pgcopydb, 2 jobs" "$ratio" "$(goal "$ratio" "<=" 0.90)"
    ratio=$(div "$d_med" "$a_med")
    printf '  %-62s %6s   %s\n' "(d) verified lockstep, 2 jobs / (a) psql|psql" "$ratio" "$(goal "$ratio" "<=" 0.70)"
    ratio=$(div "$cd" "$cf")
    printf '  %-62s %6s   %s\n' "lockstep CPU s, verified / unverified, 2 jobs (d / f)" "$ratio" "$(goal "$ratio" "<=" 1.5)"
    ratio=$(div "$cc" "$ce")
    printf '  %-62s %6s\n' "lockstep CPU s, verified / unverified, 1 job (c / e)" "$ratio"
    ratio=$(div "$pc" "$pe")
    printf '  %-62s %6s   %s\n' "writes-blocked, verified / unverified, 1 job (c / e), pgbench" "$ratio" \
        "$(goal "$ratio" "<=" 1.15)$([[ $ratio != n/a ]] && awk -v r="$ratio" 'BEGIN { printf "; verification adds %+.0f%%", (r - 1) * 100 }')"
    ratio=$(div "$oc" "$oe")
    printf '  %-62s %6s   %s\n' "writes-blocked, verified / unverified, 1 job (c / e), orders" "$ratio" \
        "$([[ $ratio != n/a ]] && awk -v r="$ratio" 'BEGIN { printf "verification adds %+.0f%%", (r - 1) * 100 }')"
    printf '  %-62s %6s   %s\n' "lockstep peak RSS, MB (largest over c-f, j, k)" "${rss_max:-n/a}" "$(goal "${rss_max:-n/a}" "<" 64)"
    local floor=n/a
    [[ -n "$h_med" && -n "$i_med" ]] && floor=$(awk -v h="$h_med" -v i="$i_med" 'BEGIN { printf "%.6f", h + i }')
    printf '  %-62s %6s\n' "floor (h) + (i), seconds" "$([[ $floor != n/a ]] && printf '%.2f' "$floor" || echo n/a)"
    printf '  %-62s %6s\n' "(d) verified lockstep, 2 jobs / floor ((h) + (i))" "$(div "$d_med" "$floor")"

    local n
    for n in "${NOTES[@]}"; do
        echo
        echo "note: $n"
    done
    echo
    local lmin lmax
    read -r lmin lmax <<<"$(printf '%s\n' "${ALL_LOADS[@]}" | sort -g | sed -n '1p;$p' | tr '\n' ' ')"
    echo "1-min load average before the timed runs: $lmin .. $lmax on $(nproc) CPUs (well above the"
    echo "bench's own ~2 means something else was running: rerun; per-run times are in runs.csv)"
}
