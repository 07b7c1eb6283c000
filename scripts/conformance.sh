#!/usr/bin/env bash
# make conformance: docker-py's own integration suite (7.0.0's source release, unmodified)
# against a VCH and against dockerd side by side (crates/bench/src/conformance.rs).
#   scripts/conformance.sh BUILD_DIR REGISTRY DOCKER [vic-conformance flags…]
set -euo pipefail
build=$1 registry=$2 docker=$3; shift 3
here=$(cd "$(dirname "$0")/.." && pwd)
work=$build/conformance
mkdir -p "$work"

# pytest and what docker-py's tests import, from Debian.
pkgs=(python3-pytest python3-pytest-timeout python3-paramiko python3-packaging python3-requests
      python3-websocket python3-urllib3 python3-pip skopeo busybox-static)
bash "$here/scripts/apt-missing.sh" conformance "${pkgs[@]}"

# docker-py's source release, which ships its tests (7.1 and later do not); checked.
sdist=docker-7.0.0.tar.gz
sha=323736fb92cd9418fc5e7133bc953e11a9da04f4483f828b527db553f1e7e5a3
if [ ! -d "$work/docker-7.0.0/tests/integration" ]; then
  [ -f "$work/$sdist" ] || /usr/bin/python3 -m pip download --quiet --no-deps --no-binary :all: \
    -d "$work" docker==7.0.0
  echo "$sha  $work/$sdist" | sha256sum -c --quiet
  tar -xzf "$work/$sdist" -C "$work"
fi

# The images it names, built from busybox-static and pushed once per registry.
marker=$work/images-$(echo "$registry" | tr ':/' '__')
if [ ! -f "$marker" ]; then
  rm -rf "$work/layout"
  python3 "$here/tests/fixtures/mkimages.py" "$work/layout" --conformance
  for ref in alpine-3.10 alpine-latest busybox-latest hello-world-latest; do
    skopeo copy --quiet --dest-tls-verify=false --format v2s2 "oci:$work/layout:$ref" \
      "docker://$registry/library/${ref%-*}:${ref##*-}"
  done
  touch "$marker"
fi

cargo build --release -p bench --bin vic-conformance
"${CARGO_TARGET_DIR:-$here/target}/release/vic-conformance" --bin-dir "$build/bin" --registry "$registry" \
  --docker "$docker" --dockerpy "$work/docker-7.0.0" --out "$work" "$@"
