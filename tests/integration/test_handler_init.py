"""Importing the handler with the model layer present: the model loads once, at import, with no S3 call."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.models import MODEL_NAME, REPO, fixture_model

CHILD = """
import json, sys
from reranker import engine

loads = []
original_load = engine.CrossEncoder.load.__func__

def counting_load(cls, *args, **kwargs):
    loads.append(args[0] if args else kwargs.get("model_dir"))
    return original_load(cls, *args, **kwargs)

engine.CrossEncoder.load = classmethod(counting_load)
from reranker import app  # the Lambda init
loaded_at_import = len(loads)
from tools.invoke import LocalContext
answers = [app.lambda_handler({"query": "q", "passages": ["a", "b"]}, LocalContext()) for _ in range(3)]
print(json.dumps({
    "loaded_at_import": loaded_at_import,
    "loads": len(loads),
    "source": app.STATE.runtime.location.source,
    # Powertools imports the bare botocore package (0.5 ms, for its user agent); the S3 client needs the rest.
    "sdk_modules": sorted(name for name in ("boto3", "botocore.session", "botocore.client") if name in sys.modules),
    "answered": [len(answer["results"]) for answer in answers],
}))
"""


def test_layer_model_loads_once_at_import_and_never_touches_s3(tmp_path: Path) -> None:
    # Given the model in a layer-shaped directory, and an S3 source configured that would fail if reached
    layer_root = tmp_path / "opt" / "models"
    shutil.copytree(fixture_model("int8"), layer_root / MODEL_NAME)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MODEL_", "POWERTOOLS_"))}
    env.update(
        {
            "PYTHONPATH": f"{REPO / 'handler'}{os.pathsep}{REPO}",
            "MODEL_LAYER_ROOT": str(layer_root),
            "MODEL_S3_URI": "s3://unreachable-bucket/model.zip",
            "MODEL_SHA256": "0" * 64,
            "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",  # the discard port: any S3 call would fail
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    # When the handler module is imported and invoked three times
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # Then the model came from the layer, was loaded exactly once and during import, and no AWS SDK was imported
    assert report == {
        "loaded_at_import": 1,
        "loads": 1,
        "source": "layer",
        "sdk_modules": [],
        "answered": [2, 2, 2],
    }
