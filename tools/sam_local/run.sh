#!/usr/bin/env bash
# `./dev sam-local`: the function under the real SAM CLI and Docker, run with the commands docs/sam-local.md
# gives users, on this x86_64 machine and without pulling any image or reaching AWS.
#   1. docker.io and mmdebstrap from apt when missing (CI runs as root on a fresh machine)
#   2. a Docker daemon: the one DOCKER_HOST or the default socket names if it answers, else one started here
#      without a bridge network and without touching iptables (images kept in .tools/docker), stopped at the end
#   3. the python3.13 x86_64 base image, built locally (tools/sam_local/base_image.sh)
#   4. ARCH=x86_64 sam build --config-env local-x86_64, with the fixture model archive for the layer
#   5. tests/sam_local: `sam local invoke -e` with every events/ file, `sam local start-api` with HTTP requests
#      on every route, and whether the host-network shim is still needed and still right
# Needs .venv, .tools/sam and the fixture models (./dev setup). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYENV_ROOT=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
PYTHON313=${PYTHON313:-$PYENV_ROOT/versions/3.13.0/bin/python3.13}
SAM=.tools/sam/bin/sam
FIXTURE_ARCHIVE=.fixtures/ms-marco-TinyBERT-L-2-v2.zip
BUILD_DIR=.aws-sam/local-x86_64 # samconfig.toml [local-x86_64]
DOCKER_DATA=.tools/docker
# The daemon's sockets live in a short path of their own: unix socket paths are limited to 107 bytes.
DOCKER_RUN=${TMPDIR:-/tmp}/reranker-dockerd-$(echo "$PWD" | sha256sum | cut -c1-12)

log() { printf '\033[1m[sam-local]\033[0m %s\n' "$*" >&2; }
die() { echo "sam-local: $*" >&2; exit 1; }

[[ $(uname -m) == x86_64 ]] || die "this step runs x86_64 functions; on $(uname -m) see docs/sam-local.md"
for tool in "$SAM" .venv/bin/python "$PYTHON313"; do [[ -x $tool ]] || die "missing $tool (run ./dev setup)"; done
[[ -f $FIXTURE_ARCHIVE ]] || die "missing $FIXTURE_ARCHIVE (run ./dev setup)"

# --- the SAM CLI stays off the network: no telemetry, no AWS credentials or metadata lookups, no update check --
export SAM_CLI_TELEMETRY=0 AWS_EC2_METADATA_DISABLED=true AWS_REGION=us-east-1
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
# SAM asks PyPI for a newer version of itself once a week, as its settings folder records; give it a folder of
# its own (__SAM_CLI_APP_DIR: where SAM's GlobalConfig looks first) that says it just asked. A SAM CLI that
# stops reading the variable would only make that one request to PyPI again.
export __SAM_CLI_APP_DIR=$PWD/.tools/sam-settings
mkdir -p "$__SAM_CLI_APP_DIR"
printf '{"telemetryEnabled": false, "lastVersionCheck": %s}\n' "$(date +%s)" >"$__SAM_CLI_APP_DIR/metadata.json"
# sam build resolves the python3.13 runtime to the first python3.13 (with pip) on PATH.
export PATH="$(dirname "$PYTHON313"):$PATH"

apt_install() { # apt_install PACKAGE...: only what is missing; the package lists are refreshed only if needed
  local missing=()
  for package in "$@"; do dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package"); done
  ((${#missing[@]})) || return 0
  [[ $(id -u) == 0 ]] || die "install ${missing[*]} (apt-get install ${missing[*]}), or run as root"
  log "apt-get install ${missing[*]}"
  # Where systemd runs, Debian starts a package's services on install: docker.io's daemon would create a bridge
  # and iptables rules. policy-rc.d, Debian's switch for that, holds them back during this install.
  local policy=/usr/sbin/policy-rc.d made_policy= status=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; } \
    || status=$?
  [[ -z $made_policy ]] || rm -f "$policy"
  return "$status"
}

# --- Docker ------------------------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/sam-local.XXXXXX")
started_daemon=
cleanup() {
  rm -rf "$work"
  [[ -n $started_daemon ]] || return 0
  local containers
  containers=$(docker ps -aq 2>/dev/null || true)
  [[ -z $containers ]] || docker rm -f $containers >/dev/null 2>&1 || true
  kill "$started_daemon" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$started_daemon" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$started_daemon" 2>/dev/null; then
    log "dockerd ($started_daemon) did not stop within 10 s"
  elif mountpoint -q "$DOCKER_RUN/exec/netns/default"; then
    umount "$DOCKER_RUN/exec/netns/default" # the network namespace mount dockerd leaves behind when it stops
  fi
}
trap cleanup EXIT

if [[ -n ${DOCKER_HOST:-} ]] || docker version >/dev/null 2>&1; then
  docker version >/dev/null 2>&1 || die "no Docker daemon answers at DOCKER_HOST=$DOCKER_HOST"
  log "using the running Docker daemon (${DOCKER_HOST:-default socket})"
else
  apt_install docker.io
  export DOCKER_HOST=unix://$DOCKER_RUN/docker.sock
  if [[ -f $DOCKER_RUN/dockerd.pid ]] && kill -0 "$(cat "$DOCKER_RUN/dockerd.pid")" 2>/dev/null; then
    started_daemon=$(cat "$DOCKER_RUN/dockerd.pid") # left running by an interrupted run: ours, stop it too
  else
    log "starting dockerd (no bridge network, iptables untouched; images in $DOCKER_DATA)"
    mkdir -p "$DOCKER_RUN" "$DOCKER_DATA"
    rm -f "$DOCKER_RUN/docker.sock" "$DOCKER_RUN/dockerd.pid"
    dockerd --bridge=none --iptables=false --ip6tables=false \
      --data-root "$PWD/$DOCKER_DATA" --exec-root "$DOCKER_RUN/exec" --pidfile "$DOCKER_RUN/dockerd.pid" \
      --host "$DOCKER_HOST" >"$DOCKER_RUN/dockerd.log" 2>&1 &
    started_daemon=$!
  fi
  for _ in $(seq 100); do docker version >/dev/null 2>&1 && break; sleep 0.2; done
  docker version >/dev/null 2>&1 || { tail -20 "$DOCKER_RUN/dockerd.log" >&2; die "dockerd did not start"; }
fi
# Without a bridge network SAM's published ports lead nowhere: run it through the host-network shim.
if docker network inspect bridge >/dev/null 2>&1; then
  export SAM_LOCAL_COMMAND=$SAM
else
  export SAM_LOCAL_COMMAND=".tools/sam/bin/python -m tools.sam_local.host_network"
fi

# --- the base image, the build ----------------------------------------------------------------------
if ! bash tools/sam_local/base_image.sh --check; then
  command -v mmdebstrap >/dev/null || apt_install mmdebstrap
  bash tools/sam_local/base_image.sh
  # The image it replaced, if any, is dangling now: remove it, in a daemon of our own only.
  [[ -z $started_daemon ]] || docker image prune --force >/dev/null
fi

log "sam build --config-env local-x86_64 (x86_64 wheels, the fixture model in the layer)"
ARCH=x86_64 MODEL_ARCHIVE=$FIXTURE_ARCHIVE MODEL_ARCHIVE_SHA256=$(cut -c1-64 "$FIXTURE_ARCHIVE.sha256") \
  "$SAM" build --config-env local-x86_64 >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; die "sam build failed"; }
# A build without ARCH=x86_64 would only fail at import inside the container: say so here instead.
onnxruntime=$(compgen -G "$BUILD_DIR/RerankFunction/onnxruntime/capi/onnxruntime_pybind11_state.cpython-313-*.so")
[[ $(od -An -tx1 -j18 -N2 "$onnxruntime" | tr -d ' \n') == 3e00 ]] \
  || die "$BUILD_DIR holds a build for another architecture: build with ARCH=x86_64"

log "tests/sam_local (sam local invoke, sam local start-api; SAM: $SAM_LOCAL_COMMAND)"
.venv/bin/python -m pytest -q -p no:cacheprovider tests/sam_local "$@"
