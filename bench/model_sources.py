"""Cold-start cost of each model source: layer dir, S3 into an empty /tmp cache, S3 from a warm cache.

Each sample is a fresh Python process timing ``import reranker.model_store`` + ``locate_model`` +
``import reranker.engine`` + ``CrossEncoder.load``; modes are interleaved, the first round is discarded
(it writes .pyc files), and the median of ``--runs`` is reported. S3 is moto in server mode on loopback.

    .venv/bin/python -m bench.model_sources [--runs 9]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / ".fixtures"
MODEL_NAME = "ms-marco-TinyBERT-L-2-v2"
MODEL_DIR = FIXTURES / "int8" / MODEL_NAME
MODEL_ZIP = FIXTURES / f"{MODEL_NAME}.zip"
TARGET_S3_OVER_LAYER_MS = 150.0

CHILD = """
import json, sys, time
started = time.perf_counter()
import reranker.model_store as store
from reranker.config import Settings
imported = time.perf_counter()
location = store.locate_model(Settings.from_env())
located = time.perf_counter()
sdk_after_locate = sorted(name for name in ("boto3", "botocore") if name in sys.modules)
from reranker.engine import CrossEncoder
engine_imported = time.perf_counter()
CrossEncoder.load(location.directory)
loaded = time.perf_counter()
print(json.dumps({
    "source": location.source,
    "import_store_ms": (imported - started) * 1000,
    "locate_ms": (located - imported) * 1000,
    "import_engine_ms": (engine_imported - located) * 1000,
    "load_ms": (loaded - engine_imported) * 1000,
    "total_ms": (loaded - started) * 1000,
    "sdk_imported": sdk_after_locate,
}))
"""

LOCATE_ONLY_CHILD = """
import json
from reranker.config import Settings
from reranker.model_store import locate_model
print(json.dumps({"source": locate_model(Settings.from_env()).source}))
"""

COLUMNS = ("import_store_ms", "locate_ms", "import_engine_ms", "load_ms", "total_ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="samples per mode (median reported), >= 7")
    args = parser.parse_args()
    if not MODEL_DIR.is_dir() or not MODEL_ZIP.is_file():
        print(f"fixture model missing under {FIXTURES} (run ./dev setup)", file=sys.stderr)
        return 2
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per S3 request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with tempfile.TemporaryDirectory(prefix="bench-model-sources-") as scratch:
        work = Path(scratch)
        try:
            samples, envs = run_modes(work, endpoint, max(args.runs, 7))
            verification = verification_cost(work, endpoint, envs)
        finally:
            server.stop()
        print_table(samples)
    print_verification(verification)
    layer_sdk = sorted({name for sample in samples["layer"] for name in sample["sdk_imported"]})
    s3_sdk = sorted({name for sample in samples["s3 cold"] for name in sample["sdk_imported"]})
    warm_sdk = sorted({name for sample in samples["s3 warm cache"] for name in sample["sdk_imported"]})
    layer_boto3 = bool(layer_sdk)
    delta = median(samples["s3 cold"], "total_ms") - median(samples["layer"], "total_ms")
    print(f"\nAWS SDK modules imported: layer {layer_sdk}, s3 cold {s3_sdk}, s3 warm cache {warm_sdk}")
    verdict = "OK" if delta < TARGET_S3_OVER_LAYER_MS else "OVER TARGET"
    print(
        f"S3 cold - layer (median total): {delta:.1f} ms, target < {TARGET_S3_OVER_LAYER_MS:.0f} ms: {verdict}"
    )
    return 0 if not layer_boto3 and delta < TARGET_S3_OVER_LAYER_MS else 1


def run_modes(
    work: Path, endpoint: str, runs: int
) -> tuple[dict[str, list[dict]], dict[str, dict[str, str]]]:
    import boto3

    data = MODEL_ZIP.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    admin = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )  # fmt: skip
    admin.create_bucket(Bucket="bench-models")
    admin.put_object(Bucket="bench-models", Key=f"flashrank/{MODEL_NAME}.zip", Body=data)
    layer_root = work / "opt-models"
    shutil.copytree(MODEL_DIR, layer_root / MODEL_NAME)
    (layer_root / MODEL_NAME / ".archive-sha256").write_text(sha256 + "\n")

    base = {key: value for key, value in os.environ.items() if not key.startswith(("MODEL_", "AWS_"))}
    base.pop("PYTHONDONTWRITEBYTECODE", None)  # Lambda runs from compiled bytecode; so do we after round 0
    base["PYTHONPATH"] = f"{REPO / 'handler'}{os.pathsep}{REPO}"
    base["ORT_INTRA_OP_THREADS"] = "1"
    s3 = {
        **base,
        "MODEL_LAYER_ROOT": str(work / "no-layer"),
        "MODEL_S3_URI": f"s3://bench-models/flashrank/{MODEL_NAME}.zip",
        "MODEL_SHA256": sha256,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(work / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    warm_cache = work / "warm-cache"
    modes = {
        "layer": lambda _: {**base, "MODEL_LAYER_ROOT": str(layer_root)},
        "s3 cold": lambda index: {**s3, "MODEL_CACHE_DIR": str(work / f"cold-cache-{index}")},
        "s3 warm cache": lambda _: {**s3, "MODEL_CACHE_DIR": str(warm_cache)},
    }
    expected_source = {"layer": "layer", "s3 cold": "s3", "s3 warm cache": "cache"}
    samples: dict[str, list[dict]] = {mode: [] for mode in modes}
    run_child(modes["s3 cold"](-1) | {"MODEL_CACHE_DIR": str(warm_cache)})  # fills the warm cache
    for index in range(runs + 1):  # round 0 warms .pyc and the page cache; discarded
        for mode, env in modes.items():
            sample = run_child(env(index))
            if sample["source"] != expected_source[mode]:
                raise SystemExit(f"{mode}: expected source {expected_source[mode]}, got {sample['source']}")
            if index:
                samples[mode].append(sample)
    return samples, {mode: env(0) for mode, env in modes.items()}


def run_child(env: dict[str, str], script: str = CHILD) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median(samples: list[dict], column: str) -> float:
    return statistics.median(sample[column] for sample in samples)


def print_table(samples: dict[str, list[dict]]) -> None:
    runs = len(next(iter(samples.values())))
    print(f"median of {runs} fresh processes per mode, interleaved (ms)")
    header = f"{'mode':<15}" + "".join(f"{column.removesuffix('_ms'):>15}" for column in COLUMNS)
    print(header)
    print("-" * len(header))
    for mode, rows in samples.items():
        print(f"{mode:<15}" + "".join(f"{median(rows, column):>15.1f}" for column in COLUMNS))


VERIFY_CHILD = """
import json, statistics, sys, time
from pathlib import Path
from reranker.config import Settings
from reranker.model_cache import ModelCache
from reranker.s3_download import S3ArchiveDownload
settings = Settings.from_env()
cache = ModelCache(settings, S3ArchiveDownload(settings))
entry = Path(settings.model_cache_dir) / settings.model_sha256
manifest = json.loads((entry / "manifest.json").read_text())
def stat_only():
    return all((entry / item["path"]).stat().st_size == item["size"] for item in manifest["files"])
full, sizes = [], []
for _ in range(15):
    started = time.perf_counter()
    assert cache.check_entry()[0] is not None
    full.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    assert stat_only()
    sizes.append((time.perf_counter() - started) * 1000)
total = sum(item["size"] for item in manifest["files"])
print(json.dumps({"bytes": total, "full_ms": statistics.median(full), "size_only_ms": statistics.median(sizes)}))
"""


def verification_cost(work: Path, endpoint: str, envs: dict[str, dict[str, str]]) -> dict[str, dict]:
    """What checking a cache entry costs on a cold start: manifest + size + sha256 of every file."""
    import io
    import zipfile

    import boto3

    large = io.BytesIO()
    with zipfile.ZipFile(large, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(MODEL_DIR.iterdir()):
            if path.suffix != ".onnx":
                zipped.write(path, f"{MODEL_NAME}/{path.name}")
        zipped.writestr(f"{MODEL_NAME}/model.onnx", os.urandom(22 * 1024 * 1024))
    data = large.getvalue()
    admin = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )  # fmt: skip
    admin.put_object(Bucket="bench-models", Key="synthetic/large.zip", Body=data)
    large_env = envs["s3 warm cache"] | {
        "MODEL_S3_URI": "s3://bench-models/synthetic/large.zip",
        "MODEL_SHA256": hashlib.sha256(data).hexdigest(),
        "MODEL_CACHE_DIR": str(work / "large-cache"),
    }
    run_child(large_env, LOCATE_ONLY_CHILD)  # fills the cache; the random "onnx" is never loaded
    costs = {}
    for label, env in (("nano (fixture)", envs["s3 warm cache"]), ("23 MB (MiniLM-L-12 size)", large_env)):
        done = subprocess.run(
            [sys.executable, "-c", VERIFY_CHILD],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        costs[label] = json.loads(done.stdout.strip().splitlines()[-1])
    return costs


def print_verification(costs: dict[str, dict]) -> None:
    print("\ncache entry check on a cold start from /tmp (median of 15, page cache warm)")
    for label, cost in costs.items():
        megabytes = cost["bytes"] / 1e6
        print(
            f"  {label:<26} {megabytes:5.1f} MB  manifest+size+sha256 {cost['full_ms']:6.2f} ms"
            f"   size-only {cost['size_only_ms']:.3f} ms"
        )


if __name__ == "__main__":
    raise SystemExit(main())
