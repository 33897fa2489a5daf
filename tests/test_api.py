"""The README's Python API examples, executed as written (in a temporary folder)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def api_examples() -> list[str]:
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_examples_run(tmp_path, monkeypatch, capsys):
    import trevo

    monkeypatch.chdir(tmp_path)
    blocks = api_examples()
    assert blocks, "the README has no Python API example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    params, vocab = printed[0].split()
    model = trevo.create_model("rwkv4", d_model=32, n_layers=2, task={"name": "byte_lm", "seq_len": 32})
    assert int(params) == model.num_params() and vocab == "256"
    assert printed[1].startswith("bpb ") and 0 < float(printed[1].split()[1]) < 9
    assert "('rwkv4', 'done')" in printed[-1] and "('softmax_attention', 'done')" in printed[-1]
    assert (tmp_path / "runs" / "api-arena" / "report.html").is_file()


def test_create_model_refuses_an_unknown_name():
    import pytest

    import trevo
    from trevo.config import ConfigError

    with pytest.raises(ConfigError, match="not a registered mixer"):
        trevo.create_model("rwkv44")


def test_train_is_the_function_and_the_module_still_imports():
    import trevo
    from trevo.train import build, lr_at  # noqa: F401

    assert callable(trevo.train) and trevo.train.__module__ == "trevo.api"


def test_the_readme_sweep_example_plans():
    import yaml

    from trevo.arena.sweep import parse_sweep, plan_sweep

    block = re.search(r"```yaml\nname: my_sweep\n(.*?)```", README.read_text(), flags=re.S)
    assert block, "the README has no sweep example"
    plan = plan_sweep(parse_sweep(yaml.safe_load("name: my_sweep\n" + block.group(1))))
    assert {(p.task, p.label) for p in plan if p.label == "fnet"} == {("mlm", "fnet")}
    assert len(plan) == 3 * 2 * (4 + 3)  # seeds × lrs × (variants on the byte LM + on the MLM)
