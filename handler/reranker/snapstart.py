"""SnapStart runtime hooks: a model that has run once in the snapshot, and fresh state in every restored copy.

With SnapStart, Lambda runs the init (app.py's import: the model load) once when a version is published, then
the before-snapshot hooks, and snapshots the environment; every new environment is restored from that snapshot
and runs the after-restore hooks before its first request. Lambda runs before-snapshot hooks in reverse order of
registration and after-restore hooks in order. Without SnapStart (on-demand or provisioned init, tests, local
serving) no hook ever runs.

- Before the snapshot: one warm-up inference of a fixed pair through the engine (runtime.warm_up), so the first
  request of every restored environment does not pay the first run's one-time costs. It bypasses the score
  cache and the metrics: nothing is scored for a caller before it, and it leaves no trace either.
- After restore: the random state is reseeded (every copy would otherwise draw the same numbers), the bearer
  authenticator's SSM client and token cache are made anew and Powertools' shared parameter providers dropped,
  the load metric is not emitted (the load ran at publish time), and the score cache is emptied if it holds
  anything (runtime.renew_after_restore).

``snapshot_restore_py`` ships in Lambda's python runtime (/var/runtime) and with awslambdaric, so it is not
packaged; where it is missing nothing can take a snapshot, and registering does nothing.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from typing import Any

from reranker import fanout, runtime

type Hook = Callable[..., Any]

try:
    from snapshot_restore_py import register_after_restore, register_before_snapshot
except ImportError:  # not on Lambda's runtime: no snapshot is ever taken

    def register_before_snapshot(func: Hook, *args: Any, **kwargs: Any) -> Hook:
        return func

    def register_after_restore(func: Hook, *args: Any, **kwargs: Any) -> Hook:
        return func


_registered = False


def before_snapshot() -> None:
    """Run the model once (not for a caller: no cache entry, no metric)."""
    runtime.warm_up()


def after_restore() -> None:
    """Make this restored environment's state its own."""
    renew_random_state()
    forget_parameter_providers()
    fanout.reset()  # its Lambda client, if a request made one before the snapshot
    runtime.renew_after_restore()


def renew_random_state() -> None:
    """Reseed random (and numpy's global generator if something imported it) from the OS's entropy."""
    random.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def forget_parameter_providers() -> None:
    """Drop Powertools' shared parameter providers (their boto3 clients and cached values), if imported."""
    parameters = sys.modules.get("aws_lambda_powertools.utilities.parameters")
    if parameters is not None:
        parameters.clear_caches()


def register_hooks() -> None:
    """Register the hooks once (app.py calls it at import: the handler module must import what registers)."""
    global _registered  # noqa: PLW0603 - one registration per process, whatever resets the runtime
    if _registered:
        return
    register_before_snapshot(before_snapshot)
    register_after_restore(after_restore)
    _registered = True
