# shellcheck shell=bash
#
# pgserver.sh — throwaway local PostgreSQL servers for demos and benchmarks.
#
# Source it from a bash script (it is not meant to be executed):
#
#     . "$ROOT/scripts/lib/pgserver.sh"
#     pg_start source            # free port picked automatically
#     pg_start dest 0 max_wal_size=4GB checkpoint_timeout=30min
#     psql "$SOURCE_DSN" -c 'select 1'
#
# pg_start NAME [PORT [SETTING=VALUE ...]]
#     initdb into a fresh mktemp directory, listen on 127.0.0.1:PORT only
#     (PORT empty, 0 or "auto": a free port is picked), unix socket in the data
#     directory, trust authentication (loopback only, throwaway), fsync ON
#     unless PGSERVER_FSYNC=off, server log in DATADIR/server.log. Extra
#     SETTING=VALUE arguments are appended to postgresql.conf.
#     Exports, with VAR = NAME upper-cased (non-alphanumerics -> _):
#         VAR_DSN   postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable
#         VAR_PORT  VAR_DIR (data directory)  VAR_LOG (server log)
#     and PGSERVER_LAST_DSN. On the first call it installs an EXIT trap that
#     runs pg_stop_all (INT/TERM exit through it too).
# pg_dsn NAME      print the DSN of a started server
# pg_stop NAME     stop one server and remove its directory
# pg_stop_all      stop every server started here and remove the directories
# pg_on_exit CMD   run CMD (a string, eval'ed) in the EXIT trap, before the
#                  servers are stopped
#
# Environment:
#     PG_BINDIR           directory holding initdb/pg_ctl/postgres (optional)
#     PGSERVER_FSYNC      on (default) | off
#     PGSERVER_TMPDIR     parent of the data directories (default $TMPDIR or /tmp)
#     PGSERVER_KEEP=1     do not remove the data directories at exit (debugging)
#     PGSERVER_QUIET=1    no progress messages on stderr
#
# PostgreSQL refuses to run as root: when EUID is 0, initdb, pg_ctl and the
# server run as the "postgres" user (or "nobody" if there is none) through
# runuser or setpriv, and the data directory is chowned to that user.

if [[ -n "${_PGSERVER_SH_LOADED:-}" ]]; then
    return 0
fi
_PGSERVER_SH_LOADED=1

declare -ga _PGSERVER_NAMES=()
declare -gA _PGSERVER_DIRS=()
declare -gA _PGSERVER_PORTS=()
declare -ga _PGSERVER_EXIT_HOOKS=()
_PGSERVER_TRAP_SET=
_PGSERVER_BINDIR=
_PGSERVER_RUNAS=

_pg_msg() {
    [[ "${PGSERVER_QUIET:-}" == 1 ]] || printf 'pgserver: %s\n' "$*" >&2
}

_pg_die() {
    printf 'pgserver: error: %s\n' "$*" >&2
    exit 1
}

# _pg_find_bindir: sets _PGSERVER_BINDIR to a directory holding initdb, pg_ctl
# and postgres, or exits 1 with a one-line message naming the package.
_pg_find_bindir() {
    [[ -n "$_PGSERVER_BINDIR" ]] && return 0
    local d cand=()
    if [[ -n "${PG_BINDIR:-}" ]]; then
        cand+=("$PG_BINDIR")
    fi
    local initdb_path pgctl_path
    initdb_path=$(command -v initdb 2>/dev/null || true)
    pgctl_path=$(command -v pg_ctl 2>/dev/null || true)
    if [[ -n "$initdb_path" && -n "$pgctl_path" ]]; then
        # Resolve symlinks (e.g. /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb)
        # so that postgres is found next to them.
        cand+=("$(dirname "$(readlink -f "$initdb_path")")")
    fi
    # Highest installed Debian/Ubuntu major version.
    local sorted
    sorted=$(printf '%s\n' /usr/lib/postgresql/*/bin | grep -v '\*' | sort -t/ -k5,5 -V -r || true)
    while IFS= read -r d; do
        [[ -n "$d" ]] && cand+=("$d")
    done <<<"$sorted"
    for d in "${cand[@]}"; do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then
            _PGSERVER_BINDIR=$d
            return 0
        fi
    done
    _pg_die "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH, in \$PG_BINDIR or in /usr/lib/postgresql/*/bin; install the Debian package 'postgresql' (apt-get install postgresql) or set PG_BINDIR"
}

# _pg_find_runas: when running as root, choose the unprivileged user that owns
# and runs the servers, and the tool used to switch to it.
_pg_find_runas() {
    [[ "$EUID" -ne 0 || -n "$_PGSERVER_RUNAS" ]] && return 0
    local u
    if id -u postgres >/dev/null 2>&1; then
        u=postgres
    elif id -u nobody >/dev/null 2>&1; then
        u=nobody
    else
        _pg_die "running as root and neither a 'postgres' nor a 'nobody' user exists; PostgreSQL refuses to run as root"
    fi
    if ! command -v runuser >/dev/null 2>&1 && ! command -v setpriv >/dev/null 2>&1; then
        _pg_die "running as root but neither runuser nor setpriv is available to drop privileges (package util-linux)"
    fi
    _PGSERVER_RUNAS=$u
}

# _pg_as_owner CMD ARGS...: run a command as the server owner (ourselves, or
# the unprivileged user when root). Runs from / so an unreadable cwd is harmless.
_pg_as_owner() {
    if [[ "$EUID" -ne 0 ]]; then
        "$@"
        return
    fi
    if command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u "$_PGSERVER_RUNAS" -- "$@")
    else
        (cd / && setpriv --reuid="$_PGSERVER_RUNAS" --regid="$(id -g "$_PGSERVER_RUNAS")" --init-groups -- "$@")
    fi
}

# _pg_port_free PORT: true when nothing listens on 127.0.0.1:PORT.
_pg_port_free() {
    local p=$1
    if command -v ss >/dev/null 2>&1; then
        if [[ -n "$(ss -Htln "sport = :$p" 2>/dev/null)" ]]; then
            return 1
        fi
    fi
    # A successful connect means something is listening.
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        return 1
    fi
    return 0
}

_pg_pick_port() {
    local i p
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 30000))
        if _pg_port_free "$p"; then
            echo "$p"
            return 0
        fi
    done
    _pg_die "could not find a free TCP port on 127.0.0.1"
}

_pg_varname() {
    local v=${1^^}
    v=${v//[^A-Z0-9_]/_}
    [[ "$v" =~ ^[0-9] ]] && v="_$v"
    echo "$v"
}

_pg_exit_trap() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    local h
    for h in "${_PGSERVER_EXIT_HOOKS[@]}"; do
        eval "$h"
    done
    pg_stop_all
    exit "$rc"
}

_pg_install_trap() {
    [[ -n "$_PGSERVER_TRAP_SET" ]] && return 0
    trap _pg_exit_trap EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    _PGSERVER_TRAP_SET=1
}

pg_on_exit() {
    _PGSERVER_EXIT_HOOKS+=("$1")
    _pg_install_trap
}

pg_start() {
    local name=${1:?usage: pg_start NAME [PORT [SETTING=VALUE ...]]}
    local port=${2:-0}
    shift $(($# >= 2 ? 2 : 1))
    local var
    var=$(_pg_varname "$name")
    [[ -z "${_PGSERVER_DIRS[$name]:-}" ]] || _pg_die "server '$name' already started"

    _pg_find_bindir
    _pg_find_runas
    _pg_install_trap

    local parent=${PGSERVER_TMPDIR:-${TMPDIR:-/tmp}}
    if [[ "$EUID" -eq 0 ]] && ! _pg_as_owner test -x "$parent" 2>/dev/null; then
        parent=/tmp # the unprivileged owner must be able to reach the data dir
    fi
    local safe=${name//[^A-Za-z0-9_-]/_}
    local dir
    dir=$(mktemp -d "$parent/lockstep-pg-$safe.XXXXXX") || _pg_die "mktemp failed in $parent"
    _PGSERVER_NAMES+=("$name")
    _PGSERVER_DIRS[$name]=$dir
    if [[ "$EUID" -eq 0 ]]; then
        chown "$_PGSERVER_RUNAS:" "$dir"
    fi

    local initlog="$dir.initdb.log"
    if ! _pg_as_owner "$_PGSERVER_BINDIR/initdb" -D "$dir" -U postgres -A trust \
        -E UTF8 --locale=C --no-sync >"$initlog" 2>&1; then
        cat "$initlog" >&2
        rm -f "$initlog"
        _pg_die "initdb failed for server '$name' (binaries: $_PGSERVER_BINDIR)"
    fi
    rm -f "$initlog"

    local fsync=${PGSERVER_FSYNC:-on}
    {
        echo
        echo "# --- added by scripts/lib/pgserver.sh (throwaway server '$name') ---"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$dir'"
        echo "fsync = $fsync"
        echo "logging_collector = off"
        echo "log_min_messages = warning"
        local kv
        for kv in "$@"; do
            [[ "$kv" == *=* ]] || _pg_die "pg_start: setting '$kv' is not KEY=VALUE"
            echo "${kv%%=*} = '${kv#*=}'"
        done
    } >>"$dir/postgresql.conf"

    local auto=0 attempt
    if [[ -z "$port" || "$port" == 0 || "$port" == auto ]]; then
        auto=1
    elif ! _pg_port_free "$port"; then
        _pg_die "port $port on 127.0.0.1 is already in use (server '$name')"
    fi
    for attempt in 1 2 3 4 5; do
        ((auto)) && port=$(_pg_pick_port)
        if _pg_as_owner "$_PGSERVER_BINDIR/pg_ctl" -D "$dir" -l "$dir/server.log" \
            -o "-p $port" -w -t 60 start >/dev/null 2>&1; then
            break
        fi
        if ((auto)) && ((attempt < 5)) && grep -qi 'could not bind\|address already in use' "$dir/server.log" 2>/dev/null; then
            continue # lost a race for the port: try another
        fi
        tail -n 20 "$dir/server.log" >&2 2>/dev/null || true
        _pg_die "could not start server '$name' on port $port (log: $dir/server.log)"
    done
    _PGSERVER_PORTS[$name]=$port

    local dsn="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
    printf -v "${var}_DSN" '%s' "$dsn"
    printf -v "${var}_PORT" '%s' "$port"
    printf -v "${var}_DIR" '%s' "$dir"
    printf -v "${var}_LOG" '%s' "$dir/server.log"
    export "${var}_DSN" "${var}_PORT" "${var}_DIR" "${var}_LOG"
    export PGSERVER_LAST_DSN=$dsn
    _pg_msg "started '$name' on 127.0.0.1:$port (data $dir, fsync=$fsync${*:+, $*})"
}

pg_dsn() {
    local name=${1:?usage: pg_dsn NAME}
    [[ -n "${_PGSERVER_PORTS[$name]:-}" ]] || _pg_die "no server named '$name'"
    echo "postgres://postgres@127.0.0.1:${_PGSERVER_PORTS[$name]}/postgres?sslmode=disable"
}

pg_stop() {
    local name=${1:?usage: pg_stop NAME}
    local dir=${_PGSERVER_DIRS[$name]:-}
    [[ -n "$dir" ]] || return 0
    if [[ -f "$dir/postmaster.pid" ]]; then
        _pg_as_owner "$_PGSERVER_BINDIR/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null 2>&1 ||
            _pg_as_owner "$_PGSERVER_BINDIR/pg_ctl" -D "$dir" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
            true
    fi
    if [[ "${PGSERVER_KEEP:-}" == 1 ]]; then
        _pg_msg "stopped '$name'; kept $dir (PGSERVER_KEEP=1)"
    else
        rm -rf -- "$dir"
        _pg_msg "stopped '$name'"
    fi
    unset "_PGSERVER_DIRS[$name]" "_PGSERVER_PORTS[$name]"
}

pg_stop_all() {
    local name
    for name in "${_PGSERVER_NAMES[@]}"; do
        pg_stop "$name"
    done
    _PGSERVER_NAMES=()
}
