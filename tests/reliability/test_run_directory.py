"""Nothing a user wrote is overwritten; one writer per run directory; unusable output paths and
failed runs are handled cleanly; files get the usual permissions."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import TINY, sets
from trevo.cli import main
from trevo.config import RunConfig
from trevo.rundir import LOCK, RunDirError, run_directory
from trevo.train import TrainingDiverged, train

ROOT = Path(__file__).resolve().parents[2]

USER_CONFIG = """# my experiment: keep this comment
model: {d_model: 32, n_layers: 2}   # small
task: {name: byte_lm, seq_len: 32}
train: {batch_size: 4, steps: 6, eval_every: 3, checkpoint_every: 3, eval_batches: 2, warmup_steps: 2}
"""



def test_a_users_config_given_back_is_kept_byte_for_byte(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(USER_CONFIG)
    (run / "config.yaml").chmod(0o640)
    assert main(["train", "--quiet", "--config", str(run / "config.yaml"), "--out", str(run)]) == 0
    assert (run / "config.yaml").read_text() == USER_CONFIG
    assert (run / "config.yaml").stat().st_mode & 0o777 == 0o640
    assert main(["train", "--quiet", "--config", str(run / "config.yaml"), "--out", str(run), "--resume"]) == 0
    assert (run / "config.yaml").read_text() == USER_CONFIG


def test_another_config_in_the_run_directory_is_refused_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(USER_CONFIG)
    assert main(["train", "--quiet", "--out", str(run), *sets(*TINY, "train.steps=4")]) == 2
    err = capsys.readouterr().err
    assert "holds another config (train.steps: 6 in the file, 4 here)" in err
    assert "does not overwrite it" in err
    assert (run / "config.yaml").read_text() == USER_CONFIG
    assert sorted(p.name for p in run.iterdir()) == [LOCK, "config.yaml"]  # nothing trained, nothing removed
    (run / "config.yaml").write_text("not: [valid")
    assert main(["train", "--quiet", "--out", str(run), *sets(*TINY)]) == 2
    assert "exists and is not this run's config" in capsys.readouterr().err


def test_one_writer_per_run_directory(tmp_path, tiny_cfg):
    cfg = tiny_cfg()
    with run_directory(tmp_path / "run", cfg), pytest.raises(RunDirError, match=f"in use by another trevo run "
                                                                             f"\\(pid {os.getpid()}\\)"):
        train(cfg, tmp_path / "run", progress=False)
    assert train(cfg, tmp_path / "run", progress=False)["final"]  # the lock went with its holder


def test_two_processes_into_one_run_directory(tmp_path):
    """The second `trevo train` into a directory the first is training in is refused, and the first
    goes on training."""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "trevo.cli", "train", "--quiet", "--out", str(run),
            *sets(*TINY, "train.steps=100000", "train.checkpoint_every=100000",
                    "train.eval_every=100000")]
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ((run / LOCK).exists() and (run / LOCK).read_text() == str(first.pid)):
        assert time.time() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.05)
    second = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert second.returncode == 2 and f"in use by another trevo run (pid {first.pid})" in second.stderr
    assert first.poll() is None and not (run / "result.json").exists()  # untouched by the second
    first.terminate()
    first.communicate(timeout=120)


def test_an_output_path_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    assert main(["train", "--quiet", "--out", str(tmp_path / "file"), *sets(*TINY)]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert main(["train", "--quiet", "--out", str(tmp_path / "file" / "run"), *sets(*TINY)]) == 2
    assert "cannot use" in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "mine"


def test_read_only_output_paths(read_only_dir, capsys):
    for out in (read_only_dir, read_only_dir / "new" / "run"):
        assert main(["train", "--quiet", "--out", str(out), *sets(*TINY)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"trevo: error: cannot use {out} as the run directory: it is not writable")


def test_a_failed_train_leaves_no_folder_it_created(tmp_path, tiny_cfg, monkeypatch):
    assert main(["train", "--quiet", "--out", str(tmp_path / "a"), *sets(*TINY, "model.mixer.name=nope")]) == 2
    assert not (tmp_path / "a").exists()
    from trevo.tasks.byte_lm import ByteLM

    real = ByteLM.loss
    monkeypatch.setattr(ByteLM, "loss", lambda self, logits, batch: real(self, logits, batch) * float("nan"))
    with pytest.raises(TrainingDiverged):
        train(tiny_cfg(), tmp_path / "b", progress=False)
    assert not (tmp_path / "b").exists()  # it failed before its first checkpoint
    (tmp_path / "c").mkdir()  # a directory the user made is never removed
    with pytest.raises(TrainingDiverged):
        train(tiny_cfg(), tmp_path / "c", progress=False)
    assert (tmp_path / "c").is_dir()


def test_resume_without_a_checkpoint_says_it_starts_fresh(tmp_path, capsys):
    assert main(["train", "--quiet", "--resume", "--out", str(tmp_path / "run"), *sets(*TINY)]) == 0
    assert f"trevo: no checkpoint in {tmp_path / 'run'}: starting the run from step 0" in capsys.readouterr().err
    assert main(["train", "--quiet", "--resume", "--out", str(tmp_path / "run"), *sets(*TINY)]) == 0
    assert "no checkpoint" not in capsys.readouterr().err


def test_a_result_without_a_checkpoint_is_not_overwritten(tmp_path, tiny_cfg):
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(RunDirError, match="holds a result.json but no checkpoint"):
        train(tiny_cfg(), tmp_path, progress=False)
    assert (tmp_path / "result.json").read_text() == "{}"


def test_files_get_the_usual_permissions(tmp_path, tiny_cfg):
    old = os.umask(0o022)
    try:
        train(tiny_cfg(), tmp_path, progress=False)
        RunConfig().save(tmp_path / "saved.yaml")
    finally:
        os.umask(old)
    for name in ("config.yaml", "checkpoint.safetensors", "result.json", "saved.yaml"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_init_from_without_a_checkpoint_is_refused_before_the_run_directory(tmp_path, capsys):
    assert main(["train", "--quiet", "--out", str(tmp_path / "run"),
                 *sets(*TINY, f"train.init_from={tmp_path / 'nothing'}")]) == 2
    err = capsys.readouterr().err
    assert f"train.init_from={tmp_path / 'nothing'}: no checkpoint.safetensors there" in err
    assert not (tmp_path / "run").exists()
