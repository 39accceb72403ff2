"""./dev eval end to end: the marker model's known gain through the local engine, ./dev serve (native and
Cohere routes), and boto3's lambda client against a local Invoke API stand-in; failures and deadline fallbacks.

The expected numbers are computed here by hand from the generated dataset: each query has one relevant document
(grade 1) at a known first-stage rank r, so nDCG@k = 1/log2(r+1) if r <= k, MRR@10 = 1/r, Recall@k = [r <= k];
the marker model scores documents with the marker word +6 and the rest -6, so reranking puts the marker
documents first and keeps the first-stage order otherwise (the service's sort is stable).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.lambda_invoke_api import invoke_api
from tests.loopback import serving
from tests.models import REPO, fixture_model
from tests.serve_process import serve_process
from tools.evaluate import demo_data
from tools.evaluate.__main__ import main
from tools.evaluate.dataset import load_dataset
from tools.evaluate.first_stage import first_stage

# One worker runs the module: the served process and the demo data are made once.
pytestmark = pytest.mark.xdist_group("evaluate")

KEYS = ["ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "mrr@10", "recall@5", "recall@10"]
QUERIES = 18  # two cycles of the demo's nine planned cases


def expected_values(rank: int | None) -> dict[str, float]:
    """Every metric of one query whose single relevant document is at ``rank`` (None: not retrieved)."""
    if rank is None:
        return dict.fromkeys(KEYS, 0.0)
    values = {f"ndcg@{k}": (1 / math.log2(rank + 1) if rank <= k else 0.0) for k in (1, 3, 5, 10)}
    values["mrr@10"] = 1 / rank if rank <= 10 else 0.0
    values.update({f"recall@{k}": float(rank <= k) for k in (5, 10)})
    return values


def expected_summary(
    data: Path, candidates: int = 50, failing: Callable[[str], bool] = lambda query: False
) -> dict[str, Any]:
    """What the tool must report for the marker model on ``data``; ``failing`` queries keep the first stage."""
    dataset = load_dataset(data)
    query_ids = dataset.evaluated_queries
    before: dict[str, dict[str, float]] = {}
    after: dict[str, dict[str, float]] = {}
    for query_id, ranking in first_stage(dataset, query_ids, candidates).items():
        relevant = next(doc for doc, grade in dataset.qrels[query_id].items() if grade > 0)
        reranked = [doc for doc in ranking if demo_data.MARKER_WORD in dataset.corpus[doc]]
        reranked += [doc for doc in ranking if doc not in reranked]
        if failing(dataset.queries[query_id]):
            reranked = ranking
        before[query_id] = expected_values(ranking.index(relevant) + 1 if relevant in ranking else None)
        after[query_id] = expected_values(reranked.index(relevant) + 1 if relevant in reranked else None)
    n = len(query_ids)
    baseline = {key: sum(values[key] for values in before.values()) / n for key in KEYS}
    reranked_means = {key: sum(values[key] for values in after.values()) / n for key in KEYS}
    changes = [after[q]["ndcg@10"] - before[q]["ndcg@10"] for q in query_ids]
    return {
        "queries": n,
        "baseline": baseline,
        "reranked": reranked_means,
        "delta": {key: reranked_means[key] - baseline[key] for key in KEYS},
        "wins": sum(change > 1e-12 for change in changes),
        "ties": sum(abs(change) <= 1e-12 for change in changes),
        "losses": sum(change < -1e-12 for change in changes),
    }


def assert_matches(report: dict[str, Any], expected: dict[str, Any]) -> None:
    assert report["queries"] == expected["queries"]
    for part in ("baseline", "reranked", "delta"):
        assert report[part] == pytest.approx(expected[part], abs=1e-12), part
    assert (report["wins"], report["ties"], report["losses"]) == (
        expected["wins"],
        expected["ties"],
        expected["losses"],
    )


def run_cli(args: Sequence[str], json_path: Path) -> dict[str, Any]:
    assert main([*args, "--json", str(json_path), "--no-progress"]) == 0
    report: dict[str, Any] = json.loads(json_path.read_text(encoding="utf-8"))
    assert list(report) == [
        "queries", "candidates", "baseline", "reranked", "delta", "wins", "ties", "losses",
        "p_value", "latency_ms", "failures", "fallbacks", "worth_it",
    ]  # fmt: skip
    return report


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[demo_data.Plan]]:
    data = tmp_path_factory.mktemp("demo")
    return data, demo_data.generate(data, queries=QUERIES)


@pytest.fixture(scope="module")
def marker_dir() -> Path:
    return fixture_model("marker")


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEVALTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "eval-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# --- local engine ------------------------------------------------------------------------------------------


def test_marker_model_gives_the_planned_gain(
    demo: tuple[Path, list[demo_data.Plan]],
    marker_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, plans = demo
    plot = tmp_path / "eval.png"
    report = run_cli([str(data), "--model-dir", str(marker_dir), "--plot", str(plot)], tmp_path / "r.json")

    expected = expected_summary(data)
    assert_matches(report, expected)
    # The plans say the same thing as the hand computation from the corpus.
    assert [expected_values(plan.reranked_rank)["mrr@10"] for plan in plans] == [
        1 / plan.reranked_rank for plan in plans
    ]
    assert report["reranked"]["mrr@10"] == pytest.approx(
        sum(1 / plan.reranked_rank for plan in plans) / QUERIES
    )
    assert (report["wins"], report["ties"], report["losses"]) == (12, 4, 2)
    assert report["delta"]["ndcg@5"] == pytest.approx(0.4521, abs=1e-4)
    assert report["worth_it"] is True
    assert report["p_value"] < 0.01
    assert (report["failures"], report["fallbacks"], report["candidates"]) == (0, 0, 50)
    assert report["latency_ms"]["p50"] > 0
    assert plot.read_bytes().startswith(b"\x89PNG") and plot.stat().st_size > 20_000
    shown = capsys.readouterr().out
    assert "ndcg@5" in shown and "12 wins, 4 ties, 2 losses" in shown and "worth it" in shown


def test_min_gain_above_the_gain_gives_the_other_verdict(
    demo: tuple[Path, list[demo_data.Plan]], marker_dir: Path, tmp_path: Path
) -> None:
    data, _ = demo
    report = run_cli([str(data), "--model-dir", str(marker_dir), "--min-gain", "0.5"], tmp_path / "r.json")
    assert report["worth_it"] is False


def test_run_trec_gives_the_candidates_and_candidates_cuts_them(
    tmp_path: Path, marker_dir: Path, demo: tuple[Path, list[demo_data.Plan]]
) -> None:
    data, _ = demo
    copy = tmp_path / "data"
    (copy / "qrels").mkdir(parents=True)
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        (copy / name).write_bytes((data / name).read_bytes())
    dataset = load_dataset(copy)
    bm25 = first_stage(dataset, dataset.evaluated_queries, 50)
    # The opposite of BM25's order: the relevant document of a "lift from rank 10" query is now first.
    lines = [
        f"{query_id} Q0 {doc} {rank} {100 - rank}.0 reversed"
        for query_id, ranking in bm25.items()
        for rank, doc in enumerate(reversed(ranking), start=1)
    ]
    (copy / "run.trec").write_text("\n".join(lines) + "\n", encoding="utf-8")

    report = run_cli([str(copy), "--model-dir", str(marker_dir), "--candidates", "6"], tmp_path / "r.json")

    assert report["candidates"] == 6
    assert_matches(report, expected_summary(copy, candidates=6))
    assert report["baseline"] != expected_summary(data)["baseline"]


def test_the_default_model_is_the_nano_fixture(
    demo: tuple[Path, list[demo_data.Plan]], tmp_path: Path
) -> None:
    # Random weights: the numbers mean nothing about the real model, only that the tool runs end to end.
    data, _ = demo
    report = run_cli([str(data), "--max-queries", "5"], tmp_path / "r.json")
    assert report["queries"] == 5
    assert (report["failures"], report["fallbacks"]) == (0, 0)
    assert set(report["reranked"]) == set(KEYS)


def test_bad_input_exits_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    demo_data.generate(tmp_path / "data", queries=2)
    assert main([str(tmp_path / "data"), "--model-dir", str(tmp_path / "no-model")]) == 2
    assert "cannot load the model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main([str(tmp_path / "data"), "--cohere"])
    assert exited.value.code == 2
    with pytest.raises(SystemExit):
        main([str(tmp_path / "data"), "--candidates", "0"])


def test_the_command_line_entry_point(
    tmp_path: Path, marker_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo_data.main([str(tmp_path / "data"), "--queries", "9"]) == 0
    assert "wrote 9 queries and 90 documents" in capsys.readouterr().out
    evaluated = subprocess.run(
        [sys.executable, "-m", "tools.evaluate", str(tmp_path / "data"), "--model-dir", str(marker_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "verdict: worth it" in evaluated.stdout
    assert "first stage: BM25 (bm25s)" in evaluated.stderr


# --- ./dev serve: native /rerank (SigV4) and Cohere /v2/rerank (bearer) -------------------------------------


@pytest.fixture(scope="module")
def served(marker_dir: Path) -> Iterator[str]:
    """`./dev serve` (python -m tools.serve) with the marker model on a free port, as its own process."""
    with serve_process(marker_dir) as url:
        yield url


@pytest.mark.usefixtures("aws_credentials")
def test_native_endpoint_signed_with_sigv4(
    served: str, demo: tuple[Path, list[demo_data.Plan]], tmp_path: Path
) -> None:
    data, _ = demo
    report = run_cli([str(data), "--endpoint", served + "/", "--region", "us-east-1"], tmp_path / "r.json")
    assert_matches(report, expected_summary(data))
    assert (report["failures"], report["fallbacks"]) == (0, 0)
    assert report["latency_ms"]["p99"] >= report["latency_ms"]["p50"] > 0


def test_cohere_endpoint_with_a_bearer_token(
    served: str, demo: tuple[Path, list[demo_data.Plan]], tmp_path: Path
) -> None:
    data, _ = demo
    report = run_cli([str(data), "--endpoint", served, "--cohere", "--token", "t0k3n"], tmp_path / "r.json")
    assert_matches(report, expected_summary(data))
    assert (report["failures"], report["fallbacks"]) == (0, 0)


def test_endpoint_failures_keep_the_first_stage(
    served: str, demo: tuple[Path, list[demo_data.Plan]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = demo
    report = run_cli([str(data), "--endpoint", served + "/nowhere", "--unsigned"], tmp_path / "r.json")
    assert report["failures"] == QUERIES
    assert report["reranked"] == report["baseline"]
    assert report["delta"] == dict.fromkeys(KEYS, 0.0)
    assert report["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert report["p_value"] is None and report["worth_it"] is False
    assert f"{QUERIES} failed requests: HTTP 404: RouteNotFound" in capsys.readouterr().err


@pytest.mark.parametrize("region", [None, "us-east-1"], ids=["no-region", "no-credentials"])
def test_a_local_endpoint_without_aws_suggests_unsigned(
    region: str | None,
    served: str,
    demo: tuple[Path, list[demo_data.Plan]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A newcomer's machine: no AWS keys, profile, config file or instance role (and maybe no region).
    for name in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
        "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    if region:
        monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    data, _ = demo

    assert main([str(data), "--endpoint", served, "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "local endpoint" in error and "pass --unsigned" in error
    assert f"no AWS {'credentials' if region else 'region'}" in error

    report = run_cli([str(data), "--endpoint", served, "--unsigned"], tmp_path / "r.json")
    assert_matches(report, expected_summary(data))


@pytest.mark.parametrize("route", ["native", "cohere"])
def test_deadline_fallbacks_are_counted(
    route: str,
    configure: Callable[..., ModuleType],
    marker_dir: Path,
    demo: tuple[Path, list[demo_data.Plan]],
    tmp_path: Path,
) -> None:
    from tools.serve import make_server

    app = configure(MODEL_DIR=str(marker_dir))
    # 100 ms left at the start of each invocation, under the 500 ms margin: nothing is scored in time.
    server = make_server(app.lambda_handler, timeout_ms=100)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        extra = ["--cohere"] if route == "cohere" else []
        report = run_cli([str(demo[0]), "--endpoint", url, "--unsigned", *extra], tmp_path / "r.json")
    finally:
        server.shutdown()
        server.server_close()
    assert (report["fallbacks"], report["failures"]) == (QUERIES, 0)
    assert report["reranked"] == report["baseline"]  # unscored passages come back in first-stage order


# --- outputs ---------------------------------------------------------------------------------------------


def test_json_and_plot_without_a_file_go_under_a_git_ignored_folder(
    demo: tuple[Path, list[demo_data.Plan]],
    marker_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import tools.evaluate.__main__ as cli

    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", str(cli.OUTPUT_DIR / "any.json")], cwd=REPO, check=False
    )
    assert ignored.returncode == 0, f"{cli.OUTPUT_DIR} is not git-ignored"
    monkeypatch.setattr(cli, "OUTPUT_DIR", tmp_path / "out")
    data, _ = demo

    assert main([str(data), "--model-dir", str(marker_dir), "--json", "--plot", "--no-progress"]) == 0

    written = tmp_path / "out" / f"{data.name}.json"
    assert json.loads(written.read_text(encoding="utf-8"))["queries"] == QUERIES
    assert (tmp_path / "out" / f"{data.name}.png").read_bytes().startswith(b"\x89PNG")
    assert f"wrote {written}" in capsys.readouterr().err


def test_the_default_fixture_model_is_announced_as_meaningless(
    demo: tuple[Path, list[demo_data.Plan]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = demo
    run_cli([str(data), "--max-queries", "2"], tmp_path / "r.json")
    assert "random weights: its scores mean nothing" in capsys.readouterr().err


# --- direct invoke with boto3 -----------------------------------------------------------------------------


@pytest.mark.usefixtures("aws_credentials")
def test_function_invoke_with_some_requests_failing(
    configure: Callable[..., ModuleType],
    marker_dir: Path,
    demo: tuple[Path, list[demo_data.Plan]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, _ = demo
    # Queries over 27 characters ("what do we know about " + a topic of 6+ letters) get PayloadTooLarge.
    app = configure(MODEL_DIR=str(marker_dir), MAX_QUERY_CHARS="27")
    alias = "arn:aws:lambda:us-east-1:123456789012:function:reranker-dev-RerankFunction:live"
    with serving(invoke_api({alias: app.lambda_handler})) as address:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://{address}")
        report = run_cli([str(data), "--function", alias], tmp_path / "r.json")
        missing = run_cli([str(data), "--function", "no-such-function"], tmp_path / "m.json")

    too_long = [len(query) > 27 for query in load_dataset(data).queries.values()]
    assert 0 < sum(too_long) < QUERIES
    assert report["failures"] == sum(too_long)
    assert_matches(report, expected_summary(data, failing=lambda query: len(query) > 27))
    assert missing["failures"] == QUERIES and missing["reranked"] == missing["baseline"]
    errors = capsys.readouterr().err
    assert "PayloadTooLarge" in errors and "ResourceNotFoundException" in errors
    assert "hint: the service refused the request size: lower --candidates" in errors


# --- SigV4 -------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("aws_credentials")
def test_the_sigv4_signature_verifies() -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from tools.evaluate.targets import HttpEndpoint

    received: list[tuple[str, dict[str, str], bytes]] = []

    class Recorder(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, dict(self.headers.items()), body))
            answer = json.dumps(
                {"results": [{"index": 1, "score": 0.9}, {"index": 0, "score": 0.1}]}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    with serving(Recorder) as address:
        outcome = HttpEndpoint(f"http://{address}", region="us-east-1").rerank("q", ["a", "b"])
    assert outcome.order == [1, 0] and not outcome.fallback

    path, headers, body = received[0]
    assert path == "/rerank"
    assert json.loads(body) == {"query": "q", "passages": ["a", "b"], "return_text": False}
    signed = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=AKIDEVALTEST/\d{8}/us-east-1/execute-api/aws4_request, "
        r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})",
        headers["Authorization"],
    )
    assert signed is not None

    def signature(secret: str) -> str:
        names = signed[1].split(";")
        lowered = {name.lower(): value for name, value in headers.items()}
        request = AWSRequest(
            method="POST", url=f"http://{address}{path}", data=body, headers={n: lowered[n] for n in names}
        )
        request.context["timestamp"] = lowered["x-amz-date"]
        signer = SigV4Auth(Credentials("AKIDEVALTEST", secret), "execute-api", "us-east-1")
        return signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)

    assert signed[2] == signature("eval-test-secret")
    assert signed[2] != signature("another-secret")
