"""Data parallelism: each process keeps its slice of the single-process batch, bad launches are one clear
error, and two gloo processes under torchrun — killed, then resumed — give the single-process loss curve."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import TINY, sets
from trevo.config import ConfigError
from trevo.distributed import World, setup, shard
from trevo.train import train


def test_the_shards_of_a_batch_are_the_batch_in_order():
    batch = {"input": torch.arange(24).reshape(6, 4), "target": torch.arange(24).reshape(6, 4) + 1}
    parts = [shard(batch, World(rank, 3, rank)) for rank in range(3)]
    for key in batch:
        assert torch.equal(torch.cat([p[key] for p in parts]), batch[key])
    assert World(1, 2, 1).device("cuda") == "cuda:1" and World().device("cuda") == "cuda"


def test_a_launch_that_cannot_split_the_run_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="one of 2 .* train.parallel=none.*set train.parallel=ddp or fsdp"):
        setup("none", "cpu", 4)
    with pytest.raises(ConfigError, match="train.batch_size=5 is the global batch.*multiple of 2"):
        setup("ddp", "cpu", 5)
    with pytest.raises(ConfigError, match="write train.device=cuda"):
        setup("ddp", "cuda:1", 4)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert setup("ddp", "cpu", 5) == World()  # ddp without torchrun: one process


KILLED_AT_STEP_4 = """
import sys
from trevo.cli import main
from trevo.tasks.byte_lm import ByteLM

real = ByteLM.train_batch

def killed(self, step, batch_size, seed):
    if step == 4:  # after the step-3 checkpoint, in every process
        raise SystemExit(7)
    return real(self, step, batch_size, seed)

ByteLM.train_batch = killed
sys.exit(main(sys.argv[1:]))
"""


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """``argv`` in a session of its own, the whole session killed if it outlasts the timeout: killing
    torchrun alone would leave its worker processes running."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_gloo_processes_killed_and_resumed_equal_one_process(tmp_path, tiny_cfg, parallel):
    """The resumed run's losses are the uninterrupted single-process run's: under fsdp the sharded
    weights and moments are gathered into the one checkpoint format and resharded from it."""
    one = train(tiny_cfg(), tmp_path / "one", progress=False)
    script = tmp_path / "killed.py"
    script.write_text(KILLED_AT_STEP_4)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    args = ["train", "--quiet", "--out", str(tmp_path / "two"), *sets(*TINY, f"train.parallel={parallel}")]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    killed = _run([*torchrun, str(script), *args], env)
    assert killed.returncode != 0 and (tmp_path / "two" / "checkpoint.safetensors").is_file(), killed.stderr[-2000:]
    assert not (tmp_path / "two" / "result.json").exists()
    resumed = _run([*torchrun, "-m", "trevo", *args, "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.count("Run written to") == 1  # rank 0 alone reports
    two = json.loads((tmp_path / "two" / "result.json").read_text())
    gap = max(abs(a - b) for a, b in zip(one["losses"], two["losses"], strict=True))
    assert gap < 1e-5, (one["losses"], two["losses"])
    assert two["final"]["bpb"] == pytest.approx(one["final"]["bpb"], abs=1e-5)
    assert two["versions"]["processes"] == 2
    single, gathered = (load_file(tmp_path / run / "checkpoint.safetensors") for run in ("one", "two"))
    assert all(torch.allclose(v, gathered[k], atol=1e-5) for k, v in single.items() if k.startswith("model."))


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_what_trains_in_one_process_is_refused_under_torchrun(tiny_cfg, parallel):
    """Segmented streams and objectives of their own are refused for either kind of data parallelism (the
    check ``train`` makes before the run directory), naming the setting and the value."""
    from trevo.train import build, check_one_process

    two = World(0, 2, 0)
    stream = tiny_cfg("task.name=passkey", "task.seq_len=8", "task.segments=3", "task.distance=2", "task.n_key=2",
                      f"train.parallel={parallel}")
    with pytest.raises(ConfigError, match=f"a task of segmented streams trains in one process.*parallel={parallel}"):
        check_one_process(stream, *build(stream), two)
    electra = tiny_cfg("task.name=mlm", "train.objective=electra", f"train.parallel={parallel}")
    with pytest.raises(ConfigError, match=f"train.objective=electra trains in one process.*parallel={parallel}"):
        check_one_process(electra, *build(electra), two)
    peft = tiny_cfg("train.init_from=/nonexistent", "train.peft=hiwi", f"train.parallel={parallel}")
    with pytest.raises(ConfigError, match=f"train.peft=hiwi fine-tunes in one process.*parallel={parallel}"):
        check_one_process(peft, *build(peft), two)
    check_one_process(tiny_cfg(f"train.parallel={parallel}"), *build(tiny_cfg()), two)  # the LM trains
