from __future__ import annotations

import pytest

from tests.helpers import tiny_cfg as _tiny_cfg


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a training-to-quality test or one past ~5 s on a laptop CPU; "
                                       "deselect with -m 'not slow'")


@pytest.fixture
def tiny_cfg():
    """A run that trains in a fraction of a second: ``tiny_cfg(*overrides)``."""
    return _tiny_cfg
