"""Real handler processes behind the local Lambda Invoke stand-in: one execution environment per process.

Each process imports ``reranker.app`` (Lambda's init) on its first invoke (a cold start) and then serves one
invoke at a time over a pipe; ``HandlerProcesses`` is a function of the stand-in (tests.lambda_invoke_api)
whose concurrency is its number of processes: an invoke that finds every one busy is throttled (429
TooManyRequestsException), as Lambda throttles past a function's reserved concurrency. ``delay_seconds``
holds every invoke that long before it runs (a slow or stuck worker).

    python -m tests.handler_processes   # the process side: JSON lines in on stdin, answers out on stdout
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tests.lambda_invoke_api import THROTTLED, InvokeApiError
from tests.models import REPO

PIN_VARIABLE = "HANDLER_PROCESS_CORES"  # the process pins itself there before it imports anything heavy
ANSWER_PREFIX = "@@invoke-answer@@ "  # stdout also carries the handler's JSON logs and EMF lines


class FunctionError(Exception):
    """What the function raised in its process; the stand-in reports it as Lambda's Unhandled error."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type, self.public_message = error_type, message


class HandlerProcess:
    """One execution environment: started on its first invoke, then warm."""

    def __init__(self, environment: Mapping[str, str], cores: Sequence[int] | None = None) -> None:
        self.environment = dict(environment)
        self.cores = list(cores) if cores is not None else None  # pinned there (benchmarks), else anywhere
        self.process: subprocess.Popen[str] | None = None
        self.invokes = 0

    def invoke(self, event: Any, timeout_ms: int, function_arn: str) -> Any:
        if self.process is None:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.handler_processes"],
                cwd=REPO,
                env={
                    **os.environ,
                    "PYTHONPATH": f"{REPO / 'handler'}{os.pathsep}{REPO}",
                    **self.environment,
                    **({PIN_VARIABLE: ",".join(map(str, self.cores))} if self.cores else {}),
                },
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        assert self.process.stdin is not None and self.process.stdout is not None
        request = {"event": event, "timeout_ms": timeout_ms, "arn": function_arn}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        self.invokes += 1
        for line in self.process.stdout:
            if line.startswith(ANSWER_PREFIX):
                reply = json.loads(line[len(ANSWER_PREFIX) :])
                if "error" in reply:
                    raise FunctionError(reply["error"]["errorType"], reply["error"]["errorMessage"])
                return reply["answer"]
        raise FunctionError("Runtime.ExitError", f"the handler process exited with {self.process.wait()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


class HandlerProcesses:
    """A function of the Invoke stand-in backed by ``size`` handler processes (its reserved concurrency)."""

    def __init__(
        self,
        environment: Mapping[str, str],
        size: int = 1,
        *,
        delay_seconds: float = 0.0,
        cores: Sequence[Sequence[int]] | None = None,
    ) -> None:
        """``cores``: per process, the cores it is pinned to (the first process is taken first)."""
        pins: list[Sequence[int] | None] = list(cores) if cores is not None else [None] * size
        self.idle = [HandlerProcess(environment, pin) for pin in reversed(pins[:size])]
        self.all = list(self.idle)
        self.delay_seconds = delay_seconds
        self.throttles = 0
        self._lock = threading.Lock()

    def __call__(self, event: Any, context: Any) -> Any:
        with self._lock:
            if not self.idle:
                self.throttles += 1
                raise InvokeApiError(*THROTTLED)
            process = self.idle.pop()
        try:
            time.sleep(self.delay_seconds)
            return process.invoke(event, context.get_remaining_time_in_millis(), context.invoked_function_arn)
        finally:
            with self._lock:
                self.idle.append(process)

    @property
    def invokes(self) -> int:
        return sum(process.invokes for process in self.all)

    def stop(self) -> None:
        for process in self.all:
            process.stop()


def main() -> None:
    """The process side: import the handler (init), then answer one JSON request per line."""
    if os.environ.get(PIN_VARIABLE):
        os.sched_setaffinity(0, [int(core) for core in os.environ[PIN_VARIABLE].split(",")])
    from reranker import app
    from tools.invoke import LocalContext

    for line in sys.stdin:
        request = json.loads(line)
        name = request["arn"].split(":")[6]
        context = LocalContext(timeout_ms=request["timeout_ms"], function_name=name)
        context.invoked_function_arn = request["arn"]
        try:
            answer = app.lambda_handler(request["event"], context)
            reply: dict[str, Any] = {"answer": json.loads(answer) if isinstance(answer, bytes) else answer}
        except Exception as exc:  # reported as Lambda reports a function's error
            error_type = getattr(exc, "error_type", type(exc).__name__)
            message = getattr(exc, "public_message", str(exc))
            reply = {"error": {"errorType": error_type, "errorMessage": message}}
        print(ANSWER_PREFIX + json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
