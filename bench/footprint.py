"""Cold start and peak RSS of the engine and of FlashRank, each in fresh processes under a 1-vCPU CPU quota.

Cold start: import + model load + first 10-passage answer (MS MARCO-like, the mixed-long-tail mix). Peak RSS
(VmHWM) after load, after one and after twenty requests of 100 passages. FlashRank as shipped (its default
session); ours as the function configures itself at 1769 MB.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.cpu_quota import run_under_quota

REPO = Path(__file__).resolve().parent.parent

_OURS_ENGINE = """
from reranker.config import LAMBDA_MEMORY_SIZE, ONE_VCPU_MEMORY_MB, Settings
from reranker.engine import CrossEncoder, EngineOptions
settings = Settings.from_env({{LAMBDA_MEMORY_SIZE: str(ONE_VCPU_MEMORY_MB)}})
encoder = CrossEncoder.load(Path({model!r}), EngineOptions.from_settings(settings))
"""

COLD_START_OURS = """
import time, sys, json
started = time.perf_counter()
sys.path[:0] = [{handler!r}, {repo!r}]
from pathlib import Path
{engine}
from tools.fixture_model.corpus import CorpusGenerator
request = CorpusGenerator(seed=1).request(10)
loaded = time.perf_counter()
encoder.score(request.query, request.passages)
print(json.dumps({{"total": time.perf_counter() - started, "first_answer": time.perf_counter() - loaded}}))
"""

COLD_START_FLASHRANK = """
import time, sys, json
started = time.perf_counter()
sys.path[:0] = [{repo!r}]
from flashrank import Ranker, RerankRequest
ranker = Ranker(model_name={name!r}, cache_dir={cache!r}, log_level="WARNING")
from tools.fixture_model.corpus import CorpusGenerator
request = CorpusGenerator(seed=1).request(10)
loaded = time.perf_counter()
ranker.rerank(RerankRequest(query=request.query, passages=[{{"id": i, "text": t}} for i, t in enumerate(request.passages)]))
print(json.dumps({{"total": time.perf_counter() - started, "first_answer": time.perf_counter() - loaded}}))
"""

PEAK_RSS = """
import sys, json
sys.path[:0] = [{handler!r}, {repo!r}]
from pathlib import Path
from tools.fixture_model.corpus import CorpusGenerator
requests = CorpusGenerator(seed=3).requests(20, min_passages=100, max_passages=100)
def peak_mib():
    # VmHWM, not ru_maxrss: a child inherits its parent's ru_maxrss across fork + exec.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
if {flashrank!r}:
    from flashrank import Ranker, RerankRequest
    ranker = Ranker(model_name={name!r}, cache_dir={cache!r}, log_level="WARNING")
    def rerank(request):
        ranker.rerank(RerankRequest(query=request.query, passages=[{{"id": i, "text": t}} for i, t in enumerate(request.passages)]))
else:
{engine_indented}
    def rerank(request):
        encoder.score(request.query, request.passages)
loaded = peak_mib()
rerank(requests[0])
after_one = peak_mib()
for request in requests[1:]:
    rerank(request)
print(json.dumps({{"loaded": loaded, "after_1": after_one, "after_20": peak_mib()}}))
"""


def _values(model_dir: Path) -> dict[str, str]:
    """What the fresh-process scripts are formatted with."""
    engine = _OURS_ENGINE.format(model=str(model_dir.resolve()))
    return {
        "handler": str(REPO / "handler"),
        "repo": str(REPO),
        "name": model_dir.name,
        "cache": str(model_dir.resolve().parent),
        "engine": engine,
        "engine_indented": "\n".join("    " + line for line in engine.strip().splitlines()),
    }


def _fresh_process(code: str) -> dict[str, Any]:
    """Run code in a fresh interpreter under a 1-vCPU CPU quota; its last line is a JSON object."""
    return run_under_quota(["-c", code], vcpus=1, cwd=REPO)


def cold_starts(model_dir: Path, runs: int) -> dict[str, list[dict[str, float]]]:
    values = _values(model_dir)
    results: dict[str, list[dict[str, float]]] = {"ours": [], "flashrank": []}
    for _ in range(runs):  # interleaved, so machine noise hits both alike
        results["ours"].append(_fresh_process(COLD_START_OURS.format(**values)))
        results["flashrank"].append(_fresh_process(COLD_START_FLASHRANK.format(**values)))
    return results


def peak_rss(model_dir: Path) -> dict[str, dict[str, float]]:
    values = _values(model_dir)
    return {
        "ours": _fresh_process(PEAK_RSS.format(flashrank=False, **values)),
        "flashrank": _fresh_process(PEAK_RSS.format(flashrank=True, **values)),
    }


def report(cold: dict[str, list[dict[str, float]]], rss: dict[str, dict[str, float]]) -> list[str]:
    ours_cold = statistics.median(run["total"] for run in cold["ours"]) * 1000
    flash_cold = statistics.median(run["total"] for run in cold["flashrank"]) * 1000
    lines = [
        "Cold start under a 1-vCPU quota, fresh process: import + model load + first 10-passage answer, "
        f"median of {len(cold['ours'])}",
        "",
        "| | ours | FlashRank | ours/FlashRank |",
        "|---|---:|---:|---:|",
        f"| ms | {ours_cold:.0f} | {flash_cold:.0f} | {ours_cold / flash_cold:.2f}x |",
        "",
        "Peak RSS under a 1-vCPU quota, MiB, fresh process, requests of 100 passages",
        "",
        "| | after load | after 1 | after 20 |",
        "|---|---:|---:|---:|",
    ]
    for name in ("ours", "flashrank"):
        values = rss[name]
        lines.append(
            f"| {name} | {values['loaded']:.0f} | {values['after_1']:.0f} | {values['after_20']:.0f} |"
        )
    return lines
