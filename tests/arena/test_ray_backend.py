"""The Ray backend: the same sweep gives the same metrics as the local backend, the driver alone writes the
store, and a task Ray cannot complete is recorded as a failed run."""

from __future__ import annotations

import pytest

from tests.helpers import tiny_sweep
from trevo.arena.runner import run_sweep


@pytest.fixture(scope="module")
def ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_a_sweep_on_ray_records_the_local_backends_metrics(tmp_path, ray):
    sweep = tiny_sweep()
    local, _ = run_sweep(sweep, tmp_path / "local", log=lambda _: None)
    logs: list[str] = []
    remote, chosen = run_sweep(sweep, tmp_path / "ray", log=logs.append, backend="ray")
    a, b = {r.key: r for r in local.runs()}, {r.key: r for r in remote.runs()}
    assert set(a) == set(b) and len(a) == 2 and all(r.status == "done" for r in b.values())
    for key, r in a.items():
        assert b[key].val == r.val and b[key].test == r.test and b[key].curves == r.curves
        assert b[key].flops_per_token == r.flops_per_token and b[key].params == r.params
    assert sum(line.startswith("[") and ": done (" in line for line in logs) == 2
    again, _ = run_sweep(sweep, tmp_path / "ray", log=logs.append, backend="ray")
    assert "2 already done, 0 to run" in logs[-2]


@pytest.mark.slow
def test_a_run_whose_ray_task_fails_is_recorded_as_failed(tmp_path, ray, monkeypatch):
    import trevo.arena.runner as runner

    def worker_lost(config, run_dir, eval_test):
        import os

        os._exit(9)  # the worker process dies: Ray retries once, then gives up

    monkeypatch.setattr(runner, "run_fields", worker_lost)
    store, _ = run_sweep(tiny_sweep(variants=["softmax_attention"]), tmp_path, log=lambda _: None, backend="ray")
    (run,) = store.runs()
    assert run.status == "failed" and "Ray task failed" in run.error
