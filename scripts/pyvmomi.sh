#!/usr/bin/env bash
# Installs pyvmomi, VMware's Python SDK from PyPI, into a virtual environment: the tests' second,
# independent vSphere client beside govc (tests/fixtures/vcsim/pyvmomi-check). Cached in
# $VIC_CACHE (default /var/cache/vic); prints one line when the cache already holds it.
#   scripts/pyvmomi.sh          → $VIC_CACHE/pyvmomi-9.1.1.0/bin/python
set -euo pipefail
version=9.1.1.0
venv=${VIC_CACHE:-/var/cache/vic}/pyvmomi-$version
if "$venv/bin/python" -c "import pyVmomi" 2>/dev/null; then
  echo "pyvmomi: cached in $venv"
  exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "pyvmomi==$version"
"$venv/bin/python" -c "import pyVmomi"
echo "pyvmomi: installed in $venv"
