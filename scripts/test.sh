#!/usr/bin/env bash
# The project's whole check: formatting, tidy go.mod, go vet, and every test against real
# PostgreSQL servers (started by internal/pgtest from the local binaries).
#
#   scripts/test.sh                      everything
#   scripts/test.sh ./copy/... -run X    some packages; other arguments go to `go test`
#
# Package patterns (./x, ./x/..., lockstep/x) also narrow gofmt and go vet to
# those packages. As root with apt-get, missing PostgreSQL packages are
# installed; otherwise the script says which package to install.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=$SECONDS
section() { printf '\n==> %s\n' "$*"; }
die() { printf 'scripts/test.sh: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }
can_apt() { is_root && command -v apt-get >/dev/null 2>&1; }

apt_updated=
apt_install() {
	if [ -z "$apt_updated" ]; then
		apt-get update -q
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# Echoes the directory holding initdb and pg_ctl, or nothing.
find_bindir() {
	local d
	for d in "${LOCKSTEP_TEST_PGBIN:-}" "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")" \
		$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV) \
		"$(pg_config --bindir 2>/dev/null || true)"; do
		if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
			echo "$d"
			return
		fi
	done
}

online_clusters() {
	if command -v pg_lsclusters >/dev/null 2>&1; then
		pg_lsclusters -h 2>/dev/null | awk '$4 == "online" { print $1 " " $2 }'
	fi
}

# Split the arguments: package patterns narrow every step, the rest go to go test.
pkgs=()
value_next=
for arg in "$@"; do
	if [ -n "$value_next" ]; then # the value of a flag such as -run, even if it is "."
		value_next=
		continue
	fi
	case "$arg" in
	-run | -skip | -bench | -benchtime | -count | -timeout | -cpu | -parallel | -p | -tags | -shuffle | \
		-list | -fuzz | -fuzztime | -o | -exec | -coverprofile | -coverpkg | -covermode | -cpuprofile | \
		-memprofile | -blockprofile | -mutexprofile | -trace | -outputdir | -ldflags | -gcflags)
		value_next=1 ;;
	. | ./* | ../* | lockstep | lockstep/*) pkgs+=("$arg") ;;
	esac
done
test_args=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
	pkgs=(./...)
	test_args+=(./...)
fi

section "Toolchain"
command -v go >/dev/null 2>&1 || die "Go is not installed: get Go $(sed -n 's/^go //p' go.mod) or newer from https://go.dev/dl/"
go version
# -race needs cgo and a C compiler.
cc=$(go env CC)
if [ "$(go env CGO_ENABLED)" != 1 ] || ! command -v "${cc%% *}" >/dev/null 2>&1; then
	if can_apt && [ "$(go env CGO_ENABLED)" = 1 ]; then
		apt_install gcc libc6-dev
	else
		die "go test -race needs cgo and a C compiler: install gcc (Debian/Ubuntu: apt-get install gcc) and set CGO_ENABLED=1"
	fi
fi

section "PostgreSQL"
if [ -n "${LOCKSTEP_TEST_SOURCE:-}" ] && [ -n "${LOCKSTEP_TEST_DEST:-}" ]; then
	echo "tests use the servers in LOCKSTEP_TEST_SOURCE and LOCKSTEP_TEST_DEST"
fi
bindir=$(find_bindir)
if [ -z "$bindir" ]; then
	if can_apt; then
		echo "initdb not found: installing the PostgreSQL server package"
		before=$(online_clusters)
		apt_install postgresql
		# Debian's post-install may create and start a cluster on 5432. The
		# tests do not use it; stop what this install started.
		while read -r ver name; do
			[ -n "$ver" ] || continue
			if ! grep -qx "$ver $name" <<<"$before"; then
				echo "stopping cluster $ver/$name started by the package install"
				pg_ctlcluster "$ver" "$name" stop || true
			fi
		done <<<"$(online_clusters)"
		bindir=$(find_bindir)
		[ -n "$bindir" ] || die "installed postgresql but still found no initdb and pg_ctl"
	else
		die "PostgreSQL server binaries (initdb, pg_ctl) not found: install the PostgreSQL server package (Debian/Ubuntu: sudo apt-get install postgresql; Fedora: postgresql-server; macOS: brew install postgresql@15) or set LOCKSTEP_TEST_PGBIN to their directory"
	fi
fi
export PATH="$bindir:$PATH"

missing=()
for tool in psql pgbench pg_dump pg_restore; do
	command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
	if can_apt; then
		echo "${missing[*]} not found: installing the PostgreSQL client package"
		apt_install postgresql-client
		command -v pgbench >/dev/null 2>&1 || apt_install postgresql-contrib
	else
		die "$(IFS=,; echo "${missing[*]}") not found: install the PostgreSQL client package (Debian/Ubuntu: sudo apt-get install postgresql-client)"
	fi
	for tool in "${missing[@]}"; do
		command -v "$tool" >/dev/null 2>&1 || die "installed postgresql-client but $tool is still missing"
	done
fi
echo "server binaries: $bindir ($("$bindir/initdb" --version))"
echo "psql: $(command -v psql), pgbench: $(command -v pgbench), pg_dump: $(command -v pg_dump) ($(pg_dump --version))"
if is_root; then
	echo "running as root: test servers run as the postgres (or nobody) user"
fi

section "gofmt"
if [ "${pkgs[*]}" = "./..." ] && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	# Tracked files and new files not yet added (but not ignored ones).
	mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.go')
else
	dirs=$(go list -e -f '{{.Dir}}' "${pkgs[@]}")
	files=()
	while read -r d; do
		[ -n "$d" ] || continue
		for f in "$d"/*.go; do
			[ -e "$f" ] && files+=("$f")
		done
	done <<<"$dirs"
fi
if [ ${#files[@]} -gt 0 ]; then
	unformatted=$(gofmt -l "${files[@]}")
	if [ -n "$unformatted" ]; then
		printf '%s\n' "$unformatted"
		die "gofmt would change the files above: run gofmt -w on them"
	fi
fi
echo "${#files[@]} files formatted"

section "go mod tidy"
# go.mod and go.sum must be what go mod tidy makes of the code: a drift
# (a direct dependency marked indirect, a stale or missing sum) fails here.
if ! drift=$(go mod tidy -diff 2>&1); then
	printf '%s\n' "$drift"
	die "go.mod/go.sum differ from what go mod tidy produces (diff above): run go mod tidy and commit the result"
fi
echo "go.mod and go.sum are tidy"

section "go vet ${pkgs[*]}"
go vet "${pkgs[@]}"

if [ "${pkgs[*]}" = "./..." ]; then
	section "deploy/: Kubernetes manifests, cron wrapper"
	# deploy/ is a module of its own (the Kubernetes API types stay out of
	# lockstep's go.mod): its tests decode every manifest strictly and check
	# what the README says of them. The cron wrapper runs for real in
	# TestCronWrapper, the Grafana dashboard is checked in
	# TestMetricsFileMatchesReport (both below, in go test).
	(
		cd deploy
		if ! drift=$(go mod tidy -diff 2>&1); then
			printf '%s\n' "$drift"
			die "deploy/go.mod differs from what go mod tidy produces: run (cd deploy && go mod tidy)"
		fi
		go vet ./...
		go test -count=1 ./...
	)
	bash -n deploy/cron/lockstep-cron.sh
	if command -v shellcheck >/dev/null 2>&1; then
		(cd deploy/cron && shellcheck -x lockstep-cron.sh)
		echo "shellcheck: deploy/cron/lockstep-cron.sh is clean"
	else
		echo "shellcheck not installed: deploy/cron/lockstep-cron.sh only passed bash -n (Debian: apt-get install shellcheck)"
	fi

	section "container image (deploy/Dockerfile)"
	rev=$(git rev-parse HEAD 2>/dev/null || echo unknown)
	bin=$(mktemp -d)
	trap 'rm -rf "$bin"' EXIT
	if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
		docker build -q -f deploy/Dockerfile --build-arg REVISION="$rev" -t lockstep:test .
		docker run --rm lockstep:test --version | grep -F "revision $rev"
	else
		echo "no Docker engine: building what the Dockerfile builds (a static binary) without it"
		# The same command as the Dockerfile's build stage.
		CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w -X main.revision=$rev" -o "$bin/lockstep" .
		linked=$(ldd "$bin/lockstep" 2>&1 || true) # ldd fails on a static binary
		case $linked in
		*"not a dynamic executable"* | *"statically linked"*) echo "static binary:$linked" ;;
		*) die "the CGO_ENABLED=0 build is not static: $linked" ;;
		esac
		"$bin/lockstep" --version | grep -F "revision $rev" || die "lockstep --version lacks revision $rev"
	fi
	# A build from a git clone records its revision itself (a linked work
	# tree, whose .git is a file, is not recognised by go build).
	if [ -d .git ]; then
		go build -buildvcs=true -o "$bin/lockstep-vcs" .
		"$bin/lockstep-vcs" --version | grep -F "revision $rev" || die "lockstep --version lacks the VCS revision $rev"
	else
		echo "not a git clone's root (.git is not a directory): the VCS stamp of --version is not checked here"
	fi
fi

section "go test -race ${test_args[*]}"
go test -race -count=1 -timeout 20m "${test_args[@]}"

section "all checks passed in $((SECONDS - started))s"
