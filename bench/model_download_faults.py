"""Init time from S3 when one GET fails: clean, one 503 SlowDown, one body cut mid-stream, one stalled body.

Each sample is a fresh Python process (import the store, locate_model into an empty cache, load the engine),
with the default settings (MODEL_S3_READ_TIMEOUT_SECONDS 3, MODEL_LOAD_BUDGET_SECONDS 8). S3 is moto in
server mode behind tests/fault_proxy.py on loopback, which injects one fault into the run's first GET.
Modes are interleaved, the first round is discarded, and the median of ``--runs`` is reported.

    .venv/bin/python -m bench.model_download_faults [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.model_sources import MODEL_NAME, MODEL_ZIP, REPO, run_child
from tests.fault_proxy import Fault, FaultProxy, cut_body, slow_down, stall_body
from tests.loopback import serving

CHILD = """
import json, time
started = time.perf_counter()
from reranker.config import Settings
from reranker.model_store import locate_model
location = locate_model(Settings.from_env())
from reranker.engine import CrossEncoder
CrossEncoder.load(location.directory)
print(json.dumps({"source": location.source, "attempts": location.download_attempts,
                  "total_ms": (time.perf_counter() - started) * 1000}))
"""

MODES: dict[str, Fault | None] = {
    "clean": None,
    "one 503 SlowDown": slow_down(),
    "one cut body": cut_body(),
    "one stalled body": stall_body(10.0),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="samples per mode (median reported)")
    args = parser.parse_args()
    if not MODEL_ZIP.is_file():
        raise SystemExit("fixture model missing (run ./dev setup)")
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    data = MODEL_ZIP.read_bytes()
    admin = boto3.client(
        "s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1", aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )  # fmt: skip
    admin.create_bucket(Bucket="bench-models")
    admin.put_object(Bucket="bench-models", Key=f"{MODEL_NAME}.zip", Body=data)
    proxy = FaultProxy(upstream=(host, int(port)))
    samples: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    try:
        with serving(proxy.handler()) as address, tempfile.TemporaryDirectory(prefix="bench-faults-") as work:
            env = {
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": f"{REPO / 'handler'}",
                "ORT_INTRA_OP_THREADS": "1",
                "MODEL_LAYER_ROOT": f"{work}/no-layer",
                "MODEL_S3_URI": f"s3://bench-models/{MODEL_NAME}.zip",
                "MODEL_SHA256": hashlib.sha256(data).hexdigest(),
                "AWS_ENDPOINT_URL_S3": f"http://{address}",
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": f"{work}/no-config",
                "AWS_SHARED_CREDENTIALS_FILE": f"{work}/no-credentials",
                "AWS_EC2_METADATA_DISABLED": "true",
            }
            for index in range(args.runs + 1):  # round 0 writes .pyc files: discarded
                for mode, fault in MODES.items():
                    proxy.reset()
                    if fault is not None:
                        proxy.inject(fault)
                    cache = Path(work) / f"cache-{index}-{len(samples[mode])}-{mode.replace(' ', '-')}"
                    sample = run_child({**env, "MODEL_CACHE_DIR": str(cache)}, CHILD)
                    sample["gets"] = proxy.gets()
                    if index:
                        samples[mode].append(sample)
    finally:
        proxy.reset()
        server.stop()
    print(f"init from S3 into an empty cache, median of {args.runs} fresh processes per mode (ms)")
    clean = statistics.median(sample["total_ms"] for sample in samples["clean"])
    for mode, rows in samples.items():
        total = statistics.median(sample["total_ms"] for sample in rows)
        attempts = sorted({sample["attempts"] for sample in rows})
        gets = sorted({sample["gets"] for sample in rows})
        print(
            f"{mode:<18} {total:8.1f} ms  (+{total - clean:7.1f})  attempts logged {attempts}, GETs seen {gets}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
