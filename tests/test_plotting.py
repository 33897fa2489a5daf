"""matplotlib is optional: without it a plot is one clear error naming the extra, not an ImportError."""

from __future__ import annotations

import sys

import pytest

from trevo.errors import TrevoError
from trevo.plotting import pyplot


def test_a_missing_matplotlib_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` sees when it is not installed
    with pytest.raises(TrevoError, match=r"pip install 'trevo\[report\]'"):
        pyplot()


def test_pyplot_draws_to_files_only():
    pytest.importorskip("matplotlib")
    plt = pyplot()
    assert plt.get_backend().lower() == "agg"
