#!/usr/bin/env bash
# What `./dev arm64` runs the arm64 function package with, unpacked under .tools/arm64 without installing
# anything into the system but mmdebstrap itself:
#   sysroot/       Debian 13 (trixie) arm64: CPython 3.13 and the C/C++ runtime libraries the wheels link to
#   qemu-aarch64   QEMU 10's static user-mode emulator (trixie's qemu-user-static; bookworm's QEMU 7.2 crashes
#                  onnxruntime at import: its CPU detection reads the host's x86 /proc/cpuinfo)
#   flashrank/     tools/arm64/flashrank.txt as aarch64 wheels: FlashRank's pure-Python package and its imports
#                  (it runs on the function package's own onnxruntime, numpy and tokenizers)
#   runtime/       tools/arm64/runtime.txt: the Runtime Interface Client, as Lambda's /var/runtime holds it
#   bin/python3.13 the emulated interpreter: qemu-aarch64 -cpu neoverse-n1 (Graviton2, what Lambda arm64 runs
#                  on; QEMU's default `max` CPU emulates SME, whose emulation gives wrong int8 scores)
# Each part is rebuilt only when what it is made from changes, so a second run costs nothing.
#   bash tools/arm64/setup.sh
# Environment: PYTHON (a host CPython 3.13 with pip, default the pyenv 3.13.0 one), DEBIAN_MIRROR (default the
# first Debian mirror in apt's sources).
set -euo pipefail
cd "$(dirname "$0")/../.."

ROOT=$PWD/.tools/arm64
SUITE=trixie
SYSROOT_PACKAGES=python3.13,libstdc++6,libgcc-s1
CPU=neoverse-n1
PYTHON=${PYTHON:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/3.13.0/bin/python3.13}
# handler/Makefile's wheel tags for aarch64.
PLATFORMS=(--platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64
  --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64)

log() { printf '\033[1m[arm64]\033[0m %s\n' "$*" >&2; }

debian_mirror() { # the Debian archive apt already uses here (deb822 or one-line sources)
  if [[ -n ${DEBIAN_MIRROR:-} ]]; then
    echo "$DEBIAN_MIRROR"
    return
  fi
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

need_mmdebstrap() {
  command -v mmdebstrap >/dev/null && return
  if [[ $(id -u) != 0 ]]; then
    echo "mmdebstrap not found: install it (apt-get install mmdebstrap) and run again" >&2
    exit 1
  fi
  log "installing mmdebstrap (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends mmdebstrap >/dev/null
}

# unpack ARCH PACKAGES DIR: Debian packages extracted (not installed: no maintainer scripts) into DIR; the
# name and version of every package unpacked go to DIR.versions.
unpack() {
  local arch=$1 packages=$2 dir=$3
  mmdebstrap --quiet --arch="$arch" --variant=extract --include="$packages" \
    --extract-hook='ls "$1/var/cache/apt/archives" >"$1/.debs"' \
    "$SUITE" "$dir" "$(debian_mirror)"
  sed -nE '/\.deb$/ { s/_[^_]+\.deb$//; s/_/ /; s/%3a/:/; p }' "$dir/.debs" >"$dir.versions"
  rm "$dir/.debs"
}

debian_stamp=$(printf '%s\n' "$SUITE" "$SYSROOT_PACKAGES" "$CPU" "$(declare -f unpack)" | sha256sum | cut -c1-64)
if [[ $(cat "$ROOT/.debian-sha256" 2>/dev/null) != "$debian_stamp" ]]; then
  need_mmdebstrap
  log "unpacking Debian $SUITE's arm64 CPython 3.13 and QEMU's qemu-aarch64 into .tools/arm64 (once)"
  rm -rf "$ROOT"
  mkdir -p "$ROOT/unpack"
  unpack arm64 "$SYSROOT_PACKAGES" "$ROOT/unpack/sysroot" &
  sysroot_pid=$!
  unpack amd64 qemu-user-static "$ROOT/unpack/qemu"
  wait "$sysroot_pid"
  # The loader and libraries are looked up at /lib/...: the merged-/usr links a trixie system has.
  for link in bin sbin lib; do
    [[ -e $ROOT/unpack/sysroot/$link ]] || ln -s "usr/$link" "$ROOT/unpack/sysroot/$link"
  done
  mv "$ROOT/unpack/sysroot" "$ROOT/sysroot"
  mv "$ROOT/unpack/qemu/usr/bin/qemu-aarch64" "$ROOT/qemu-aarch64"
  cat "$ROOT/unpack/sysroot.versions" <(grep '^qemu-user' "$ROOT/unpack/qemu.versions") >"$ROOT/versions.txt"
  rm -rf "$ROOT/unpack"
  mkdir -p "$ROOT/bin"
  cat >"$ROOT/bin/python3.13" <<EOF
#!/bin/sh
# The arm64 CPython 3.13 of $SUITE under QEMU user-mode emulation of a Graviton2 CPU ($CPU).
root=\$(dirname "\$(dirname "\$(readlink -f "\$0")")")
exec "\$root/qemu-aarch64" -L "\$root/sysroot" -cpu $CPU "\$root/sysroot/usr/bin/python3.13" "\$@"
EOF
  chmod +x "$ROOT/bin/python3.13"
  echo "$debian_stamp" >"$ROOT/.debian-sha256"
fi

for name in flashrank runtime; do
  lock=tools/arm64/$name.txt
  stamp=$(printf '%s\n' "${PLATFORMS[@]}" | cat - "$lock" | sha256sum | cut -c1-64)
  [[ $(cat "$ROOT/$name/.lock-sha256" 2>/dev/null) == "$stamp" ]] && continue
  log "installing $lock as aarch64 wheels into .tools/arm64/$name"
  rm -rf "${ROOT:?}/$name"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
    --require-hashes --only-binary=:all: --implementation cp --python-version 3.13 "${PLATFORMS[@]}" \
    --target "$ROOT/$name" -r "$lock"
  echo "$stamp" >"$ROOT/$name/.lock-sha256"
done
