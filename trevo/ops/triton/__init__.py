"""Triton kernels beside the torch forms (DESIGN.md, "Performance"): each computes the same exact form
as its torch counterpart, is chosen automatically for CUDA tensors when Triton is installed, and is
tested against the torch form on CPU through Triton's interpreter (``TRITON_INTERPRET=1``).

``TREVO_TRITON=0`` turns them off (the torch forms run everywhere). Nothing here is needed on a CPU.
"""

from __future__ import annotations

import importlib.util
import os

import torch


def enabled(*tensors: torch.Tensor) -> bool:
    """Whether the Triton kernels serve these tensors: all on CUDA, in float32, float16 or bfloat16
    (float64 stays on the torch forms: GPUs have no fast float64 dot), Triton importable, and not
    turned off by ``TREVO_TRITON=0``. (The tests call the kernels directly under the interpreter.)"""
    if os.environ.get("TREVO_TRITON", "1") == "0" or importlib.util.find_spec("triton") is None:
        return False
    return all(t.is_cuda and t.dtype in (torch.float32, torch.float16, torch.bfloat16) for t in tensors)


def takes_chunk(chunk_size: int) -> bool:
    """Whether the matmul kernels (the engine's and the delta rule's) take this chunk: ``tl.dot`` needs a
    power of two of at least 16."""
    return chunk_size >= 16 and chunk_size & (chunk_size - 1) == 0
