"""Measuring one callable: wall time, peak memory, FLOPs, and the machine's own matmul FLOP/s.

Time: the median of repeated calls after a warm-up. On CPU a call is timed with ``perf_counter``;
on CUDA with a pair of CUDA events around it (the same code path, only the clock differs).

Peak memory is the extra memory one call needs beyond what already exists (parameters, inputs):
- CUDA: ``torch.cuda.max_memory_allocated`` minus ``memory_allocated`` before the call.
- CPU (Linux): the process's resident-set high-water mark (``VmHWM``) minus its resident set before
  the call. Python-level allocation tracers (``tracemalloc``) do not see torch's allocator, so the
  operating system's view is used, made to track live tensors: the high-water mark is reset through
  ``/proc/self/clear_refs`` just before the call, free heap pages are returned first
  (``malloc_trim``) and glibc's mmap threshold is pinned at 64 KiB during the call, so every tensor
  of 64 KiB or more gets its own mapping that is returned to the system when the tensor is freed.
  Where this is unavailable (not Linux/glibc) memory is reported as missing, never guessed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

_MiB = 2 ** 20
_M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h
_SMALL_MMAP = 64 * 1024
_LARGE_MMAP = 32 * _MiB  # glibc's ceiling for its dynamic threshold: the steady state of a long run


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes (CUDA events on a GPU, ``perf_counter`` elsewhere)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000.0
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def repeat_times(fn: Callable[[], object], device: torch.device, repeats: int, budget_s: float,
                 first_s: float) -> list[float]:
    """Up to ``repeats`` timed calls, fewer when a call of about ``first_s`` seconds would make them
    run past ``budget_s`` (at least one)."""
    n = max(1, min(repeats, int(budget_s / first_s) if first_s > 0 else repeats))
    return [time_call(fn, device) for _ in range(n)]


def first_call(fn: Callable[[], object], device: torch.device, cap_s: float) -> float:
    """Seconds of a first (warm-up) call. One-time costs (kernel selection, first page faults) can
    push it past the cap: a call within 3× the cap is timed once more and that second time counts."""
    took = time_call(fn, device)
    if cap_s < took <= 3 * cap_s:
        took = time_call(fn, device)
    return took


def achieved_flop_s(flops: int, seconds: float) -> float:
    """FLOP/s of a call; nan when nothing was counted (e.g. FFTs, which FlopCounterMode skips)."""
    return flops / seconds if flops > 0 and seconds > 0 else math.nan


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


class _Glibc:
    """glibc's malloc controls and Linux's resident-set counters, where both exist."""

    def __init__(self) -> None:
        self.libc = None
        name = ctypes.util.find_library("c")
        clear = Path("/proc/self/clear_refs")
        if name and clear.exists():
            try:
                libc = ctypes.CDLL(name)
                if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
                    clear.write_text("5")
                    self.libc = libc
            except OSError:
                self.libc = None

    @staticmethod
    def status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)


_GLIBC: _Glibc | None = None


def memory_method(device: torch.device) -> str:
    """The name of the peak-memory method used on ``device`` ("" when none is available)."""
    global _GLIBC
    if device.type == "cuda":
        return "cuda_max_memory_allocated"
    if _GLIBC is None:
        _GLIBC = _Glibc()
    return "rss_high_water" if _GLIBC.libc is not None else ""


def peak_bytes(fn: Callable[[], object], device: torch.device) -> int | None:
    """Extra bytes at the peak of one call of ``fn`` over the memory in use before it (None where the
    platform offers no faithful measure)."""
    method = memory_method(device)
    gc.collect()
    if method == "cuda_max_memory_allocated":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    if not method:
        return None
    assert _GLIBC is not None and _GLIBC.libc is not None
    libc = _GLIBC.libc
    libc.malloc_trim(0)
    libc.mallopt(_M_MMAP_THRESHOLD, _SMALL_MMAP)
    try:
        Path("/proc/self/clear_refs").write_text("5")
        base = _GLIBC.status("VmRSS")
        fn()
        return max(0, _GLIBC.status("VmHWM") - base)
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, _LARGE_MMAP)


def _cpu_flash_forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query, key, value)


def _cpu_flash_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out, query, key, value)


_ATTENTION_OPS = ("_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                  "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu")


def _halved_if_causal(formula, index: int):
    def count(*args, out_val=None, **kwargs) -> int:
        causal = kwargs["is_causal"] if "is_causal" in kwargs else len(args) > index and bool(args[index])
        n = formula(*args, out_val=out_val, **kwargs)
        return n // 2 if causal else n

    count._get_raw = True  # FlopCounterMode then passes tensors, as the wrapped formula expects
    return count


def _flop_formulas() -> dict:
    from torch.utils.flop_counter import flop_registry, shape_wrapper

    aten = torch.ops.aten
    known = dict(flop_registry)
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        known[aten._scaled_dot_product_flash_attention_for_cpu] = shape_wrapper(_cpu_flash_forward)
        known[aten._scaled_dot_product_flash_attention_for_cpu_backward] = shape_wrapper(_cpu_flash_backward)
    mapping = {}
    for name in _ATTENTION_OPS:
        for op_name in (name, name + "_backward"):
            packet = getattr(aten, op_name, None)
            if packet is None or packet not in known:
                continue
            args = [a.name for a in packet.default._schema.arguments]
            if "is_causal" in args:
                mapping[packet] = _halved_if_causal(known[packet], args.index("is_causal"))
    return mapping


def count_flops(fn: Callable[[], object]) -> int:
    """Matmul-class FLOPs (matmuls, convolutions, attention) of one call, by
    ``torch.utils.flop_counter.FlopCounterMode``; elementwise work is not counted. Fused causal
    attention kernels are counted as half their dense FLOPs (they skip the masked half, and
    FlashAttention's benchmarks count them so), and PyTorch's CPU flash-attention kernel, which it
    counts as zero, gets the same formula as the GPU kernels. Explicit masked matmuls count in full:
    that work is done."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=_flop_formulas()) as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_flops_per_s(device: torch.device, dtype: torch.dtype, shape: tuple[int, int, int, int] | None = None,
                       repeats: int = 5) -> tuple[float, str]:
    """This machine's ``torch.matmul`` FLOP/s on a (batch, m, k) @ (batch, k, n) product, best of
    ``repeats`` after a warm-up, and the shape as text. Default: one square 1024 product on CPU,
    4096 on CUDA."""
    if shape is None:
        n = 4096 if device.type == "cuda" else 1024
        shape = (1, n, n, n)
    b, m, k, n = shape
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(b, m, k, generator=gen).to(device, dtype)
    y = torch.randn(b, k, n, generator=gen).to(device, dtype)
    torch.matmul(x, y)
    best = min(time_call(lambda: torch.matmul(x, y), device) for _ in range(repeats))
    return 2.0 * b * m * k * n / best, f"{b}x{m}x{k} @ {b}x{k}x{n}"


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


def mib(nbytes: float | None) -> float:
    return math.nan if nbytes is None else nbytes / _MiB
