"""Width matching: the d_model (and, where widths are too coarse, the channel ``expand``) at which a
config meets a budget of parameters, training FLOPs per token, or generation-state bytes.

The arena compares at equal parameters (``param_budget``), equal compute (``flop_budget``) or equal
inference state (``state_budget``, MAD's second comparison: Poli et al. 2024, arXiv 2403.17844, compare
architectures at equal state size as well as at equal parameters).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from trevo.config import RunConfig
from trevo.errors import TrevoError
from trevo.models import build_model
from trevo.registry import get
from trevo.tasks.base import TaskInfo

# d_model is matched in steps of 2 (widths a component cannot take are skipped): parameters grow about
# as d², so a step is about 4/d of them, and the match is within 5% from d ≈ 80 up.
WIDTH_STEP = 2


class BudgetError(TrevoError, ValueError):
    """No width of a config meets the budget asked for."""


def count_params(cfg: RunConfig, info: TaskInfo) -> int:
    return sum(p.numel() for p in build_model(cfg.model, info).parameters())


def _channel_expand(cfg: RunConfig) -> float | None:
    """The channel mixer's ``expand`` (its hidden width over d_model), or None if it has none."""
    default = inspect.signature(get("channel", cfg.model.channel.name).factory).parameters.get("expand")
    if default is None:
        return None
    return float(cfg.model.channel.options.get("expand", default.default))


def count_flops(cfg: RunConfig, task: Any) -> int:
    """Matmul FLOPs per token of one training step (forward + backward) of ``cfg``'s model on one sequence of
    ``task``, counted by PyTorch's FlopCounterMode on the CPU (matmul work is linear in the batch, so the
    batch size does not change it; element-wise work, e.g. a recurrent scan's, is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    from trevo.train import logits_of

    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, task.info)
    batch = task.train_batch(0, 1, cfg.train.seed)
    with FlopCounterMode(display=False) as counter:
        task.loss(logits_of(model, batch), batch).backward()
    return int(round(counter.get_total_flops() / batch["input"].numel()))


def count_state_bytes(cfg: RunConfig, info: TaskInfo) -> int:
    """Bytes of generation state (KV cache or recurrent state) of ``cfg``'s model after a prefill of the
    task's ``seq_len`` tokens, as the arena's runs record it; an IncompatibleError for a model that does
    not generate (masked LM, classification) or has no recurrent form."""
    from trevo.errors import IncompatibleError
    from trevo.generate import state_bytes_at

    model = build_model(cfg.model, info)
    if not getattr(model, "causal", False) or not hasattr(model, "prefill"):
        raise IncompatibleError(f"{cfg.model.mixer.name!r} on this task does not generate, so it has no state "
                                f"to match a state_budget to; compare it at param_budget instead")
    with torch.no_grad():
        return state_bytes_at(model, info.seq_len)


def match_width(cfg: RunConfig, info: TaskInfo, budget: float,
                measure: Callable[[RunConfig], int] | None = None, unit: str = "parameter") -> tuple[RunConfig, int]:
    """The config whose parameter count (or ``measure``: FLOPs per token) is closest to ``budget``, and
    that count.

    First d_model, in steps of WIDTH_STEP: counts are close to quadratic in d_model, so three probes
    give a guess, and the search walks out from it until a buildable width on each side of the budget
    is found (widths a component cannot take, e.g. not a multiple of its head size, are skipped).
    Where the buildable widths are too coarse to land within 4%, the channel mixer's ``expand`` is
    then adjusted, the count being linear in it."""
    measure = measure or (lambda c: count_params(c, info))
    measure(cfg)  # a config that cannot build at any width fails here, with its own message

    def params_of(c: RunConfig) -> int | None:
        try:
            return measure(c)
        except TrevoError:
            return None

    probes = {d: params_of(cfg.replace({"model.d_model": d})) for d in (32, 128, 256)}
    known = [(d, p) for d, p in probes.items() if p is not None]
    guess = 128
    if len(known) == 3:
        a, b, c = np.polyfit([d for d, _ in known], [p for _, p in known], 2)
        # The root where the fit grows with d (a count linear in d, e.g. a KV cache's bytes, fits a ≈ 0, whose
        # spurious second root lies far out where the fit falls).
        roots = [r.real for r in np.roots([a, b, c - budget])
                 if abs(r.imag) < 1e-9 and r.real > 0 and 2 * a * r.real + b > 0]
        guess = int(round(min(roots) / WIDTH_STEP)) * WIDTH_STEP if roots else guess
    below: tuple[int, int] | None = None
    above: tuple[int, int] | None = None
    for offset in range(0, 40 * WIDTH_STEP, WIDTH_STEP):
        for d in {guess - offset, guess + offset}:
            p = probes[d] if d in probes else params_of(cfg.replace({"model.d_model": d})) if d > 0 else None
            if p is None:
                continue
            if p <= budget and (below is None or p > below[1]):
                below = (d, p)
            if p >= budget and (above is None or p < above[1]):
                above = (d, p)
        if below and above:
            break
    found = [x for x in (below, above) if x]
    if not found:
        raise BudgetError(f"no d_model near {guess} builds {cfg.model.mixer.name!r} for a {budget:,.0f}-{unit} budget")
    d, params = min(found, key=lambda x: abs(x[1] - budget))
    cfg = cfg.replace({"model.d_model": d})
    expand = _channel_expand(cfg)
    if expand is not None and abs(params - budget) > 0.04 * budget:
        probe = params_of(cfg.replace({"model.channel.expand": expand * 1.25}))
        if probe is not None and probe != params:
            slope = (probe - params) / (expand * 0.25)
            target = min(2 * expand, max(0.5 * expand, expand + (budget - params) / slope))
            tuned = cfg.replace({"model.channel.expand": round(target * 64) / 64})
            tuned_params = params_of(tuned)
            if tuned_params is not None and abs(tuned_params - budget) < abs(params - budget):
                cfg, params = tuned, tuned_params
    return cfg, params
