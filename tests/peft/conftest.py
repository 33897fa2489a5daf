from __future__ import annotations

import pytest

from tests.helpers import tiny_cfg
from trevo.train import train


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """A tiny byte-LM run that the PEFT tests fine-tune to another task."""
    out = tmp_path_factory.mktemp("byte_lm")
    train(tiny_cfg(), out, progress=False)
    return out
