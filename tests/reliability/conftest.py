from __future__ import annotations

import os
import shutil
import subprocess

import pytest


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nothing can be created in, even by root (which ignores permission bits): made
    immutable with chattr where the test runs as root, mode 0555 otherwise."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() == 0:
        if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
            pytest.skip("running as root without chattr: no way to make a read-only directory")
        yield folder
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
