"""``python -m trevo …``: the CLI, e.g. under ``torchrun --nproc_per_node 2 -m trevo train …``."""

import sys

from trevo.cli import main

sys.exit(main())
