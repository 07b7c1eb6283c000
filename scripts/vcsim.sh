#!/usr/bin/env bash
# Builds govmomi's vSphere simulator (vcsim) and CLI (govc) from Debian's source package, offline
# from Debian's archive: the binary package strips both. Cached in $VIC_CACHE (default
# /var/cache/vic); prints nothing but a line when the cache already holds them.
#   scripts/vcsim.sh            → $VIC_CACHE/govmomi-0.24.2/bin/{vcsim,govc}
set -euo pipefail
version=0.24.2
cache=${VIC_CACHE:-/var/cache/vic}/govmomi-$version
bin=$cache/bin
if [ -x "$bin/vcsim" ] && [ -x "$bin/govc" ]; then
  echo "vcsim: cached in $bin"
  exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
# The source package needs a deb-src entry for bookworm's main archive.
src_list=/etc/apt/sources.list.d/vic-src.sources
if ! apt-cache showsrc golang-github-vmware-govmomi 2>/dev/null | grep -q "^Version: $version"; then
  $sudo tee "$src_list" >/dev/null <<'LIST'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
LIST
  $sudo apt-get update -qq
fi
need=(golang-go golang-github-google-uuid-dev golang-github-kr-pretty-dev dpkg-dev)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get source -qq "golang-github-vmware-govmomi=$version-3" >/dev/null 2>&1) || {
  echo "vcsim: apt-get source golang-github-vmware-govmomi failed" >&2
  exit 1
}
# GOPATH mode: the source tree as github.com/vmware/govmomi, its two dependencies from Debian.
mkdir -p "$work/gopath/src/github.com/vmware"
ln -s "$work/golang-github-vmware-govmomi-$version" "$work/gopath/src/github.com/vmware/govmomi"
export GOPATH=$work/gopath:/usr/share/gocode GO111MODULE=off GOCACHE=$work/cache GOFLAGS=
mkdir -p "$bin"
echo "vcsim: building vcsim and govc $version from Debian's source package"
for cmd in vcsim govc; do
  go build -o "$bin/$cmd.new" "github.com/vmware/govmomi/$cmd"
  mv "$bin/$cmd.new" "$bin/$cmd"
done
echo "vcsim: built in $bin"
