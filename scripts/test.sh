#!/usr/bin/env bash
# Runs the whole suite: unit tests and the #[ignore]d tests that need real parts.
set -uo pipefail
build=$1 reg=$2 docker=$3
export VIC_TEST_REGISTRY=$reg
export VIC_BUILD_DIR=$build
export VIC_DOCKER=$docker
export VIC_KERNEL=$build/bootstrap/vmlinux
export VIC_INITRD=$build/bootstrap/initramfs.cpio
# The initramfs whose PID 1 breaks the tether protocol (crates/hostile-guest, built by make initramfs).
export VIC_HOSTILE_INITRD=$build/bootstrap/hostile-initramfs.cpio
export VIC_STATE_ROOT=$build/test-state
# govmomi's vSphere simulator and CLI (scripts/vcsim.sh); each test starts its own vcsim.
govmomi=${VIC_CACHE:-/var/cache/vic}/govmomi-0.24.2/bin
export VIC_VCSIM=$govmomi/vcsim VIC_GOVC=$govmomi/govc
# pyvmomi, the second client every vSphere result is checked with (scripts/pyvmomi.sh).
export VIC_PYVMOMI=${VIC_CACHE:-/var/cache/vic}/pyvmomi-9.1.1.0/bin/python

# Registries that want credentials or a private CA (tests/fixtures/registry.sh).
fixture() { # fixture DIR FLAGS… → the KEY=VALUE lines it prints
  tests/fixtures/registry.sh start "$@" || { echo "test.sh: registry fixture $1 did not start" >&2; exit 1; }
}
out=$(fixture "$build/registry-basic" --auth basic) || exit 1
export VIC_TEST_REGISTRY_BASIC=$(sed -n 's/^REGISTRY=//p' <<<"$out")
out=$(fixture "$build/registry-token" --auth token) || exit 1
export VIC_TEST_REGISTRY_TOKEN=$(sed -n 's/^REGISTRY=//p' <<<"$out")
export VIC_TEST_REGISTRY_TOKEN_DIR=$build/registry-token
out=$(fixture "$build/registry-tls" --tls) || exit 1
export VIC_TEST_REGISTRY_TLS=$(sed -n 's/^REGISTRY=//p' <<<"$out")
export VIC_TEST_REGISTRY_TLS_CA=$(sed -n 's/^CA=//p' <<<"$out")

cleanup() {
  # Delete every VCH the tests made (they live under their own state root).
  for d in "$VIC_STATE_ROOT"/vch/*/; do
    [ -d "$d" ] || continue
    "$build/bin/vic-machine" delete --target local --name "$(basename "$d")" --force >/dev/null 2>&1 || true
  done
}
stop_fixtures() {
  for d in registry-basic registry-token registry-tls; do
    tests/fixtures/registry.sh stop "$build/$d" >/dev/null 2>&1 || true
  done
}
trap 'cleanup; stop_fixtures' EXIT
cleanup
cargo test --workspace --no-fail-fast -- --include-ignored --test-threads=2
status=$?
# A part of `make conformance` (README: Conformance): docker-py's test classes that pass on
# both engines, each of whose tests must pass on vic wherever it passes on dockerd, and the
# Compose application's steps.
sample="ArchiveTest or DiffTest or KillTest or LogsTest or WaitTest or StartContainerTest"
sample+=" or StopTest or RemoveContainerTest or PortTest or PauseTest or RenameContainerTest"
sample+=" or HealthcheckTest or NetworkCollectionTest or VolumesTest or TestRegressions"
sample+=" or ExecTest or ExecDemuxTest or LinkTest or CommitTest"
bash scripts/conformance.sh "$build" "$reg" "$docker" --select "$sample" --require-parity \
  --minutes 20 || status=1
exit $status
