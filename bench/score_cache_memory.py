"""What the warm score cache really costs: peak memory against its budget, bytes per entry, lookup speed.

Each measurement is a fresh Python process that fills a cache of ``--mb`` MiB through the same calls a
request makes (lookup of 100 passages, then a store per miss) until twice its capacity has gone through it,
so it is full and has evicted as much again (``--turnover``). It reports the growth of VmHWM (peak RSS, /proc/self/status)
over a baseline taken after the imports and a warm-up, in one process, and the tracemalloc peak in another
(tracemalloc's own bookkeeping would inflate RSS). In a third, lookup time per passage on the full cache, all
hits (blake2b hashing included, and shown apart).

    .venv/bin/python -m bench.score_cache_memory [--mb 32] [--implementation path/to/score_cache.py]

``--implementation`` loads another version of score_cache.py (e.g. ``git show REV:handler/reranker/
score_cache.py > /tmp/old.py``) to compare side by side.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PASSAGES_PER_REQUEST = 100
MIB = 1024 * 1024


def load_implementation(path: str | None) -> ModuleType:
    if path is None:
        from reranker import score_cache

        return score_cache
    spec = importlib.util.spec_from_file_location("score_cache_under_test", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def status_bytes(field: str) -> int:
    """A size from /proc/self/status (VmHWM: peak resident set so far; RssAnon, RssFile), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def vm_hwm_bytes() -> int:
    return status_bytes("VmHWM")


def fill(cache: Any, rounds: int, tag: str) -> None:
    """Requests of PASSAGES_PER_REQUEST new passages each: a lookup, then a store per miss."""
    namespace = cache.namespace("0" * 64, "truncate", 512)
    for request in range(rounds):
        passages = [f"{tag} passage {request}-{index}" for index in range(PASSAGES_PER_REQUEST)]
        lookup = cache.lookup(namespace, "a query", passages)
        for index in lookup.misses:
            cache.store(lookup.keys[index], (request * PASSAGES_PER_REQUEST + index) / 1e9)


def measure(megabytes: float, implementation: str | None, mode: str, turnover: float = 2.0) -> dict[str, Any]:
    module = load_implementation(implementation)
    fill(module.ScoreCache.from_megabytes(0.25), 40, "warm-up")  # first-call allocations, not the cache's
    gc.collect()
    budget = int(megabytes * MIB)
    if mode == "tracemalloc":
        import tracemalloc

        tracemalloc.start()
    baseline = vm_hwm_bytes()
    anonymous, file_backed = status_bytes("RssAnon"), status_bytes("RssFile")
    started = time.perf_counter()
    cache = module.ScoreCache.from_megabytes(megabytes)
    rounds = -(-int(turnover * cache.capacity) // PASSAGES_PER_REQUEST)
    fill(cache, rounds, "fill")
    fill_seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        "budget_bytes": budget,
        "capacity": cache.capacity,
        "entries": len(cache),
        "evictions": cache.evictions,
        "fill_seconds": round(fill_seconds, 2),
    }
    if mode == "tracemalloc":
        import tracemalloc

        _, peak = tracemalloc.get_traced_memory()
        result["tracemalloc_peak_bytes"] = peak
        return result
    result["vmhwm_growth_bytes"] = vm_hwm_bytes() - baseline
    # Where the resident growth is: the heap (the table, Python objects) or pages of code first touched.
    result["rss_anon_growth_bytes"] = status_bytes("RssAnon") - anonymous
    result["rss_file_growth_bytes"] = status_bytes("RssFile") - file_backed
    if mode == "speed":
        result.update(lookup_speed(cache, rounds))
    return result


def lookup_speed(cache: Any, rounds: int) -> dict[str, float]:
    """Median ns per passage of an all-hit lookup (hashing included) of the last requests stored."""
    namespace = cache.namespace("0" * 64, "truncate", 512)
    timings: dict[str, float] = {}
    for size in (1, 100, 1000):
        requests = [
            [f"fill passage {request}-{index}" for index in range(PASSAGES_PER_REQUEST)]
            for request in range(rounds - max(1, size // PASSAGES_PER_REQUEST), rounds)
        ]
        passages = [passage for request in requests for passage in request][:size]
        samples = []
        for _ in range(max(5, 3000 // size)):
            started = time.perf_counter_ns()
            lookup = cache.lookup(namespace, "a query", passages)
            samples.append((time.perf_counter_ns() - started) / size)
        assert None not in lookup.scores, "the measured passages must all be hits"
        hashing = []
        for _ in range(max(5, 3000 // size)):
            started = time.perf_counter_ns()
            for passage in passages:
                cache.key(namespace, "a query", passage)
            hashing.append((time.perf_counter_ns() - started) / size)
        timings[f"lookup_ns_per_passage_{size}"] = round(statistics.median(samples))
        timings[f"hash_ns_per_passage_{size}"] = round(statistics.median(hashing))
    return timings


def run_child(
    megabytes: float, implementation: str | None, mode: str, turnover: float = 2.0
) -> dict[str, Any]:
    """One measurement in a fresh process (also what tests/unit/test_score_cache.py runs)."""
    command = [sys.executable, "-m", "bench.score_cache_memory", "--child", mode, "--mb", str(megabytes)]
    command += ["--turnover", str(turnover)]
    if implementation:
        command += ["--implementation", implementation]
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'handler'}{os.pathsep}{REPO}"}
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600, check=False, cwd=REPO
    )
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=32.0, help="SCORE_CACHE_MB to measure (default 32)")
    parser.add_argument("--implementation", help="another score_cache.py to measure instead")
    parser.add_argument(
        "--turnover", type=float, default=2.0, help="passages stored, in capacities (default 2)"
    )
    parser.add_argument("--child", choices=("rss", "tracemalloc", "speed"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.mb, args.implementation, args.child, args.turnover)))
        return 0
    rss = run_child(args.mb, args.implementation, "rss", args.turnover)
    traced = run_child(args.mb, args.implementation, "tracemalloc", args.turnover)
    speed = run_child(args.mb, args.implementation, "speed", args.turnover)
    budget, entries = rss["budget_bytes"], rss["entries"]
    print(f"SCORE_CACHE_MB={args.mb:g}: budget {budget / MIB:.2f} MiB, capacity {rss['capacity']} entries")
    stored = int(args.turnover * rss["capacity"])
    print(
        f"{stored} passages stored in {rss['fill_seconds']} s: {entries} entries, {rss['evictions']} evictions"
    )
    for label, peak in (
        ("VmHWM growth", rss["vmhwm_growth_bytes"]),
        ("tracemalloc peak", traced["tracemalloc_peak_bytes"]),
    ):
        print(
            f"{label:>17}: {peak / MIB:7.2f} MiB = {peak / budget:6.1%} of the budget, "
            f"{peak / max(entries, 1):6.1f} bytes per entry"
        )
    print(
        f"{'of which, now':>17}: heap (RssAnon) {rss['rss_anon_growth_bytes'] / MIB:.2f} MiB, "
        f"file-backed code pages (RssFile) {rss['rss_file_growth_bytes'] / MIB:.2f} MiB"
    )
    for size in (1, 100, 1000):
        print(
            f"lookup of {size:>4} passages (all hits): {speed[f'lookup_ns_per_passage_{size}']:>6} ns per passage, "
            f"of which hashing {speed[f'hash_ns_per_passage_{size}']} ns"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
