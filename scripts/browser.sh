#!/usr/bin/env bash
# Installs headless Chromium and its WebDriver (Debian's packages), which the admin pages'
# tests drive (crates/e2e/tests/vicadmin.rs); `make demo` does not need them.
set -euo pipefail
exec bash "$(dirname "$0")/apt-missing.sh" browser chromium chromium-driver
