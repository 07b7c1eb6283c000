#!/usr/bin/env bash
# Installs the Debian packages vic needs to build, run and test, if any is missing.
# qemu-system-x86 (bookworm, 7.2) conflicts with a newer qemu-utils from backports, so both
# are installed together from bookworm.
set -euo pipefail
pkgs=(qemu-system-x86 qemu-utils linux-source-6.1 build-essential flex bison bc libelf-dev
      docker-registry skopeo busybox-static e2fsprogs cpio tmux python3 python3-venv curl apache2-utils
      python3-cryptography openssl iproute2 util-linux iptables procps socat docker-compose
      xorriso  # vcsim's stand-in VMs read their boot media (ISO images) with it
      docker.io)  # the peer dockerd of the round-trip tests and benchmarks (in its own namespaces)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# qemu-system-x86 7.2 needs qemu-utils 7.2 beside it.
if dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -qv '^1:7\.'; then
  dpkg-query -W -f='${Status}' qemu-system-x86 2>/dev/null | grep -q "install ok installed" || missing+=(qemu-utils)
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all Debian packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "deps: installing ${missing[*]}"
$sudo apt-get update -qq
args=()
for p in "${missing[@]}"; do
  case "$p" in
    qemu-utils|qemu-system-x86) ;;
    *) args+=("$p") ;;
  esac
done
if printf '%s\n' "${missing[@]}" | grep -q '^qemu-'; then
  args+=(qemu-system-x86 qemu-utils/bookworm)
fi
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends --allow-downgrades "${args[@]}"
