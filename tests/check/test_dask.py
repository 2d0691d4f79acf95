"""``--scheduler tcp://HOST:PORT``: seeds run on a Dask distributed cluster (two local worker
processes here) and come back the same as when run locally."""

from __future__ import annotations

import os

import pytest

from consim.check.campaign import CheckConfig, run_campaign

try:
    import distributed
except ImportError:  # pragma: no cover - the test extra installs it
    distributed = None


@pytest.mark.skipif(
    distributed is None and os.environ.get("CI") != "true",
    reason="Dask distributed is not installed (pip install 'consim[dask]')",
)
def test_two_seeds_on_a_local_two_worker_dask_cluster() -> None:
    assert distributed is not None, "CI must install distributed (the test extra has it)"
    config = CheckConfig(duration=8, consistency="stale", nemesis=("partition",), interval=2)
    local = run_campaign(config, [1, 2])
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        remote = run_campaign(config, [1, 2], scheduler=cluster.scheduler_address)
        workers = set(cluster.scheduler_info["workers"])
    assert len(workers) == 2
    assert [r["seed"] for r in remote] == [1, 2]
    # Virtual time: the seeds give the same histories wherever they run.
    assert [r["history_hash"] for r in remote] == [r["history_hash"] for r in local]
    assert [r["verdict"] for r in remote] == [r["verdict"] for r in local]
