"""Run configs: YAML round trips, overrides, a clear error for every bad override or file, and a hash
that is stable across processes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trevo.config import ConfigError, RunConfig


def test_yaml_round_trip_and_overrides(tmp_path):
    cfg = RunConfig().override(["model.mixer.name=rwkv4", "model.mixer.chunk_size=16", "train.lr=3e-3",
                                "model.channel=rwkv4_channel", "task.seq_len=128"])
    assert cfg.model.mixer.name == "rwkv4" and cfg.model.mixer.options == {"chunk_size": 16}
    assert cfg.train.lr == pytest.approx(3e-3) and cfg.task.options == {"seq_len": 128}
    cfg.save(tmp_path / "c.yaml")
    again = RunConfig.load(tmp_path / "c.yaml")
    assert again == cfg and again.hash() == cfg.hash()
    assert RunConfig().hash() != cfg.hash()


@pytest.mark.parametrize("override,message", [
    (["train.stepz=3"], "unknown field 'stepz'"),
    (["train.steps=many"], "expected an integer"),
    (["nonsense"], "dotted.key=value"),
    (["train.steps.x=1"], "is not a section"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig().override(override)


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig.load(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        RunConfig.load(tmp_path / "bad.yaml")
    (tmp_path / "evil.yaml").write_text("model: !!python/object/apply:os.system ['echo hi']")
    with pytest.raises(ConfigError):  # the safe loader refuses to construct objects
        RunConfig.load(tmp_path / "evil.yaml")


def test_config_hash_is_stable_across_processes():
    cfg = RunConfig().override(["model.mixer.name=rwkv4", "train.lr=1e-3"])
    code = ("from trevo.config import RunConfig; "
            "print(RunConfig().override(['model.mixer.name=rwkv4', 'train.lr=1e-3']).hash())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == cfg.hash()


def test_the_run_key_of_a_config_is_unchanged_by_fields_at_their_neutral_values():
    # Keys computed by trevo before train.precision, train.log and train.parallel existed (commit 06609bb):
    # an arena store written then keeps its keys, so re-running its sweep resumes instead of redoing it.
    assert RunConfig().hash() == "8b1144a3287a4a8d"
    assert RunConfig().override(["train.lr=1e-3", "model.mixer.name=gla"]).hash() == "ee3dc0d09a30424c"
    assert RunConfig().override(["train.log=tensorboard"]).hash() == RunConfig().hash()  # logging: not results
    keys = {RunConfig().override([f"train.precision={p}"]).hash() for p in ("fp32", "bf16", "fp16")}
    assert len(keys) == 3
    assert RunConfig().override(["train.parallel=ddp"]).hash() != RunConfig().hash()
