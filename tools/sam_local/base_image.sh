#!/usr/bin/env bash
# Builds, without pulling anything, the image `sam local` runs python3.13 x86_64 functions in: the name SAM
# derives for that runtime and architecture (public.ecr.aws/lambda/python:3.13-x86_64), with the layout of
# Lambda's own base image where the function can see it:
#   /var/lang/bin/python3.13          Debian 13's CPython 3.13 (Lambda's is built by AWS on Amazon Linux 2023)
#   /var/runtime                      awslambdaric, the Runtime Interface Client, at the version uv.lock pins
#   /var/runtime/bootstrap            what the Runtime Interface Emulator starts: python3.13 -m awslambdaric
#   /var/task, /opt, /tmp             function code, layers (SAM mounts both), scratch
#   /lambda-entrypoint.sh             the base image's entry point (SAM replaces it with the emulator)
# The emulator itself is not in the image: SAM copies the one shipped in its own package on top.
#
# Debian's packages (python3.13; libstdc++6 for numpy and onnxruntime; ca-certificates for HTTPS to S3; dash and
# coreutils for the scripts and for the `RUN mv/chmod` of the image SAM builds on top) are unpacked by
# mmdebstrap from the Debian mirror apt already uses.
# The image is rebuilt only when this script or the pinned awslambdaric changes (its label holds a hash).
#   bash tools/sam_local/base_image.sh [--check]   (DOCKER_HOST names the daemon; .venv must exist)
# --check: exit 0 if the image is current, 1 if it would be built.
# Environment: DEBIAN_MIRROR (default: apt's own Debian mirror), DEBIAN_SUITE (default trixie).
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=public.ecr.aws/lambda/python:3.13-x86_64
LABEL=io.github.lambda-reranker.base-image
SUITE=${DEBIAN_SUITE:-trixie}
PACKAGES=python3.13,libstdc++6,ca-certificates,dash,coreutils
# The Runtime Interface Client and what it imports, copied from .venv (uv.lock pins all three).
RUNTIME_DISTRIBUTIONS=(awslambdaric simplejson snapshot-restore-py)

log() { printf '\033[1m[sam-local]\033[0m %s\n' "$*" >&2; }

runtime_versions=$(.venv/bin/python -c '
import importlib.metadata as metadata, sys
print(" ".join(f"{name}=={metadata.version(name)}" for name in sys.argv[1:]))' "${RUNTIME_DISTRIBUTIONS[@]}")
key=$( (cat "$0"; echo "$SUITE $PACKAGES $runtime_versions") | sha256sum | cut -c1-16)
if label=$(docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null); then
  if [[ $label == "$key" ]]; then
    log "base image $IMAGE is current ($key)"
    exit 0
  elif [[ -z $label || $label == "<no value>" ]]; then
    log "using $IMAGE as the daemon has it (not built here: AWS's own image, presumably)"
    exit 0
  fi
fi
[[ ${1:-} != --check ]] || exit 1

if [[ -z ${DEBIAN_MIRROR:-} ]]; then
  DEBIAN_MIRROR=$(apt-get indextargets --format '$(REPO_URI)' | grep -m1 '/debian/$' || true)
  [[ -n $DEBIAN_MIRROR ]] || { echo "no Debian mirror in apt's sources: set DEBIAN_MIRROR" >&2; exit 1; }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sam-local-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
log "unpacking $PACKAGES from $SUITE ($DEBIAN_MIRROR) for $IMAGE"
mmdebstrap --quiet --variant=extract --include="$PACKAGES" "$SUITE" "$root" "$DEBIAN_MIRROR" >"$work/mmdebstrap.log" 2>&1 \
  || { cat "$work/mmdebstrap.log" >&2; exit 1; }

# extract unpacks files only: add the merged-/usr links and the shell that maintainer scripts would have made.
for dir in bin sbin lib; do [[ -e $root/$dir ]] || ln -s "usr/$dir" "$root/$dir"; done
[[ -e $root/lib64 ]] || ln -s usr/lib64 "$root/lib64"
ln -sf dash "$root/usr/bin/sh"
mkdir -p "$root/var/lang/bin" "$root/var/runtime" "$root/var/task" "$root/opt" "$root/proc" "$root/sys"
chmod 1777 "$root/tmp"
for name in python3.13 python3 python; do ln -sf /usr/bin/python3.13 "$root/var/lang/bin/$name"; done

.venv/bin/python - "$root/var/runtime" "${RUNTIME_DISTRIBUTIONS[@]}" <<'EOF'
"""Copy installed distributions file by file (their RECORD), as pip --target would lay them out."""
import importlib.metadata as metadata
import shutil
import sys
from pathlib import Path

target = Path(sys.argv[1])
for name in sys.argv[2:]:
    for file in metadata.distribution(name).files or []:
        source = Path(str(file.locate()))
        if source.is_file() and "__pycache__" not in file.parts and not str(file).startswith(".."):
            (target / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / file)
EOF

cat >"$root/var/runtime/bootstrap" <<'EOF'
#!/bin/sh
# Started by the Runtime Interface Emulator with _HANDLER and AWS_LAMBDA_RUNTIME_API set.
export PYTHONPATH="/var/runtime${PYTHONPATH:+:$PYTHONPATH}"
exec /var/lang/bin/python3.13 -m awslambdaric "$_HANDLER"
EOF
cat >"$root/lambda-entrypoint.sh" <<'EOF'
#!/bin/sh
# Like Lambda's base images: the handler is the only argument; outside Lambda the emulator (which SAM
# copies to /var/rapid) serves the runtime.
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" >&2
  exit 142
fi
export _HANDLER="$1"
if [ -z "${AWS_LAMBDA_RUNTIME_API:-}" ] && [ -x /var/rapid/aws-lambda-rie ]; then
  exec /var/rapid/aws-lambda-rie /var/runtime/bootstrap
fi
exec /var/runtime/bootstrap
EOF
chmod 755 "$root/var/runtime/bootstrap" "$root/lambda-entrypoint.sh"
.venv/bin/python -m compileall -q -j 0 "$root/var/runtime" >/dev/null

log "importing $IMAGE"
tar -C "$root" --numeric-owner -cf - . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV TZ=:/etc/localtime' \
  --change 'ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin:/opt/bin' \
  --change 'ENV LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib' \
  --change 'ENV LAMBDA_TASK_ROOT=/var/task' \
  --change 'ENV LAMBDA_RUNTIME_DIR=/var/runtime' \
  --change 'WORKDIR /var/task' \
  --change 'ENTRYPOINT ["/lambda-entrypoint.sh"]' \
  --change "LABEL $LABEL=$key" \
  - "$IMAGE" >/dev/null
log "built $IMAGE ($key)"
