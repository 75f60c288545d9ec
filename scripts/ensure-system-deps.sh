#!/usr/bin/env bash
# Installs what `make demo` and `make test` need from Debian/Ubuntu packages when it is missing:
# mariadb-server (mariadbd, mariadb-install-db), redis-server, and python3-venv; with --test also
# chromium and postgresql (initdb, postgres: the store's PostgreSQL tests start their own server).
# As root it runs apt-get; otherwise it stops and prints the exact command to run.
# Then (both modes) it fetches Oracle MySQL into ~/.cache/bgqueue/mysql-<version> with
# scripts/fetch-mysql.sh (private apt configuration, nothing installed system-wide; a present cache
# is reused), so the MySQL pairs of `make test` and `bgqueue demo --flavour mysql` can run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

fetch_mysql() {
  local root
  if ! root="$("$here/fetch-mysql.sh")"; then
    echo "fetching Oracle MySQL failed (reason above); retry with: $here/fetch-mysql.sh" >&2
    exit 1
  fi
  echo "Oracle MySQL $(cat "$(dirname "$root")/VERSION") in $root" >&2
}

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/local/sbin/$1" ]; }

missing=()
have mariadbd || missing+=(mariadb-server)
have mariadb-install-db || { [[ " ${missing[*]-} " == *" mariadb-server "* ]] || missing+=(mariadb-server); }
have redis-server || missing+=(redis-server)
have haproxy || missing+=(haproxy)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# make test: tests/report checks the HTML report in headless Chromium (DevTools over a pipe, no driver)
if [ "${1:-}" = "--test" ]; then have chromium || [ -x /usr/lib/chromium/chromium ] || missing+=(chromium); fi
# make test: tests/store runs the store on a PostgreSQL server it starts (Debian keeps the binaries
# in /usr/lib/postgresql/<major>/bin, off PATH)
have_postgres() { { have initdb && have postgres; } || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }
if [ "${1:-}" = "--test" ]; then have_postgres || missing+=(postgresql); fi
# make test: tests/chaos and tests/sandbox/test_hosts make worker hosts as network namespaces (ip netns)
if [ "${1:-}" = "--test" ]; then have ip || missing+=(iproute2); fi

if [ ${#missing[@]} -eq 0 ]; then
  fetch_mysql
  exit 0
fi
cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]}" >&2
  echo "run this, then try again:  sudo sh -c '$cmd'" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}" >&2
sh -c "$cmd"
fetch_mysql
