"""Plug-ins: components of one's own load with --import (a file or a module), through the
``trevo.plugins`` entry-point group, and in every process a run starts (TREVO_IMPORT)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trevo import plugins
from trevo.cli import main
from trevo.registry import get

PLUGIN = textwrap.dedent('''
    import torch
    from trevo.components.base import TokenMixer
    from trevo.registry import Paper, register

    @register("mixer", "{name}", paper=Paper("A test mixer", "", 2026), category="Test", family="{name}",
              causal=True, bidirectional=True, time="O(T·d)")
    class Mix(TokenMixer):
        """y = cumulative mean of x (causal) or the mean of the real tokens (bidirectional)."""

        def init_state(self, batch, device, dtype):
            return {{"s": torch.zeros(batch, self.d_model, device=device, dtype=dtype),
                    "n": torch.zeros((), device=device, dtype=dtype)}}

        def causal_forward(self, x, state):
            s = state["s"][:, None] + x.cumsum(1)
            n = state["n"] + torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype)
            return s / n[:, None], {{"s": s[:, -1], "n": n[-1]}}

        def bidirectional_forward(self, x, padding_mask, layout):
            w = torch.ones(x.shape[:2], dtype=x.dtype) if padding_mask is None else padding_mask.to(x.dtype)
            return ((x * w[..., None]).sum(1, keepdim=True) / w.sum(1)[:, None, None]).expand_as(x)
''')


def _env(**extra: str) -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k != plugins.ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (extra.pop("PYTHONPATH", ""), root) if p)
    return {**env, **extra}


def test_a_file_plugin_registers_and_is_recorded_for_child_processes(tmp_path, monkeypatch):
    monkeypatch.delenv(plugins.ENV, raising=False)
    path = tmp_path / "my_mean.py"
    path.write_text(PLUGIN.format(name="test_mean_file"))
    plugins.load(str(path))
    plugins.load(str(path))  # loading twice registers once
    assert get("mixer", "test_mean_file").factory.__doc__.startswith("y = cumulative mean")
    assert os.environ[plugins.ENV].split(os.pathsep) == [str(path.resolve())]
    # A child process started with this environment knows the component on `import trevo`.
    code = "import trevo; from trevo.registry import get; print(get('mixer', 'test_mean_file').name)"
    out = subprocess.run([sys.executable, "-c", code], env=_env(**{plugins.ENV: os.environ[plugins.ENV]}),
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "test_mean_file"


def test_the_contract_suite_passes_on_a_plugin(tmp_path, monkeypatch):
    from trevo.testing import check_mixer

    monkeypatch.delenv(plugins.ENV, raising=False)
    path = tmp_path / "contract_mean.py"
    path.write_text(PLUGIN.format(name="test_mean_contract"))
    plugins.load(str(path))
    passed = check_mixer("test_mean_contract")
    assert {"causality", "prefill+step", "split state", "padding", "trains"} <= set(passed)


def test_cli_import_of_a_module_name_and_its_errors(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_module_plugin.py").write_text(PLUGIN.format(name="test_mean_module"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(plugins.ENV, raising=False)
    assert main(["list", "--kind", "mixer", "--import", "my_module_plugin"]) == 0
    assert "test_mean_module" in capsys.readouterr().out
    assert main(["list", "--import", "no_such_module_anywhere"]) == 2
    assert "no module of that name" in capsys.readouterr().err
    assert main(["list", "--import", str(tmp_path / "missing.py")]) == 2
    assert "no such file" in capsys.readouterr().err
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("raise RuntimeError('boom')\n")
    assert main(["list", "--import", str(broken)]) == 2
    assert "RuntimeError: boom" in capsys.readouterr().err


def test_an_installed_package_registers_through_its_entry_point(tmp_path):
    package = tmp_path / "entry_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(PLUGIN.format(name="test_mean_entry_point"))
    dist = tmp_path / "entry_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: entry-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[trevo.plugins]\nentry_pkg = entry_pkg\n")
    code = "import trevo; from trevo.registry import get; print(get('mixer', 'test_mean_entry_point').name)"
    out = subprocess.run([sys.executable, "-c", code], env=_env(PYTHONPATH=str(tmp_path)), capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "test_mean_entry_point"


@pytest.mark.parametrize("value", ["", os.pathsep])
def test_an_empty_environment_variable_loads_nothing(value, monkeypatch):
    monkeypatch.setenv(plugins.ENV, value)
    plugins.load_environment()
