#!/usr/bin/env bash
# Runs the whole suite: unit tests and the #[ignore]d tests that need real parts.
set -uo pipefail
build=$1 reg=$2 docker=$3
export VIC_TEST_REGISTRY=$reg
export VIC_BUILD_DIR=$build
export VIC_DOCKER=$docker
export VIC_KERNEL=$build/bootstrap/vmlinux
export VIC_INITRD=$build/bootstrap/initramfs.cpio
export VIC_STATE_ROOT=$build/test-state

cleanup() {
  # Delete every VCH the tests made (they live under their own state root).
  for d in "$VIC_STATE_ROOT"/vch/*/; do
    [ -d "$d" ] || continue
    "$build/bin/vic-machine" delete --target local --name "$(basename "$d")" --force >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
cleanup
cargo test --workspace --no-fail-fast -- --include-ignored --test-threads=2
