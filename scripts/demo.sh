#!/usr/bin/env bash
# The main job on the local target: create a VCH, pull an image, run a container VM in it.
# The VCH serves the Docker API over mutual TLS (vic-machine's default); the docker CLI finds
# the client certificate through the environment file create writes.
set -euo pipefail
bin=$1 reg=$2 docker=$3
name=demo
certs=$(cd "$bin/.." && pwd)/$name # certificates and demo.env, kept under build/
"$bin/vic-machine" delete --target local --name "$name" --force >/dev/null 2>&1 || true
"$bin/vic-machine" create --target local --name "$name" --tls-cert-path "$certs" \
  --insecure-registry "$reg" | tee /tmp/vic-demo-create.log
env_file=$certs/$name.env
set -a
# shellcheck disable=SC1090
. "$env_file" # DOCKER_HOST, DOCKER_TLS_VERIFY=1, DOCKER_CERT_PATH
set +a
echo
echo "+ . $env_file   # DOCKER_HOST=$DOCKER_HOST DOCKER_TLS_VERIFY=$DOCKER_TLS_VERIFY DOCKER_CERT_PATH=$DOCKER_CERT_PATH"
echo "+ docker pull $reg/busybox"
"$docker" pull "$reg/busybox"
echo
echo "+ docker run --rm $reg/busybox sh -c 'echo Hello from \$(hostname); uname -r'"
"$docker" run --rm "$reg/busybox" sh -c 'echo "Hello from container VM $(hostname)"; echo "guest kernel: $(uname -r)  (host: '"$(uname -r)"')"'
cat <<MSG

The VCH "$name" is running; its Docker API takes only clients with its certificates. Use it with:
  set -a; . $env_file; set +a
  $docker run -it --rm $reg/busybox sh
Remove it with: make demo-clean
MSG
