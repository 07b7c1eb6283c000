#!/usr/bin/env bash
# Builds the container VMs' initramfs: an uncompressed newc cpio holding tether as /init plus
# the empty directories it mounts on. Reproducible: fixed owner, mode and mtime, sorted entries.
#
#   bootstrap/build-initramfs.sh OUT_CPIO TETHER_BIN
set -euo pipefail
out=${1:?usage: build-initramfs.sh OUT_CPIO TETHER_BIN}
tether=${2:?usage: build-initramfs.sh OUT_CPIO TETHER_BIN}

if [ ! -x "$tether" ]; then
  echo "build-initramfs: $tether is missing; build tether statically first (make does)" >&2
  exit 1
fi
if ! file -b "$tether" 2>/dev/null | grep -q 'statically linked\|static-pie'; then
  if ldd "$tether" >/dev/null 2>&1; then
    echo "build-initramfs: $tether is dynamically linked; build it with -C target-feature=+crt-static" >&2
    exit 1
  fi
fi
command -v cpio >/dev/null || { echo "build-initramfs: cpio is missing; apt-get install cpio" >&2; exit 1; }

stage=$(mktemp -d "${TMPDIR:-/tmp}/vic-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{dev,proc,sys,root-fs,tmp}
if command -v strip >/dev/null; then
  strip --strip-all -o "$stage/init" "$tether"
else
  cp "$tether" "$stage/init"
fi
chmod 0755 "$stage/init"
chmod 0755 "$stage"/{dev,proc,sys,root-fs}
chmod 1777 "$stage/tmp"
find "$stage" -exec touch -h -d @0 {} +

mkdir -p "$(dirname "$out")"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) >"$out.tmp"
mv "$out.tmp" "$out"
echo "build-initramfs: $out ($(du -h "$out" | cut -f1))"
