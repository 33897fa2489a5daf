"""The `trevo` command as a user runs it."""

from __future__ import annotations

import json

import pytest

from tests.helpers import TINY, sets
from trevo.cli import main


def test_list_json_and_filters(capsys):
    assert main(["list", "--json", "--kind", "mixer", "--capability", "recurrent"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["recurrent"] and r["kind"] == "mixer" for r in rows)
    assert {"rwkv4", "linear_attention"} <= {r["name"] for r in rows}
    assert main(["list", "--family", "rwkv4"]) == 0
    assert "rwkv4_channel" in capsys.readouterr().out


@pytest.mark.slow
def test_train_then_generate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--quiet", "--out", str(out), *sets(*TINY, "model.mixer.name=linear_attention")]) == 0
    assert "bpb" in capsys.readouterr().out
    for mode in ("recurrent", "parallel"):
        assert main(["generate", "--run", str(out), "--prompt", "import ", "--tokens", "8", "--mode", mode]) == 0
        assert capsys.readouterr().out.startswith("import ")


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["train", "--quiet", "--out", str(tmp_path), *sets("model.mixer.name=rwkv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trevo: error: unknown mixer 'rwkv'") and "Traceback" not in err
    assert main(["generate", "--run", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err



def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("argv,module,function,hint", [
    (["train", "--set", "train.steps=1"], "trevo.train", "train", "; `--resume` continues from the last checkpoint"),
    (["bench", "peers", "--pairs", "vector_decay"], "trevo.bench.peers", "run", "; nothing was written"),
    (["list"], "trevo.cli", "_list", ""),
])
def test_an_interrupt_names_what_the_command_kept(tmp_path, monkeypatch, capsys, argv, module, function, hint):
    import importlib

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(importlib.import_module(module), function, _interrupt)
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("trevo: interrupted" + hint), err
