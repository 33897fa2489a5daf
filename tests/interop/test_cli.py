"""The interop verbs from the command line: import hf, eval, export, docs, and their one-line errors."""

from __future__ import annotations

import pytest

from trevo.cli import main

pytest.importorskip("transformers", reason="the Hugging Face verbs need the optional extra: pip install 'trevo[hf]'")


def test_import_eval_export(hf_model, tmp_path, capsys):
    _, path = hf_model("llama")
    assert main(["import", "hf", str(path), "--out", str(tmp_path / "run")]) == 0
    assert "trevo eval" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "model.safetensors").is_file() and (tmp_path / "hf" / "config.json").is_file()
    assert main(["import", "hf", str(path), "--out", str(tmp_path / "run")]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["import", "hf", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trevo: error:") and "is not a directory" in err and "Traceback" not in err
    assert main(["export", str(tmp_path), "--format", "onnx", "--out", str(tmp_path / "x")]) == 2
    assert "formats: hf" in capsys.readouterr().err


def test_docs(tmp_path, capsys):
    assert main(["docs", "--out", str(tmp_path / "site")]) == 0
    assert (tmp_path / "site" / "index.html").is_file()
