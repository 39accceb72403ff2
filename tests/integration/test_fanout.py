"""Exact fan-out end to end: the coordinator in-process, its workers real handler processes behind the local
Lambda Invoke stand-in (botocore's own client, redirected by AWS_ENDPOINT_URL_LAMBDA).

Every answer with fan-out must equal the answer without it, bit for bit (scores, order, flags), whatever
becomes of the workers: answered, cold, throttled, failed or too slow.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from reranker.errors import DeadlineExceeded
from tests.conftest import BASE_ENV
from tests.handler_processes import HandlerProcesses
from tests.lambda_invoke_api import invoke_api
from tests.loopback import serving
from tests.models import FAMILY_NAMES, fixture_model
from tools.invoke import LocalContext

pytestmark = pytest.mark.xdist_group("fanout")

FUNCTION = "reranker-fanout"
ARN = f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}"
# Cost and target such that the request below asks for more shards than there are workers (so 3 shards).
# The cost per token pinned (not learned), so that every request of these tests splits the same way.
FANOUT_ENV = {
    "FANOUT_MAX_WORKERS": "2",
    "FANOUT_TARGET_MS": "50",
    "FANOUT_TOKEN_COST_US": "1000",
    "FANOUT_MEASURE_TOKEN_COST": "false",
}
FUNCTIONS: dict[str, Any] = {}


@pytest.fixture(scope="module")
def invoke_endpoint() -> Iterator[str]:
    with serving(invoke_api(FUNCTIONS, timeout_ms=30_000)) as address, pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://{address}")
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        yield address


@pytest.fixture
def workers(invoke_endpoint: str) -> Iterator[Callable[..., HandlerProcesses]]:
    started: list[HandlerProcesses] = []

    def start(environment: dict[str, str], size: int = 2, delay_seconds: float = 0.0) -> HandlerProcesses:
        environment = {**BASE_ENV, "MODEL_DIR": str(fixture_model()), **environment}
        pool = HandlerProcesses(environment, size, delay_seconds=delay_seconds)
        FUNCTIONS[ARN] = pool
        started.append(pool)
        return pool

    yield start
    FUNCTIONS.clear()
    for pool in started:
        pool.stop()


def request(passages: int = 12) -> dict[str, Any]:
    words = ["airship", "zeppelin", "harbour", "meadow", "lantern", "glacier", "violin", "copper"]
    texts = [
        {
            "id": f"p{index}",
            "text": " ".join(words[(index + step) % len(words)] for step in range(3 + 2 * index)),
        }
        for index in range(passages)
    ]
    return {"query": "zeppelin over the harbour", "passages": texts}


def invoke(app: ModuleType, event: dict[str, Any], timeout_ms: int = 30_000) -> Any:
    return app.lambda_handler(
        copy.deepcopy(event), LocalContext(timeout_ms=timeout_ms, function_name=FUNCTION)
    )


def without_fanout_usage(answer: dict[str, Any]) -> dict[str, Any]:
    answer = copy.deepcopy(answer)
    answer["usage"].pop("fanout", None)
    return answer


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_fanned_out_answer_equals_the_unsplit_one_for_every_family(
    configure: Callable[..., ModuleType], workers: Callable[..., HandlerProcesses], family: str
) -> None:
    # Given the answer one invocation gives, and cold workers of the same model
    model = {"MODEL_DIR": str(fixture_model("int8", family))}
    body = request()
    expected = invoke(configure(**model), body)
    pool = workers({**model, **FANOUT_ENV})

    # When the same request is fanned out (twice: the workers' cold start, then warm)
    app = configure(**model, **FANOUT_ENV)
    cold, warm = invoke(app, body), invoke(app, body)

    # Then scores, order and usage are the same bit for bit, and the shards are reported
    assert without_fanout_usage(cold) == expected
    assert without_fanout_usage(warm) == expected
    assert cold["usage"]["fanout"]["shards"] == 3
    assert cold["usage"]["fanout"]["workers"] == 2
    assert cold["usage"]["fanout"]["local_fallbacks"] == 0
    assert pool.invokes == 4  # two workers per request: a shard is never split again
    assert "fanout" not in expected["usage"]


def test_throttled_worker_shard_is_scored_locally(
    configure: Callable[..., ModuleType],
    workers: Callable[..., HandlerProcesses],
    output: Callable[[], tuple[str, list[dict[str, Any]]]],
) -> None:
    body = request()
    expected = invoke(configure(), body)
    pool = workers(FANOUT_ENV, size=1)  # reserved concurrency 1: the second concurrent invoke is throttled
    output()

    answer = invoke(configure(**FANOUT_ENV), body)

    assert without_fanout_usage(answer) == expected
    assert pool.throttles == 1
    assert answer["usage"]["fanout"]["worker_errors"] == 1
    assert answer["usage"]["fanout"]["local_fallbacks"] == 1
    metrics = next(line for line in output()[1] if "FanoutShards" in line)
    counts = [metrics[name] for name in ("FanoutShards", "FanoutWorkerErrors", "FanoutThrottles")]
    assert counts == [[3.0], [1.0], [1.0]]
    assert metrics["FanoutLocalFallbacks"] == [1.0]


def test_failing_worker_is_never_the_callers_error(
    configure: Callable[..., ModuleType], workers: Callable[..., HandlerProcesses]
) -> None:
    body = request()
    expected = invoke(configure(), body)
    workers({**FANOUT_ENV, "MODEL_DIR": "/nonexistent-model"})  # every worker answers ModelUnavailable

    answer = invoke(configure(**FANOUT_ENV), body)

    assert without_fanout_usage(answer) == expected
    assert answer["usage"]["fanout"]["worker_errors"] == 2
    assert answer["usage"]["fanout"]["local_fallbacks"] == 2


def test_slow_worker_past_its_slice_is_scored_locally(
    configure: Callable[..., ModuleType], workers: Callable[..., HandlerProcesses]
) -> None:
    # Given workers that answer only after the coordinator's deadline (3 s, less the 500 ms margin)
    body = request()
    expected = invoke(configure(), body)
    workers(FANOUT_ENV, delay_seconds=6.0)

    # When the coordinator waits for them only as long as still leaves time to score their shards itself
    answer = invoke(configure(**FANOUT_ENV), body, timeout_ms=3_000)

    # Then it scores them locally in time, and the answer is unchanged
    assert without_fanout_usage(answer) == expected
    assert answer["usage"]["fanout"]["local_fallbacks"] == 2


def test_slow_worker_with_no_time_left_is_flagged_by_the_deadline_policy(
    configure: Callable[..., ModuleType], workers: Callable[..., HandlerProcesses]
) -> None:
    # Given shards estimated too costly to score locally in what is left, and workers that never answer in time
    slow = {**FANOUT_ENV, "FANOUT_TOKEN_COST_US": "100000", "FANOUT_TARGET_MS": "5000"}
    workers(slow, delay_seconds=6.0)
    body = request()

    # When the deadline comes, the coordinator's own shard is scored and the workers' are flagged unscored
    answer = invoke(configure(**slow), body, timeout_ms=2_000)
    flagged = [result for result in answer["results"] if result.get("reranked") is False]
    assert answer["usage"]["fanout"]["shards"] == 3
    assert 0 < len(flagged) < len(body["passages"])
    assert all(result["score"] is None for result in flagged)

    # And with DEADLINE_POLICY=error it is the deadline's error, not a worker's (fresh workers: the first ones
    # are still busy, and would be throttled, so scored locally in time)
    workers(slow, delay_seconds=6.0)
    with pytest.raises(DeadlineExceeded):
        invoke(configure(**slow, DEADLINE_POLICY="error"), body, timeout_ms=2_000)


def test_a_marked_shard_is_never_split_and_http_callers_cannot_mark(
    configure: Callable[..., ModuleType], workers: Callable[..., HandlerProcesses]
) -> None:
    pool = workers(FANOUT_ENV)
    app = configure(**FANOUT_ENV)

    answer = invoke(app, {**request(), "fanout_shard": True, "return_text": False})
    assert "fanout" not in answer["usage"]
    assert pool.invokes == 0

    response = invoke(
        app, http_event("/rerank", '{"query": "q", "passages": ["a", "b"], "fanout_shard": true}')
    )
    assert response["statusCode"] == 400
    assert "fanout_shard" in response["body"]


def test_batches_window_mode_and_tei_fan_out_exactly(
    configure: Callable[..., ModuleType], workers: Callable[..., HandlerProcesses]
) -> None:
    # Given a batch whose first item scores long passages in window mode, and a TEI body
    long_text = " ".join(["zeppelin harbour meadow lantern"] * 60)
    windowed = {**request(6), "long_documents": "window"}
    windowed["passages"] = [{"id": f"w{index}", "text": long_text[: 200 + 150 * index]} for index in range(6)]
    batch = {"requests": [windowed, request()]}
    tei_body = {"query": "zeppelin", "texts": [passage["text"] for passage in request()["passages"]]}
    tei = http_event("/rerank", json.dumps(tei_body))
    small = {"ENGINE_MAX_LENGTH": "64"}
    app = configure(**small)
    expected_batch, expected_tei = invoke(app, batch), invoke(app, tei)
    pool = workers({**FANOUT_ENV, **small})

    # When both are fanned out
    app = configure(**FANOUT_ENV, **small)
    answer_batch, answer_tei = invoke(app, batch), invoke(app, tei)

    # Then every item, and the TEI answer, is the unsplit one
    assert [without_fanout_usage(item) for item in answer_batch["responses"]] == expected_batch["responses"]
    assert all(item["usage"]["fanout"]["shards"] == 3 for item in answer_batch["responses"])
    assert expected_batch["responses"][0]["usage"]["windows"] > 6  # window mode did run several windows
    assert answer_tei == expected_tei
    assert pool.invokes == 6


def http_event(path: str, body: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": f"POST {path}",
        "rawPath": path,
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": path}},
        "body": body,
        "isBase64Encoded": False,
    }
