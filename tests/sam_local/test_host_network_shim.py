"""tools/sam_local/host_network.py, the shim that runs SAM's containers on the host's network, is still needed
and still right for the SAM CLI in tools/sam/requirements.txt. (That it works is what every other test here shows.)"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.sam_local.sam_cli import REPO, invoke, sam_command

SAM_PYTHON = REPO / ".tools" / "sam" / "bin" / "python"
SHIM = "tools.sam_local.host_network"


def test_sam_creates_its_containers_the_way_the_shim_expects() -> None:
    # The emulator's entry point and container port, as SAM's own classes state them.
    script = """
import json
from samcli.local.docker.container import Container
from samcli.local.docker.lambda_container import LambdaContainer
from tools.sam_local.host_network import EMULATOR, EMULATOR_PORT
print(json.dumps({
    "entry_point": LambdaContainer._get_default_entry_point()[0], "expected_entry_point": EMULATOR,
    "port": Container.RAPID_PORT_CONTAINER, "expected_port": EMULATOR_PORT,
}))
"""
    found = json.loads(
        subprocess.run(
            [SAM_PYTHON, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
    )
    assert found["entry_point"] == found["expected_entry_point"], found
    assert found["port"] == found["expected_port"], found


def test_without_the_shim_sam_reaches_no_container_on_this_daemon() -> None:
    if SHIM not in sam_command():
        pytest.skip("the Docker daemon has a bridge network: SAM runs without the shim here")
    # Given SAM itself, asked to use the host's network, on a daemon with no bridge network
    completed = invoke(
        "direct-rerank.json",
        "--docker-network",
        "host",
        sam=[str(REPO / ".tools" / "sam" / "bin" / "sam")],
        env={"SAM_CLI_CONTAINER_CONNECTION_TIMEOUT": "3"},
    )
    # Then it never reaches the emulator (and still exits 0); if it answers, the shim has become unnecessary
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "", (
        "SAM now reaches its containers on a bridge-less daemon by itself: drop tools/sam_local/host_network.py"
    )
    assert "Timed out while attempting to establish a connection to the container" in completed.stderr
