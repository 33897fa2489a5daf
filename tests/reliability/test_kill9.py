"""kill -9 at chosen and at random points of each entry point, then the command that continues it:
the final state must equal an uninterrupted run's, bit for bit (weights, optimizer moments and RNG
state of the checkpoint; losses and metrics; every row of the arena's store).

Each entry point is one row of ``ENTRY_POINTS``: how to start it, how to continue it, how to read
its final state, and its kill points. A new entry point (``trevo evolve``) adds its cases by adding
a row. The faults are injected by ``faults/sitecustomize.py`` in every process the command starts,
the arena's workers included. Every run tries the points of ``kill_points``; the slow test adds
``TREVO_KILL_POINTS`` (default 2) random ones per entry point, drawn among the calls an uninterrupted
run makes (``TREVO_KILL_POINTS=20 pytest -m slow tests/reliability`` for a deeper search).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from tests.helpers import TINY
from trevo.arena.runner import DB_NAME
from trevo.arena.store import Store
from trevo.checkpoint import CHECKPOINT, TEMP_PREFIX

ROOT = Path(__file__).resolve().parents[2]
FAULTS = Path(__file__).parent / "faults"
RANDOM_POINTS = int(os.environ.get("TREVO_KILL_POINTS", 2))

FORWARD = "trevo.train:logits_of"  # every forward pass: training steps, evaluation, the FLOP count
SAVE = "trevo.checkpoint:save_file"  # writing a checkpoint's temporary file
RESULT = "trevo.train:atomic_write_text"  # writing result.json, after the last checkpoint


@dataclass(frozen=True)
class Fault:
    target: str
    at: int  # the call (counted over every process of the command) at which to kill
    victim: str = "self"  # or "parent": the sweep process, killed from inside a worker
    when: str = "before"
    # Cut the written file to this fraction first: a torn write (only where the writer itself dies).
    truncate: float | None = None

    def __str__(self) -> str:
        cut = f",cut{self.truncate}" if self.truncate is not None else ""
        return f"{self.target.split(':')[1]}#{self.at}:{self.victim}:{self.when}{cut}"


def run_cli(args: list[str], cwd: Path, fault: Fault | None = None, counter: Path | None = None
            ) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{FAULTS}", "OMP_NUM_THREADS": "1"}
    env.pop("TREVO_FAULT", None)
    if fault is not None:
        env["TREVO_FAULT"] = json.dumps({**fault.__dict__, "counter": str(counter)})
    return subprocess.run([sys.executable, "-m", "trevo.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def train_state(out: Path) -> Any:
    result = json.loads((out / "result.json").read_text())
    assert result["tokens_per_s"] > 0 and result["train_s"] > 0 and result["wall_s"] >= result["train_s"]
    tensors = {k: v.numpy().tobytes() for k, v in load_file(out / CHECKPOINT).items()}
    return tensors, result["losses"], result["history"], result["final"]


def arena_state(out: Path) -> Any:
    runs = Store(out / DB_NAME).runs()
    assert runs and all(r.status == "done" and r.tokens_per_s > 0 and r.wall_s > 0 for r in runs), \
        [(r.label, r.status, r.error) for r in runs]
    return {r.key: (r.val, r.test, r.curves, r.params, r.flops_per_token) for r in runs}


SWEEP = {"name": "kill9", "base": {"model": {"n_layers": 1, "d_model": 16}, "task": {"name": "byte_lm", "seq_len": 16},
                                   "train": {"steps": 4, "batch_size": 2, "eval_every": 2, "eval_batches": 1,
                                             "checkpoint_every": 2, "warmup_steps": 1}},
         "variants": ["softmax_attention", "rwkv4"], "tasks": ["byte_lm"], "seeds": [0]}
TRAIN_ARGS = [a for item in TINY for a in ("--set", item)]


@dataclass(frozen=True)
class EntryPoint:
    name: str
    start: Callable[[Path], list[str]]  # the command, given its output directory
    resume: Callable[[Path], list[str]]  # the command that continues it
    state: Callable[[Path], Any]  # its final state, compared for equality
    kill_points: list[Fault]
    random_targets: list[tuple[str, str, str, float | None]] = field(default_factory=list)  # victim, when, cut


ENTRY_POINTS = [
    EntryPoint(
        "train",
        start=lambda out: ["train", "--quiet", "--out", str(out), *TRAIN_ARGS],
        resume=lambda out: ["train", "--quiet", "--out", str(out), "--resume", *TRAIN_ARGS],
        state=train_state,
        kill_points=[Fault(FORWARD, 5),  # inside step 5, after the step-3 checkpoint
                     Fault(SAVE, 2, when="after", truncate=0.5),  # the step-6 checkpoint torn, before its rename
                     Fault(RESULT, 1)],  # trained and checkpointed, result.json not yet written
        random_targets=[(FORWARD, "self", "before", None), (SAVE, "self", "after", 0.3)],
    ),
    EntryPoint(
        "arena",
        start=lambda out: ["arena", str(out.parent / "sweep.yaml"), "--out", str(out), "--no-report"],
        resume=lambda out: ["arena", str(out.parent / "sweep.yaml"), "--out", str(out), "--no-report"],
        state=arena_state,
        kill_points=[Fault(FORWARD, 3),  # a worker dies mid-run; the sweep records it and goes on
                     Fault(FORWARD, 12, victim="parent")],  # the sweep dies while its second run trains
        random_targets=[(FORWARD, "parent", "before", None), (FORWARD, "self", "before", None),
                        (SAVE, "self", "after", 0.5), (SAVE, "parent", "after", None)],
    ),
]


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[str, tuple[Path, Any]]:
    """Each entry point run once, uninterrupted, and its final state."""
    refs = {}
    for ep in ENTRY_POINTS:
        work = tmp_path_factory.mktemp(f"ref-{ep.name}")
        (work / "sweep.yaml").write_text(json.dumps(SWEEP))
        done = run_cli(ep.start(work / "out"), work)
        assert done.returncode == 0, done.stderr
        refs[ep.name] = (work, ep.state(work / "out"))
    return refs


def interrupt_and_resume(ep: EntryPoint, fault: Fault, work: Path) -> Any:
    work.mkdir(parents=True, exist_ok=True)
    (work / "sweep.yaml").write_text(json.dumps(SWEEP))
    out = work / "out"
    killed = run_cli(ep.start(out), work, fault, work / "calls")
    # The command was killed (-9), or, when only a worker was, finished with that run recorded as failed.
    assert killed.returncode == -signal.SIGKILL or (fault.victim == "self" and ep.name == "arena"), killed.stderr
    assert int((work / "calls").read_text()) >= fault.at  # the kill point was reached
    resumed = run_cli(ep.resume(out), work)
    assert resumed.returncode == 0, resumed.stderr
    assert not list(out.rglob(f"{TEMP_PREFIX}*")), "a torn temporary file was left behind"
    return ep.state(out)


CASES = [pytest.param(ep, f, id=f"{ep.name}-{f}") for ep in ENTRY_POINTS for f in ep.kill_points]


@pytest.mark.parametrize("ep,fault", CASES)
def test_killed_then_resumed_equals_uninterrupted(ep, fault, references, tmp_path):
    assert interrupt_and_resume(ep, fault, tmp_path) == references[ep.name][1]


def count_calls(ep: EntryPoint, target: str, work: Path) -> int:
    work.mkdir(parents=True)
    (work / "sweep.yaml").write_text(json.dumps(SWEEP))
    done = run_cli(ep.start(work / "out"), work, Fault(target, 0), work / "calls")
    assert done.returncode == 0, done.stderr
    return int((work / "calls").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("ep", ENTRY_POINTS, ids=[ep.name for ep in ENTRY_POINTS])
def test_random_kill_points(ep, references, tmp_path):
    rng = random.Random(f"kill9-{ep.name}")
    drawn = [ep.random_targets[i % len(ep.random_targets)] for i in range(RANDOM_POINTS)]
    # One uninterrupted count per target drawn (each is a whole run of the command).
    totals = {t: count_calls(ep, t, tmp_path / f"count-{i}") for i, t in enumerate(dict.fromkeys(t for t, *_ in drawn))}
    for i, (target, victim, when, cut) in enumerate(drawn):
        fault = Fault(target, rng.randint(1, totals[target]), victim, when, cut)
        state = interrupt_and_resume(ep, fault, tmp_path / f"point-{i}")
        assert state == references[ep.name][1], fault
