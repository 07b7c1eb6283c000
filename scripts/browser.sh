#!/usr/bin/env bash
# Installs headless Chromium and its WebDriver (Debian's packages), which the admin pages'
# tests drive (crates/e2e/tests/vicadmin.rs); `make demo` does not need them.
set -euo pipefail
pkgs=(chromium chromium-driver)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "browser: chromium and chromedriver present"
  exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "browser: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
