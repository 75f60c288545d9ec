#!/usr/bin/env bash
# Fetches Oracle MySQL (mysql-server-core, mysql-client-core and the runtime libraries they need)
# from Debian's unstable suite into a private folder, without touching the system's apt: a private
# apt configuration (this machine's own Debian mirror, suite sid, an empty dpkg status, its own
# lists and cache), then `apt-get download` and `dpkg -x`. Nothing is installed system-wide.
#
#   scripts/fetch-mysql.sh            -> prints the unpacked root (…/mysql-<version>/root)
#
# The result is cached in ${BGQUEUE_MYSQL_CACHE:-~/.cache/bgqueue}/mysql-<version>; a present cache
# is reused without any network access. mysqld then runs through the fetched loader:
#   $R/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 --library-path $R/usr/lib/x86_64-linux-gnu $R/usr/sbin/mysqld
set -euo pipefail

cache="${BGQUEUE_MYSQL_CACHE:-$HOME/.cache/bgqueue}"
mkdir -p "$cache"
fail() { echo "fetch-mysql: $*" >&2; exit 1; }

# A finished fetch leaves a VERSION file next to root/: reuse the newest one.
for done in $(ls -d "$cache"/mysql-*/VERSION 2>/dev/null | sort -rV); do
  dir="$(dirname "$done")"
  if [ -x "$dir/root/usr/sbin/mysqld" ]; then
    echo "fetch-mysql: using cached MySQL $(cat "$done") in $dir" >&2
    echo "$dir/root"
    exit 0
  fi
done

command -v apt-get >/dev/null || fail "apt-get not found: MySQL is fetched from Debian's packages (a Debian/Ubuntu machine is needed)"
command -v dpkg >/dev/null || fail "dpkg not found: run: apt-get install -y dpkg"

# This machine's own Debian mirror (first deb URI of the system's sources), suite sid.
mirror="$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)"
if [ -z "$mirror" ]; then
  mirror="$(grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)"
fi
[ -n "$mirror" ] || fail "no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || fail "$keyring missing: run: apt-get install -y debian-archive-keyring"

work="$(mktemp -d "$cache/.fetch-XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/debs" "$work/root" "$work/etc"
: > "$work/status"
cat > "$work/etc/sid.sources" <<EOF
Types: deb
URIs: $mirror
Suites: sid
Components: main
Signed-By: $keyring
EOF
opts=(-o "Dir::Etc::SourceList=$work/etc/sid.sources" -o "Dir::Etc::SourceParts=/dev/null"
      -o "Dir::State::Lists=$work/lists" -o "Dir::State::status=$work/status"
      -o "Dir::Cache=$work" -o "Dir::Cache::archives=$work/archives"
      -o "Debug::NoLocking=1" -o "APT::Architecture=amd64" -o "APT::Get::AllowUnauthenticated=false")

apt-get "${opts[@]}" -q update >"$work/update.log" 2>&1 \
  || fail "apt-get update of sid failed (see below); command: apt-get ${opts[*]} update
$(tail -5 "$work/update.log")"
plan="$(apt-get "${opts[@]}" -s --no-install-recommends install mysql-server-core mysql-client-core 2>&1)" \
  || fail "resolving mysql-server-core mysql-client-core in sid failed:
$(echo "$plan" | tail -5)"
# "Inst <pkg> (<version> ...": every package of the plan except perl (the server core needs none of it).
mapfile -t pkgs < <(echo "$plan" | awk '/^Inst /{print $2}' | grep -Ev '^(perl|perl-base|perl-modules-.*|libperl.*)$')
[ ${#pkgs[@]} -gt 0 ] || fail "apt-get planned no packages for mysql-server-core"
version="$(echo "$plan" | awk '/^Inst mysql-server-core /{gsub(/[()]/,"",$3); print $3}')"
[ -n "$version" ] || fail "no mysql-server-core version in sid's plan"
upstream="${version%%-*}"
final="$cache/mysql-$upstream"

(cd "$work/debs" && apt-get "${opts[@]}" -q download "${pkgs[@]}" >"$work/download.log" 2>&1) \
  || fail "apt-get download failed; command: (cd $work/debs && apt-get ${opts[*]} download ${pkgs[*]})
$(tail -5 "$work/download.log")"
for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$work/root"; done
[ -x "$work/root/usr/sbin/mysqld" ] || fail "the unpacked packages hold no usr/sbin/mysqld"

# Only the tree is kept; a concurrent fetch that finished first wins.
mkdir -p "$work/out"
mv "$work/root" "$work/out/root"
echo "$version" > "$work/out/VERSION"
printf '%s\n' "${pkgs[@]}" > "$work/out/PACKAGES"
if ! mv -T "$work/out" "$final" 2>/dev/null; then
  [ -x "$final/root/usr/sbin/mysqld" ] || fail "could not move the fetched tree to $final"
fi
echo "fetch-mysql: fetched MySQL $version (${#pkgs[@]} packages) into $final" >&2
echo "$final/root"
