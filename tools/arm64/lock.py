"""Write (or --check) tools/arm64/*.txt: what the emulated arm64 checks add to the function package.

The versions and hashes come from uv.lock, so the arm64 checks run the FlashRank and the Runtime Interface
Client that the x86_64 tests run. tools/arm64/setup.sh installs each file as aarch64 wheels into a folder of
its own with `pip install --no-deps`, so each is the complete closure of what it adds beyond the function
package: numpy, onnxruntime and tokenizers are left out on purpose (FlashRank is measured on the package's own
wheels), and the runtime folder holds only what Lambda's /var/runtime holds.

    python -m tools.arm64.lock [--check]    (UV and UV_PYTHON as ./dev sets them)
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCKS = {
    # FlashRank (pure Python) and what it imports at module level besides numpy, onnxruntime and tokenizers.
    "flashrank": ("flashrank", "requests", "certifi", "charset-normalizer", "idna", "urllib3", "tqdm"),
    # Lambda's /var/runtime: the Runtime Interface Client and what it imports.
    "runtime": ("awslambdaric", "simplejson", "snapshot-restore-py"),
}
HEADER = """\
# Installed as aarch64 wheels into .tools/arm64/{name} by tools/arm64/setup.sh (pip --no-deps --require-hashes).
# Generated from uv.lock by `python -m tools.arm64.lock`; do not edit (tests/arm64 checks it is current).
"""


def lock_path(name: str) -> Path:
    return REPO / "tools" / "arm64" / f"{name}.txt"


def exported_lock(uv: str, python: str) -> str:
    command = [uv, "export", "--frozen", "--all-groups", "--no-emit-project", "--no-header", "--no-annotate"]
    result = subprocess.run(
        [*command, "--quiet", "--python", python], capture_output=True, text=True, check=True, cwd=REPO
    )
    return result.stdout


def lock_text(exported: str, name: str) -> str:
    """The requirement blocks (a `name==version` line and its `--hash` lines) of one lock, in its order."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in exported.splitlines():
        if line.startswith(" ") and current is not None:
            current.append(line)
        elif line and not line.startswith("#"):
            current = [line]
            blocks[line.split("==")[0].split(";")[0].strip()] = current
        else:
            current = None
    packages = LOCKS[name]
    missing = [package for package in packages if package not in blocks]
    if missing:
        raise SystemExit(f"uv.lock has no package named {', '.join(missing)}")
    return HEADER.format(name=name) + "".join("\n".join(blocks[package]) + "\n" for package in packages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is not current")
    arguments = parser.parse_args()
    uv = os.environ.get("UV", str(REPO / ".tools" / "uv" / "bin" / "uv"))
    python = os.environ.get("UV_PYTHON") or "3.13"
    exported = exported_lock(uv, python)
    for name in LOCKS:
        target, wanted = lock_path(name), lock_text(exported, name)
        if not arguments.check:
            target.write_text(wanted, encoding="utf-8")
        elif not target.is_file() or target.read_text(encoding="utf-8") != wanted:
            raise SystemExit(f"{target.relative_to(REPO)} is out of date: run python -m tools.arm64.lock")


if __name__ == "__main__":
    main()
