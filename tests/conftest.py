from __future__ import annotations

import os

# One thread per process, set before torch is imported (and inherited by the subprocesses tests
# start): the tests run tiny tensors, for which a second thread only adds contention on a busy machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.helpers import tiny_cfg as _tiny_cfg  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a training-to-quality test or one past ~5 s on a laptop CPU; "
                                       "deselect with -m 'not slow'")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` are skipped where torch sees no CUDA device (``make test-gpu`` runs them)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (make test-gpu)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture
def tiny_cfg():
    """A run that trains in a fraction of a second: ``tiny_cfg(*overrides)``."""
    return _tiny_cfg
