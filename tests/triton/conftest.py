"""The Triton kernels run on CPU through Triton's interpreter: set before the kernels are defined."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
