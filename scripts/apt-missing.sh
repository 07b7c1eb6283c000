#!/usr/bin/env bash
# Installs those of the Debian packages named that are not installed yet (nothing when all
# are): scripts/apt-missing.sh WHAT PACKAGE…  (WHAT names the caller in what it prints).
set -euo pipefail
what=$1; shift
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "$what: all Debian packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "$what: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
