#!/usr/bin/env bash
# The main job on the local target: create a VCH, pull an image, run a container VM in it.
set -euo pipefail
bin=$1 reg=$2 docker=$3
name=demo
"$bin/vic-machine" delete --target local --name "$name" --force >/dev/null 2>&1 || true
"$bin/vic-machine" create --target local --name "$name" --no-tls --insecure-registry "$reg" | tee /tmp/vic-demo-create.log
host=$(grep -m1 '^DOCKER_HOST=' /tmp/vic-demo-create.log | cut -d= -f2-)
export DOCKER_HOST=$host
echo
echo "+ docker pull $reg/busybox"
"$docker" pull "$reg/busybox"
echo
echo "+ docker run --rm $reg/busybox sh -c 'echo Hello from \$(hostname); uname -r'"
"$docker" run --rm "$reg/busybox" sh -c 'echo "Hello from container VM $(hostname)"; echo "guest kernel: $(uname -r)  (host: '"$(uname -r)"')"'
cat <<MSG

The VCH "$name" is running. Use it with:
  export DOCKER_HOST=$host
  $docker run -it --rm $reg/busybox sh
Remove it with: make demo-clean
MSG
