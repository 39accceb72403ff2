"""One direct Lambda Invoke of lambda_handler in a fresh process, answered as the Lambda Invoke API answers it.

    python -m tools.invoke_direct < payload.json

Reads the invoke payload (any JSON value) from stdin and prints one JSON object to stdout:
``{"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": <what the function returned>}``, or, when the
function raised, ``"FunctionError": "Unhandled"`` and the error document the Python runtime sends
(``{"errorMessage", "errorType", "requestId", "stackTrace"}``, built by awslambdaric, the real runtime client):
``errorType`` is the raised class's name, which Step Functions matches in Retry / Catch.

Each run is a new execution environment (init included), configured by the environment as Lambda's would be
(MODEL_DIR, MODEL_S3_URI, ...; defaults from tools.invoke). Logs and EMF metrics go to stderr.
Exit code 0 whenever the function ran (a function error is an answer, not a failure of this tool); 2 when stdin
is not JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import uuid
from typing import Any

from tools.invoke import HANDLER_DIR, LocalContext, local_environment

EXECUTED_VERSION = "$LATEST"


def invoke(payload: Any, request_id: str) -> dict[str, Any]:
    """Init (import the handler module) and one invoke, as the runtime does them; the Invoke API's answer."""
    from awslambdaric.bootstrap import build_fault_result, to_json  # the runtime's own encoders

    from reranker.app import lambda_handler

    try:
        result = json.loads(to_json(lambda_handler(payload, LocalContext(request_id=request_id))))
    except Exception:  # noqa: BLE001 - whatever escapes the handler is the function error, as in Lambda
        raised_type, raised, trace = sys.exc_info()
        # Lambda's trace starts in the function's code: leave out this frame, as the runtime leaves out its own.
        error = build_fault_result((raised_type, raised, trace.tb_next if trace else None), None)
        error["requestId"] = request_id
        return {
            "StatusCode": 200,
            "FunctionError": "Unhandled",
            "ExecutedVersion": EXECUTED_VERSION,
            "Payload": error,
        }
    return {"StatusCode": 200, "ExecutedVersion": EXECUTED_VERSION, "Payload": result}


def main() -> int:
    try:
        payload = json.load(sys.stdin)
    except ValueError as exc:
        print(f"stdin is not a JSON payload: {exc}", file=sys.stderr)
        return 2
    os.environ.update(local_environment(None))
    if str(HANDLER_DIR) not in sys.path:
        sys.path.insert(0, str(HANDLER_DIR))  # like Lambda's /var/task
    request_id = str(uuid.uuid4())
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the answer
        answer = invoke(payload, request_id)
    print(json.dumps(answer, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
