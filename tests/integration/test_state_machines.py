"""The example state machines, validated and executed: asl-validator on both definitions, then
aws-local-stepfunctions running them with every lambda:invoke Task wired to the real lambda_handler.

tests/statemachine/run.mjs plays Step Functions' lambda:invoke integration in front of tools/invoke_direct.py,
which runs lambda_handler in a fresh process (a new execution environment) and answers as the Lambda Invoke
API does: errorType is the raised class name, so Retry / Catch match exactly what they match on AWS. A model
failure is produced the way it happens on Lambda: that execution environment starts with a broken model
setting (MODEL_DIR pointing nowhere), and the handler answers ModelUnavailable.

The Distributed Map parent cannot run here (aws-local-stepfunctions has no ItemReader, ItemBatcher or
ResultWriter); its child workflow (ItemProcessor) runs on the batch that ItemBatcher hands it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from tests.conftest import BASE_ENV
from tests.events import load_event, run

REPO = Path(__file__).resolve().parents[2]
STATEMACHINE_DIR = REPO / "statemachine"
NODE_PROJECT = REPO / "tests" / "statemachine"
NODE_BIN = NODE_PROJECT / "node_modules" / ".bin"
RUNNER = NODE_PROJECT / "run.mjs"
INVOKE_COMMAND = [str(REPO / ".venv" / "bin" / "python"), "-m", "tools.invoke_direct"]
RUN_TIMEOUT_SECONDS = 120
# What CloudFormation puts in place of DefinitionSubstitutions (template.yaml), as a deployed stack would.
PLAUSIBLE_SUBSTITUTIONS = {
    "RerankFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:reranker-RerankFunction-AbCdEf012345:live",
    "BatchBucketName": "reranker-batch-example",
}
SUBSTITUTION = re.compile(r"\$\{([A-Za-z0-9]+)\}")
RAG = "rag-rerank.asl.json"
BATCH = "batch-rerank.asl.json"


# --- helpers -------------------------------------------------------------------------------------


def state_machine_resources() -> dict[str, dict[str, Any]]:
    """template.yaml's AWS::Serverless::StateMachine resources by logical id (cfn-lint reads the !Ref tags)."""
    template = cfn_yaml.loads((REPO / "template.yaml").read_text(encoding="utf-8"))
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::StateMachine"
    }


def substituted(file_name: str) -> dict[str, Any]:
    """The definition as deployed: every ${Name} replaced by a plausible value of its DefinitionSubstitution."""
    text = (STATEMACHINE_DIR / file_name).read_text(encoding="utf-8")
    return json.loads(SUBSTITUTION.sub(lambda match: PLAUSIBLE_SUBSTITUTIONS[match.group(1)], text))


def node_environment() -> dict[str, str]:
    """node_modules/.bin first on PATH: its node (22, what aws-local-stepfunctions needs) and asl-validator."""
    if (
        not (NODE_BIN / "asl-validator").exists()
        or not (NODE_PROJECT / "node_modules" / "aws-local-stepfunctions").is_dir()
    ):
        pytest.fail(f"{NODE_PROJECT}/node_modules is missing: run ./dev setup (it runs npm ci there)")
    return {**os.environ, "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["asl-validator", "--json-path", str(path)],
        env=node_environment(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )


def execute(
    definition: dict[str, Any],
    execution_input: Any,
    model_dir: Path,
    environments: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """One local execution; the report of run.mjs (status, output, error, cause, invocations, events).

    ``environments[n]`` changes the n-th invocation's execution environment (later ones get the default).
    Retry pauses are 0 ms: IntervalSeconds / BackoffRate / JitterStrategy are AWS's timing, not ours to wait for.
    """
    job = {
        "definition": definition,
        "input": execution_input,
        "invoke": {"command": INVOKE_COMMAND, "cwd": str(REPO), "environments": environments or []},
        "retryIntervalMs": 0,
        "timeoutMs": (RUN_TIMEOUT_SECONDS - 10) * 1000,
    }
    # The functions run with the environment the in-process handler of the other tests has (conftest.BASE_ENV).
    environment = {**node_environment(), **BASE_ENV, "MODEL_DIR": str(model_dir)}
    environment.pop("MODEL_S3_URI", None)
    completed = subprocess.run(
        ["node", str(RUNNER)],
        input=json.dumps(job),
        env=environment,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


def direct_answer(app: ModuleType, payload: Any) -> dict[str, Any]:
    """What the function answers to ``payload`` invoked directly (in this process), without Step Functions."""
    outcome = run(app, payload)
    assert outcome.status == 200, outcome
    answer: dict[str, Any] = outcome.body
    return answer


def history(report: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """The execution's event log as (event type, state, error)."""
    return [(event["type"], event.get("state"), event.get("error")) for event in report["events"]]


def retrier_for(state: dict[str, Any], error: str) -> dict[str, Any]:
    return next(retrier for retrier in state["Retry"] if error in retrier["ErrorEquals"])


@pytest.fixture
def broken_model(tmp_path: Path) -> dict[str, str]:
    """An execution environment whose model setting points nowhere: its init fails, every invoke is a 503."""
    return {"MODEL_DIR": str(tmp_path / "no-model-here")}


# --- the definitions as template.yaml deploys them -----------------------------------------------------


def test_every_substitution_variable_comes_from_the_template() -> None:
    resources = state_machine_resources()
    deployed = {properties["DefinitionUri"]: properties for properties in resources.values()}
    assert set(deployed) == {f"statemachine/{RAG}", f"statemachine/{BATCH}"}
    for uri, properties in deployed.items():
        used = set(SUBSTITUTION.findall((REPO / uri).read_text(encoding="utf-8")))
        assert used == set(properties.get("DefinitionSubstitutions", {})), uri
        assert used <= set(PLAUSIBLE_SUBSTITUTIONS), uri


def error_names(states: dict[str, Any]) -> set[str]:
    """Every name in a Retry or Catch ErrorEquals, nested Map / Parallel states included."""
    names: set[str] = set()
    for state in states.values():
        for handler in state.get("Retry", []) + state.get("Catch", []):
            names.update(handler["ErrorEquals"])
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            names |= error_names(processor["States"])
        for branch in state.get("Branches", []):
            names |= error_names(branch["States"])
    return names


@pytest.mark.parametrize("file_name", [RAG, BATCH])
def test_every_matched_error_is_one_the_function_can_raise(file_name: str) -> None:
    """An ErrorEquals name the function never reports is dead: errorType is always a public error type."""
    from reranker.errors import PUBLIC_ERRORS

    ours = {
        name
        for name in error_names(substituted(file_name)["States"])
        if not name.startswith(("Lambda.", "States."))
    }
    assert ours, file_name
    assert ours <= {error.__name__ for error in PUBLIC_ERRORS}


@pytest.mark.parametrize("file_name", [RAG, BATCH])
def test_asl_validator_accepts_the_deployed_definition(file_name: str, tmp_path: Path) -> None:
    path = tmp_path / file_name
    path.write_text(json.dumps(substituted(file_name)), encoding="utf-8")
    completed = validate(path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "is valid" in completed.stdout
    assert "${" not in path.read_text(encoding="utf-8")


def test_asl_validator_rejects_a_broken_definition(tmp_path: Path) -> None:
    """The validator is not a formality: a Catch that leads nowhere fails it."""
    definition = substituted(RAG)
    definition["States"]["Rerank"]["Catch"][0]["Next"] = "NoSuchState"
    path = tmp_path / "broken.asl.json"
    path.write_text(json.dumps(definition), encoding="utf-8")
    completed = validate(path)
    assert completed.returncode == 1, completed.stdout + completed.stderr


# --- the RAG state machine (Express): one rerank -------------------------------------------------------


def test_rag_success_passes_on_ids_and_scores(model_dir: Path, app: ModuleType) -> None:
    request = load_event("direct-rerank.json")  # top_k 3, return_text true, some passages with meta

    report = execute(substituted(RAG), request, model_dir)

    assert report["status"] == "SUCCEEDED", report
    [invocation] = report["invocations"]
    assert invocation["functionName"] == PLAUSIBLE_SUBSTITUTIONS["RerankFunctionArn"]
    # The function gets the caller's request with return_text forced off, and nothing else changed.
    assert invocation["payload"] == {**request, "return_text": False}
    answer = direct_answer(app, invocation["payload"])
    output = report["output"]
    assert output == {"model": answer["model"], "results": answer["results"]}
    assert len(output["results"]) == request.get("top_k", len(request["passages"]))
    passages_with_meta = {
        index
        for index, passage in enumerate(request["passages"])
        if isinstance(passage, dict) and "meta" in passage
    }
    for result in output["results"]:
        expected_keys = {"index", "id", "score"} | (
            {"meta"} if result["index"] in passages_with_meta else set()
        )
        assert set(result) == expected_keys, (
            result
        )  # never the text: Step Functions state is capped at 256 KB
        assert 0.0 <= result["score"] <= 1.0
    scores = [result["score"] for result in output["results"]]
    assert scores == sorted(scores, reverse=True)
    assert [event["type"] for event in report["events"]] == [
        "ExecutionStarted",
        "StateEntered",
        "StateExited",
        "ExecutionSucceeded",
    ]


@pytest.mark.parametrize(
    ("event_name", "error_type"),
    [("direct-bad-top-k.json", "InvalidRequest"), ("direct-too-many-passages.json", "PayloadTooLarge")],
)
def test_rag_catches_a_rejected_request_without_retrying(
    event_name: str, error_type: str, model_dir: Path
) -> None:
    report = execute(substituted(RAG), load_event(event_name), model_dir)

    assert report["status"] == "FAILED", report
    # The Fail state re-raises what the Catch stored in $.error: the function's errorType and its error document.
    assert report["error"] == error_type
    cause = json.loads(report["cause"])
    assert cause["errorType"] == error_type
    assert cause["errorMessage"]
    assert set(cause) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    [invocation] = report["invocations"]  # caught at once: a caller's mistake is never retried
    assert invocation["errorType"] == error_type
    assert history(report) == [
        ("ExecutionStarted", None, None),
        ("StateEntered", "Rerank", None),
        ("StateFailed", "Rerank", error_type),
        ("StateCaught", "Rerank", None),
        ("StateExited", "Rerank", None),
        ("StateEntered", "RequestRejected", None),
        ("StateFailed", "RequestRejected", error_type),
        ("ExecutionFailed", None, error_type),
    ]
    caught = next(event for event in report["events"] if event["type"] == "StateCaught")
    assert error_type in caught["caughtBy"]


def test_rag_retries_model_unavailable_then_succeeds(
    model_dir: Path, broken_model: dict[str, str], app: ModuleType
) -> None:
    request = load_event("direct-rerank.json")

    report = execute(substituted(RAG), request, model_dir, environments=[broken_model])

    assert report["status"] == "SUCCEEDED", report
    first, second = report["invocations"]
    assert first["errorType"] == "ModelUnavailable"
    assert first["environment"] == broken_model
    assert "errorType" not in second
    assert first["payload"] == second["payload"]
    assert history(report) == [
        ("ExecutionStarted", None, None),
        ("StateEntered", "Rerank", None),
        ("StateFailed", "Rerank", "ModelUnavailable"),
        ("StateRetried", "Rerank", None),
        ("StateExited", "Rerank", None),
        ("ExecutionSucceeded", None, None),
    ]
    retried = next(event for event in report["events"] if event["type"] == "StateRetried")
    assert retried["retryAttempt"] == 1
    answer = direct_answer(app, second["payload"])
    assert report["output"] == {"model": answer["model"], "results": answer["results"]}


def test_rag_gives_up_on_model_unavailable_after_max_attempts(
    model_dir: Path, broken_model: dict[str, str]
) -> None:
    definition = substituted(RAG)
    max_attempts = retrier_for(definition["States"]["Rerank"], "ModelUnavailable")["MaxAttempts"]

    report = execute(definition, load_event("direct-rerank.json"), model_dir, environments=[broken_model] * 5)

    assert report["status"] == "FAILED", report
    assert report["error"] == "ModelUnavailable"  # not caught: the caller's Step Functions sees the 503 kind
    assert len(report["invocations"]) == 1 + max_attempts
    assert [event["type"] for event in report["events"]].count("StateRetried") == max_attempts
    assert "StateCaught" not in [event["type"] for event in report["events"]]


# --- the batch state machine: Distributed Map ------------------------------------------------------------


def item_processor(definition: dict[str, Any]) -> dict[str, Any]:
    """The child workflow a Distributed Map runs per batch, as a state machine of its own."""
    processor = dict(definition["States"]["RerankEachRequest"]["ItemProcessor"])
    processor.pop("ProcessorConfig")
    return processor


def batcher_input(definition: dict[str, Any], items: list[Any]) -> dict[str, Any]:
    """What ItemBatcher hands each child execution: {"Items": [...], "BatchInput": <the definition's>}."""
    batcher = definition["States"]["RerankEachRequest"]["ItemBatcher"]
    assert len(items) <= batcher["MaxItemsPerBatch"]
    return {"Items": items, "BatchInput": batcher["BatchInput"]}


def test_batch_limits_fit_the_function() -> None:
    from reranker.config import Settings

    batcher = substituted(BATCH)["States"]["RerankEachRequest"]["ItemBatcher"]
    assert batcher["MaxItemsPerBatch"] <= Settings.max_batch_requests
    assert batcher["MaxInputBytesPerBatch"] <= 256 * 1024  # a child execution's input is Step Functions state


def test_batch_child_workflow_answers_every_item_in_place(model_dir: Path, app: ModuleType) -> None:
    definition = substituted(BATCH)
    items = load_event("distributed-map-items.json")["Items"]
    batch = batcher_input(definition, items)

    report = execute(item_processor(definition), batch, model_dir)

    assert report["status"] == "SUCCEEDED", report
    [invocation] = report["invocations"]
    assert invocation["payload"] == batch
    responses = report["output"]["responses"]
    assert report["output"] == {"responses": direct_answer(app, batch)["responses"]}
    assert len(responses) == len(items)
    assert responses[2]["error"]["type"] == "InvalidRequest"  # one bad item does not fail the batch
    for response in responses[:2]:
        assert response["results"]
        assert all("text" not in result for result in response["results"])  # BatchInput return_text false


def test_batch_child_workflow_retries_model_unavailable(
    model_dir: Path, broken_model: dict[str, str]
) -> None:
    definition = substituted(BATCH)
    batch = batcher_input(definition, load_event("distributed-map-items.json")["Items"][:1])

    report = execute(item_processor(definition), batch, model_dir, environments=[broken_model])

    assert report["status"] == "SUCCEEDED", report
    assert [invocation.get("errorType") for invocation in report["invocations"]] == ["ModelUnavailable", None]
    assert len(report["output"]["responses"]) == 1


def test_distributed_map_parent_is_beyond_the_local_runner(model_dir: Path) -> None:
    """Pins why the parent is not executed: aws-local-stepfunctions ignores ItemReader (and ItemBatcher,
    ResultWriter) and wants the items in the state input. When a release reads ItemReader, this fails: run
    the whole batch machine then."""
    report = execute(substituted(BATCH), {"key": "rerank-input/requests.jsonl"}, model_dir)

    assert report["status"] == "FAILED"
    assert report["error"] == "States.Runtime"
    assert "must be an array" in report["cause"]
    assert report["invocations"] == []
