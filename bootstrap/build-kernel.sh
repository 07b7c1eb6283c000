#!/usr/bin/env bash
# Builds the container VMs' guest kernel (uncompressed vmlinux, PVH entry) from Debian's
# linux-source-6.1 with the checked-in configuration, once: the result is cached by the hash
# of the configuration and the source package version, so later builds copy it in seconds.
#
#   bootstrap/build-kernel.sh OUT_VMLINUX
set -euo pipefail
out=${1:?usage: build-kernel.sh OUT_VMLINUX}
here=$(cd "$(dirname "$0")" && pwd)
config="$here/guest-kernel.config"
src_tar=/usr/src/linux-source-6.1.tar.xz
cache_root=${VIC_CACHE_DIR:-/var/cache/vic}

if [ ! -f "$src_tar" ]; then
  echo "build-kernel: $src_tar is missing; install Debian's linux-source-6.1 (make deps does)" >&2
  exit 1
fi
src_ver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || echo unknown)
key=$( (cat "$config"; echo "$src_ver") | sha256sum | cut -c1-16)
cached="$cache_root/kernel/$key/vmlinux"

if [ ! -s "$cached" ]; then
  echo "build-kernel: building guest kernel $key from linux-source $src_ver (takes ~7 min on 2 cores)"
  work=$(mktemp -d "${TMPDIR:-/tmp}/vic-kernel.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  tar -C "$work" -xf "$src_tar"
  tree=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n1)
  cp "$config" "$tree/.config"
  make -C "$tree" olddefconfig >/dev/null
  make -C "$tree" -j"$(nproc)" vmlinux >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; exit 1; }
  mkdir -p "$(dirname "$cached")"
  cp "$tree/vmlinux" "$cached.tmp"
  strip --strip-debug "$cached.tmp" 2>/dev/null || true
  mv "$cached.tmp" "$cached"
fi
mkdir -p "$(dirname "$out")"
cp "$cached" "$out.tmp" && mv "$out.tmp" "$out"
echo "build-kernel: $out ($(du -h "$out" | cut -f1), cache $key)"
