"""Run costs shaped like measured ones, for the planner's and the scheduler's tests."""

from __future__ import annotations

from reranker.run_costs import RunCosts

# Shaped like the nano's costs on one vCPU (microseconds): a batch run has a higher fixed cost than a run alone,
# and each padded token costs about what a token alone does.
NANO_LIKE = RunCosts(
    single_base=120e-6,
    single_per_token=2e-6,
    batch_base=200e-6,
    batch_per_row=8e-6,
    batch_per_token=2.2e-6,
    max_tokens=64,
)
# Batches that never pay: each row costs more than a run alone.
BATCHES_NEVER_PAY = RunCosts(
    single_base=50e-6,
    single_per_token=1e-6,
    batch_base=500e-6,
    batch_per_row=60e-6,
    batch_per_token=3e-6,
    max_tokens=64,
)
