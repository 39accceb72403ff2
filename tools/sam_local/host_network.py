"""The SAM CLI with its Lambda containers on the host's network, for a Docker daemon that has no bridge network.

    .tools/sam/bin/python -m tools.sam_local.host_network local invoke ...   (same arguments as `sam`)

Why: `sam local` starts each function in a container running the Runtime Interface Emulator on port 8080,
publishes that port on a free port of 127.0.0.1 and sends the invoke there. A daemon started without a bridge
(`dockerd --bridge=none`, as tools/sam_local/run.sh does where no daemon runs, so that nothing touches the
machine's network) has nothing to publish from, and `--docker-network host` does not help: SAM still creates
the container on the default network with the port published and only skips joining a named network. So this
wrapper changes one call, the container creation: the container joins the host's network, the emulator
listens on the very address SAM will connect to, and the function's Runtime API gets a free loopback port of
its own instead of the emulator's fixed 127.0.0.1:9001 (which two containers on one network would share).

Test tooling only: users run `sam` itself against an ordinary Docker. Anything else in the creation call
than this SAM CLI makes stops the run (SamLocalShimOutdated) instead of being passed on half-understood;
tests/sam_local/test_host_network_shim.py fails when a SAM CLI upgrade makes this unnecessary or wrong.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from docker.models.containers import ContainerCollection

EMULATOR = "/var/rapid/aws-lambda-rie"  # where SAM puts the emulator in the images it builds
EMULATOR_PORT = "8080"  # the container port SAM publishes (samcli.local.docker.container.Container)
_original_create = ContainerCollection.create


class SamLocalShimOutdated(RuntimeError):
    """The SAM CLI no longer creates its containers the way this shim expects."""


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def host_network_arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of SAM's container creation, moved onto the host's network."""
    entrypoint = kwargs.get("entrypoint")
    if not isinstance(entrypoint, list) or entrypoint[:1] != [EMULATOR]:
        raise SamLocalShimOutdated(f"SAM no longer starts {EMULATOR} as the entry point: {entrypoint!r}")
    if kwargs.get("network_mode") is not None:
        raise SamLocalShimOutdated(f"SAM now sets a network mode itself: {kwargs['network_mode']!r}")
    ports = kwargs.get("ports")
    if not isinstance(ports, dict) or set(ports) != {EMULATOR_PORT}:
        raise SamLocalShimOutdated(f"SAM no longer publishes exactly port {EMULATOR_PORT}: {ports!r}")
    host, port = ports[EMULATOR_PORT]
    moved = {key: value for key, value in kwargs.items() if key != "ports"}
    moved["network_mode"] = "host"
    moved["entrypoint"] = [
        *entrypoint,
        "--runtime-interface-emulator-address",
        f"{host}:{port}",
        "--runtime-api-address",
        f"127.0.0.1:{free_loopback_port()}",
    ]
    return moved


def create_on_host_network(self: ContainerCollection, image: str, command: Any = None, **kwargs: Any) -> Any:
    return _original_create(self, image, command, **host_network_arguments(kwargs))


def main() -> int:
    from samcli.cli.main import cli

    ContainerCollection.create = create_on_host_network
    result = cli.main(args=sys.argv[1:], prog_name="sam", standalone_mode=True)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
