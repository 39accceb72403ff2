"""Run an events/*.json file through lambda_handler in-process, like `sam local invoke -e`, and print the answer.

    python -m tools.invoke events/direct-rerank.json [--model-dir DIR] [--timeout-ms N]

Exit code 0 for a success, 1 for an error answer (HTTP status >= 400 or a raised error), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HANDLER_DIR = REPO / "handler"
FIXTURE_MODEL_DIR = REPO / ".fixtures" / "int8" / "ms-marco-TinyBERT-L-2-v2"
FUNCTION_NAME = "reranker-local"
# Where `make -C layer build-ModelLayer` puts a real model in the hint below (.cache/ is git-ignored).
REAL_MODEL_HINT_DIR = ".cache/layer"


class LocalContext:
    """The parts of Lambda's context object the handler and Powertools read."""

    def __init__(
        self,
        *,
        timeout_ms: int = 30_000,
        memory_mb: int = 2048,
        function_name: str = FUNCTION_NAME,
        request_id: str | None = None,
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def local_environment(model_dir: Path | None) -> dict[str, str]:
    """Defaults for a run outside Lambda; anything already set in the environment wins."""
    defaults = {
        "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here, and no aws_xray_sdk import cost
        "POWERTOOLS_SERVICE_NAME": "reranker",
        "POWERTOOLS_METRICS_NAMESPACE": "Reranker",
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
        "AWS_REGION": "us-east-1",
    }
    environment = {name: os.environ.get(name, value) for name, value in defaults.items()}
    if model_dir is not None:
        environment["MODEL_DIR"] = str(model_dir)
    elif not os.environ.get("MODEL_DIR") and not os.environ.get("MODEL_S3_URI"):
        layer_root = Path(os.environ.get("MODEL_LAYER_ROOT", "/opt/models"))
        if not layer_root.is_dir():
            environment["MODEL_DIR"] = str(FIXTURE_MODEL_DIR)
    return environment


def fixture_notice(model_dir: str | Path | None, command: str) -> str | None:
    """A warning for stderr when the model is one tools/fixture_model generated (its config.json says so)."""
    if not model_dir:
        return None
    if str(HANDLER_DIR) not in sys.path:
        sys.path.insert(0, str(HANDLER_DIR))
    from reranker.model_files import is_generated_fixture

    directory = Path(model_dir)
    if not is_generated_fixture(directory):
        return None
    return (
        f"note: the model in {_shown(directory)} is a generated test fixture with random weights: its scores "
        "mean nothing.\n"
        "  For a real FlashRank model, build the model layer (layer/README.md): it downloads and verifies the "
        "pinned archive\n"
        "  (offline: set MODEL_ARCHIVE and MODEL_ARCHIVE_SHA256 to a FlashRank zip), then pass its folder:\n"
        f'    make -C layer build-ModelLayer ARTIFACTS_DIR="$PWD/{REAL_MODEL_HINT_DIR}"\n'
        f"    {command} --model-dir {REAL_MODEL_HINT_DIR}/models/ms-marco-TinyBERT-L-2-v2"
    )


def _shown(path: Path) -> str:
    """The path relative to the working directory when it lies under it (shorter, and no machine paths)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def is_error(response: Any) -> bool:
    return (
        isinstance(response, dict)
        and isinstance(response.get("statusCode"), int)
        and response["statusCode"] >= 400
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.invoke", description=__doc__.splitlines()[0])
    parser.add_argument("event", type=Path, help="an events/*.json file")
    parser.add_argument(
        "--model-dir", type=Path, help="a FlashRank model directory (default: the fixture model)"
    )
    parser.add_argument(
        "--timeout-ms", type=int, default=30_000, help="the context's remaining time at start"
    )
    args = parser.parse_args(argv)
    try:
        event = json.loads(args.event.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"cannot read event {args.event}: {exc}", file=sys.stderr)
        return 2
    os.environ.update(local_environment(args.model_dir))
    if str(HANDLER_DIR) not in sys.path:
        sys.path.insert(0, str(HANDLER_DIR))  # like Lambda's /var/task

    context = LocalContext(timeout_ms=args.timeout_ms)
    # Logs and EMF metrics go to stderr, so stdout is only the answer (pipe it to jq).
    with contextlib.redirect_stdout(sys.stderr):
        from reranker.app import lambda_handler
        from reranker.errors import RerankerError

        try:
            response = lambda_handler(event, context)
        except RerankerError as exc:
            # What a direct invoker (Step Functions) receives: errorType is the class name.
            response = {"errorType": exc.error_type, "errorMessage": exc.public_message}
            failed = True
        else:
            failed = is_error(response)
    if isinstance(response, dict) and isinstance(response.get("body"), str):
        response = _with_parsed_body(response)
    print(json.dumps(response, indent=2, ensure_ascii=False))
    notice = fixture_notice(os.environ.get("MODEL_DIR"), f"./dev demo {args.event}")
    if notice:
        print(notice, file=sys.stderr)
    return 1 if failed else 0


def _with_parsed_body(response: dict[str, Any]) -> dict[str, Any]:
    """Show an HTTP body as JSON rather than as one escaped string."""
    shown = dict(response)
    with contextlib.suppress(TypeError, ValueError):
        shown["body"] = json.loads(response["body"])
    return shown


if __name__ == "__main__":
    sys.exit(main())
