"""Write (or --check) handler/requirements.txt: the Lambda's runtime packages, pinned with hashes from uv.lock.

The function build installs this file with `pip install --no-deps`, so it must be the complete closure of what
the function imports, and nothing more. Left out on purpose:
  boto3, botocore, s3transfer, urllib3, python-dateutil, six   provided by the python3.13 Lambda runtime
  huggingface-hub and its dependencies (hf-xet, httpx2, fsspec, tqdm, pyyaml, ...)
                                                               tokenizers needs them only for from_pretrained
  flatbuffers, packaging, protobuf                             onnxruntime's tooling, not its inference API
`tools/check_stack.sh` proves the closure: it installs this file alone and serves an event with it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = REPO / "handler" / "requirements.txt"
RUNTIME_PACKAGES = (
    "aws-lambda-powertools",
    "aws-xray-sdk",  # Powertools Tracer (Tracing: Active)
    "jmespath",  # Powertools Logger imports it
    "numpy",
    "onnxruntime",
    "tokenizers",
    "typing-extensions",  # Powertools
    "wrapt",  # aws-xray-sdk
)
HEADER = """\
# Runtime packages of the Lambda function, installed by handler/Makefile with pip --no-deps --require-hashes.
# Generated from uv.lock by `python -m tools.runtime_requirements`; do not edit (CI checks it is current).
"""


def exported_lock(uv: str, python: str) -> str:
    command = [uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-header", "--quiet"]
    result = subprocess.run(
        [*command, "--python", python], capture_output=True, text=True, check=True, cwd=REPO
    )
    return result.stdout


def select_packages(exported: str, wanted: tuple[str, ...]) -> str:
    """Keep the requirement blocks (a `name==version` line and its `--hash` continuations) of wanted names."""
    blocks: list[list[str]] = []
    for line in exported.splitlines():
        if line.startswith(" ") and blocks:
            blocks[-1].append(line)
        elif line and not line.startswith("#"):
            blocks.append([line])
    kept = [block for block in blocks if block[0].split("==")[0].strip() in wanted]
    found = {block[0].split("==")[0].strip() for block in kept}
    missing = sorted(set(wanted) - found)
    if missing:
        raise SystemExit(f"uv.lock has no runtime package named {', '.join(missing)}")
    return HEADER + "".join("\n".join(block) + "\n" for block in kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail if handler/requirements.txt is stale")
    parser.add_argument("--uv", default=os.environ.get("UV", str(REPO / ".tools" / "uv" / "bin" / "uv")))
    parser.add_argument("--python", default=os.environ.get("UV_PYTHON", sys.executable))
    args = parser.parse_args(argv)
    wanted = select_packages(exported_lock(args.uv, args.python), RUNTIME_PACKAGES)
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != wanted:
            print(
                f"{TARGET.relative_to(REPO)} is stale: run python -m tools.runtime_requirements",
                file=sys.stderr,
            )
            return 1
        return 0
    TARGET.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
