"""``trevo bench peers``: trevo's ops and mixers beside the pure-torch references of their peers, in
one process, on the same inputs, after checking that both compute the same thing.

Peers (the optional extra ``peers``: ``pip install 'trevo[peers]'`` then ``pip install --no-deps
fla-core==0.6.0``): flash-linear-attention's naive references (``fla/ops/*/naive.py``; loaded from
their files, since ``fla.ops`` imports its Triton kernels at import time) and the torch paths of
Hugging Face transformers (``MambaMixer`` and ``Mamba2Mixer`` without their CUDA kernels, RWKV's
``rwkv_linear_attention_cpu``). On CUDA (``--device cuda``) fla's Triton kernels join as peers
(``chunk_simple_gla``, ``chunk_gla``, ``chunk_rwkv6``, and ``chunk_delta_rule``, which takes 16-bit
inputs only), against trevo's own Triton kernels where they serve. Every point first runs both sides
on the same inputs and records the largest difference relative to the peer's largest output (and, for
``fwdbwd``, of the input gradients); a pair that disagrees by more than ``Place.tolerance`` is not timed.
Times are medians of ``repeats`` calls after a warm-up; ``speedup`` is the peer's time over trevo's
(> 1: trevo is faster).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from trevo.bench import measure as M
from trevo.bench.mixers import machine_meta
from trevo.bench.output import fmt, table_of
from trevo.bench.runner import Row, heartbeat, run_points
from trevo.dtypes import DTYPES
from trevo.errors import TrevoError
from trevo.tables import markdown

TOLERANCE = 1e-3  # float32 over thousands of recurrent steps
INSTALL = "install the peers extra: pip install 'trevo[peers]' && pip install --no-deps fla-core==0.6.0"


@dataclass(frozen=True)
class Place:
    """Where both sides of a pair run, and in which dtype."""

    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def tolerance(self) -> float:
        """The largest relative difference at which two sides count as computing the same thing: float32
        on the CPU; on CUDA fla's kernels take ``tl.dot``'s default precision for float32 inputs (TF32, a
        10-bit mantissa); 16-bit inputs round every product to 8 (bfloat16) or 11 (float16) bits."""
        if self.dtype in (torch.bfloat16, torch.float16):
            return 5e-2
        return 1e-2 if self.cuda else TOLERANCE


class MissingPeer(TrevoError):
    """A peer library is not installed."""


def fla_function(relative: str, name: str) -> Callable:
    """``name`` from ``fla/<relative>`` (a naive reference that needs only torch and einops)."""
    spec = importlib.util.find_spec("fla")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise MissingPeer(f"fla-core is not installed; {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    module_spec = importlib.util.spec_from_file_location("trevo_peer_" + relative.replace("/", "_")[:-3], path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise MissingPeer(f"{path} could not be loaded ({exc}); {INSTALL}") from exc
    return getattr(module, name)


def fla_triton(module: str, name: str) -> Callable:
    """fla's Triton kernel ``fla.ops.<module>.<name>`` (a peer on CUDA only)."""
    try:
        return getattr(importlib.import_module(f"fla.ops.{module}"), name)
    except ImportError as exc:
        raise MissingPeer(f"fla's Triton kernels could not be imported ({exc}); {INSTALL}, and Triton") from exc


def _fla_triton_side(module: str, name: str, inputs: list[torch.Tensor], scale: float) -> Side:
    """fla's Triton kernel as a peer side on ``inputs`` laid out ``[B, T, H, …]``."""
    kernel = fla_triton(module, name)
    return Side(lambda: _bthd(kernel(*inputs, scale=scale)[0]), inputs, transposed=True)


def _transformers(module: str):
    try:
        return importlib.import_module(f"transformers.models.{module}")
    except ModuleNotFoundError as exc:
        raise MissingPeer(f"transformers is not installed; {INSTALL}") from exc


@dataclass
class Side:
    """One side of a pair: a call on its own leaf tensors (``inputs``, gradients taken of them)."""

    call: Callable[[], torch.Tensor]
    inputs: list[torch.Tensor]
    module: torch.nn.Module | None = None
    transposed: bool = False  # inputs laid out [B, T, H, …] against trevo's [B, H, T, …]

    def grads(self) -> list[torch.Tensor | None]:
        return [None if t.grad is None else t.grad.transpose(1, 2) if self.transposed else t.grad for t in self.inputs]


Setup = Callable[[int, torch.Generator, Place], tuple[Side, dict[str, Side]]]


def _leaves(place: Place, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Leaf copies of CPU-drawn inputs (the same numbers on every device) at the place."""
    return [t.detach().to(place.device, place.dtype).requires_grad_() for t in tensors]


def _qkv(T, gen, B=1, H=4, D=64):
    q, k, v = (torch.randn(B, H, T, D, generator=gen) for _ in range(3))
    return q, k, v


def _bthd(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(1, 2).contiguous()


def scalar_decay(T: int, gen: torch.Generator, place: Place):
    from trevo.ops.linear_recurrence import linear_recurrence

    q, k, v = _qkv(T, gen)
    g = F.logsigmoid(torch.randn(1, 4, T, generator=gen) + 4)
    scale = q.shape[-1] ** -0.5
    mine = _leaves(place, q, k, v, g)
    trevo = Side(lambda: linear_recurrence(*mine[:3], log_decay=mine[3], scale=scale, form="chunk")[0], mine)
    theirs = _leaves(place, *(_bthd(x) for x in (q, k, v)), g.transpose(1, 2).contiguous())
    chunk = fla_function("ops/simple_gla/naive.py", "naive_chunk_simple_gla")
    peers = {"fla naive_chunk_simple_gla": Side(lambda: _bthd(chunk(*theirs, scale=scale)[0]), theirs,
                                                transposed=True)}
    if place.cuda:
        peers["fla chunk_simple_gla (Triton)"] = _fla_triton_side("simple_gla", "chunk_simple_gla",
                                                                  _leaves(place, *theirs), scale)
    return trevo, peers


def vector_decay(T: int, gen: torch.Generator, place: Place):
    from trevo.ops.linear_recurrence import linear_recurrence

    q, k, v = _qkv(T, gen)
    g = F.logsigmoid(torch.randn(*q.shape, generator=gen) + 4)
    scale = q.shape[-1] ** -0.5
    mine = _leaves(place, q, k, v, g)
    trevo = Side(lambda: linear_recurrence(*mine[:3], log_decay=mine[3], scale=scale, form="chunk")[0], mine)
    theirs = _leaves(place, *(_bthd(x) for x in (q, k, v, g)))
    recurrent = fla_function("ops/gla/naive.py", "naive_recurrent_gla")
    peers = {"fla naive_recurrent_gla": Side(lambda: _bthd(recurrent(*theirs)[0]), theirs, transposed=True)}
    if place.cuda:
        peers["fla chunk_gla (Triton)"] = _fla_triton_side("gla", "chunk_gla", _leaves(place, *theirs), scale)
    return trevo, peers


def rwkv6(T: int, gen: torch.Generator, place: Place):
    from trevo.ops.linear_recurrence import linear_recurrence

    q, k, v = _qkv(T, gen)
    w = F.logsigmoid(torch.randn(*q.shape, generator=gen) + 4)
    u = torch.randn(4, 64, generator=gen) * 0.1
    scale = q.shape[-1] ** -0.5
    mine = _leaves(place, q, k, v, w, u)
    trevo = Side(lambda: linear_recurrence(*mine[:3], log_decay=mine[3], bonus=mine[4], scale=scale,
                                           form="chunk")[0], mine)
    peers = {}
    recurrent = fla_function("ops/rwkv6/recurrent_naive.py", "naive_recurrent_rwkv6")
    theirs = _leaves(place, q, k, v, w, u)
    peers["fla naive_recurrent_rwkv6"] = Side(lambda: recurrent(*theirs, scale=scale)[0], theirs)
    if place.cuda:
        fast = _leaves(place, *(_bthd(x) for x in (q, k, v, w)), u)
        peers["fla chunk_rwkv6 (Triton)"] = _fla_triton_side("rwkv6", "chunk_rwkv6", fast, scale)
    return trevo, peers


def delta_rule(T: int, gen: torch.Generator, place: Place):
    from trevo.ops.delta_rule import delta_rule as trevo_delta_rule

    q, k, v = _qkv(T, gen)
    k = F.normalize(k, dim=-1)  # DeltaNet's L2-normalised keys keep the recurrence contractive
    beta = torch.sigmoid(torch.randn(1, 4, T, generator=gen))
    scale = q.shape[-1] ** -0.5
    mine = _leaves(place, q, k, v, beta)
    trevo = Side(lambda: trevo_delta_rule(*mine, scale=scale, form="chunk")[0], mine)
    chunkwise = fla_function("ops/delta_rule/naive.py", "delta_rule_chunkwise")
    recurrence = fla_function("ops/delta_rule/naive.py", "delta_rule_recurrence")
    theirs, theirs_rec = _leaves(place, q, k, v, beta), _leaves(place, q, k, v, beta)
    peers = {"fla delta_rule_chunkwise (no grad)": Side(lambda: chunkwise(*theirs)[0], theirs),
             "fla delta_rule_recurrence": Side(lambda: recurrence(*theirs_rec)[0], theirs_rec)}
    if place.cuda and place.dtype != torch.float32:  # fla's chunk_delta_rule refuses float32 inputs
        fast = _leaves(place, *(_bthd(x) for x in (q, k, v)), beta.transpose(1, 2).contiguous())
        peers["fla chunk_delta_rule (Triton)"] = _fla_triton_side("delta_rule", "chunk_delta_rule", fast, scale)
    return trevo, peers


def rwkv4(T: int, gen: torch.Generator, place: Place):
    from trevo.ops.rwkv4 import wkv4, wkv4_init_state
    from trevo.registry import build

    C = 256
    mixer = build("mixer", "rwkv4", {}, d_model=C, causal=True)  # its form choice and chunk size, as it trains
    k, v = torch.randn(1, T, C, generator=gen), torch.randn(1, T, C, generator=gen)
    time_decay, time_first = torch.randn(C, generator=gen) * 0.5 - 1, torch.randn(C, generator=gen) * 0.5
    mine = _leaves(place, time_decay, time_first, k, v)
    state = wkv4_init_state(1, C, place.device, place.dtype)
    trevo = Side(lambda: wkv4(torch.exp(mine[0]), mine[1], mine[2], mine[3], state, form=mixer.form_for(T),
                              chunk_size=mixer.chunk_size)[0], mine)
    hf = _transformers("rwkv.modeling_rwkv").rwkv_linear_attention_cpu
    theirs = _leaves(place, time_decay, time_first, k, v)
    return trevo, {"HF rwkv_linear_attention_cpu": Side(lambda: hf(*theirs)[0], theirs)}


def mamba(T: int, gen: torch.Generator, place: Place):
    from trevo.registry import build

    torch.manual_seed(0)
    mine = build("mixer", "mamba", {}, d_model=256, causal=True)
    hf_mod = _transformers("mamba.modeling_mamba")
    config = _transformers("mamba.configuration_mamba").MambaConfig(
        hidden_size=256, state_size=mine.d_state, intermediate_size=mine.d_inner, conv_kernel=mine.conv.conv_size,
        time_step_rank=mine.dt_low_rank_dim, use_bias=False, use_conv_bias=True, num_hidden_layers=1)
    theirs = hf_mod.MambaMixer(config, layer_idx=0)
    with torch.no_grad():
        for name, value in {"in_proj.weight": mine.in_proj.weight, "conv1d.weight": mine.conv.weight,
                            "conv1d.bias": mine.conv.bias, "x_proj.weight": mine.x_proj.weight,
                            "dt_proj.weight": mine.dt_proj.weight, "dt_proj.bias": mine.dt_bias,
                            "A_log": mine.A_log, "D": mine.D, "out_proj.weight": mine.out_proj.weight}.items():
            theirs.get_parameter(name).copy_(value)
    mine, theirs = mine.to(place.device, place.dtype), theirs.to(place.device, place.dtype)
    x = torch.randn(1, T, 256, generator=gen)
    a, b = _leaves(place, x), _leaves(place, x)
    return Side(lambda: mine(a[0]), a, mine), {"HF MambaMixer (torch path)": Side(lambda: theirs(b[0]), b, theirs)}


def mamba2(T: int, gen: torch.Generator, place: Place):
    from trevo.registry import build

    torch.manual_seed(0)
    mine = build("mixer", "mamba2", {}, d_model=256, causal=True)
    hf_mod = _transformers("mamba2.modeling_mamba2")
    config = _transformers("mamba2.configuration_mamba2").Mamba2Config(
        hidden_size=256, expand=2, head_dim=mine.head_dim, num_heads=mine.n_heads, state_size=mine.d_state, n_groups=1,
        chunk_size=mine.chunk_size_for(T), conv_kernel=mine.conv.conv_size, use_bias=False, use_conv_bias=True,
        layer_norm_epsilon=mine.norm.eps, num_hidden_layers=1)
    theirs = hf_mod.Mamba2Mixer(config, layer_idx=0)
    with torch.no_grad():
        for name, value in {"in_proj.weight": mine.in_proj.weight, "conv1d.weight": mine.conv.weight,
                            "conv1d.bias": mine.conv.bias, "dt_bias": mine.dt_bias, "A_log": mine.A_log, "D": mine.D,
                            "norm.weight": mine.norm.weight, "out_proj.weight": mine.out_proj.weight}.items():
            theirs.get_parameter(name).copy_(value)
    mine, theirs = mine.to(place.device, place.dtype), theirs.to(place.device, place.dtype)
    x = torch.randn(1, T, 256, generator=gen)
    a, b = _leaves(place, x), _leaves(place, x)
    return Side(lambda: mine(a[0]), a, mine), {"HF Mamba2Mixer (torch path)": Side(lambda: theirs(b[0]), b, theirs)}


PAIRS: dict[str, tuple[str, Setup]] = {
    "scalar_decay": ("linear_recurrence chunk, scalar decay (RetNet, Mamba-2's SSD)", scalar_decay),
    "vector_decay": ("linear_recurrence chunk, vector decay (GLA)", vector_decay),
    "rwkv6": ("linear_recurrence chunk, vector decay + bonus (RWKV-6)", rwkv6),
    "delta_rule": ("delta_rule chunk (DeltaNet)", delta_rule),
    "rwkv4": ("wkv4 (RWKV-4), the mixer's auto form and chunk size", rwkv4),
    "mamba": ("mixer mamba (auto form), d_model 256", mamba),
    "mamba2": ("mixer mamba2 (auto form), d_model 256", mamba2),
}


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def _fn(side: Side, mode: str, grad: torch.Tensor | None):
    if side.module is not None:
        side.module.train(mode == "fwdbwd")
    if mode == "fwd":
        def fn():
            with torch.no_grad():
                return side.call()
        return fn

    def fn():
        for t in side.inputs:
            t.grad = None
        if side.module is not None:
            side.module.zero_grad(set_to_none=True)
        side.call().backward(grad)
    return fn


def measure_point(point: Row) -> Row:
    """Agreement, then the time of trevo's side and of the peer's, at one length and mode."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(point.get("seed", 0))
    place = _place(point)
    try:
        trevo, peers = PAIRS[point["pair"]][1](point["length"], gen, place)
    except MissingPeer as exc:
        return {**point, "status": "skipped", "reason": str(exc)}
    peer = peers.get(point["peer"])
    if peer is None:
        return {**point, "status": "skipped", "reason": f"no peer {point['peer']!r}"}
    mode = point["mode"]
    if mode == "fwdbwd" and "no grad" in point["peer"]:
        return {**point, "status": "skipped", "reason": "the reference runs under torch.no_grad (forward only)"}
    device = place.device
    for side in (trevo, peer):
        if side.module is not None:
            side.module.train(mode == "fwdbwd")
    y_mine, y_theirs = trevo.call(), peer.call()
    error = _relative_error(y_mine, y_theirs)
    grad = torch.randn(y_mine.shape, generator=gen).to(device, y_mine.dtype)
    if mode == "fwdbwd":
        (y_mine * grad).sum().backward()
        (y_theirs * grad).sum().backward()
        error = max([error] + [_relative_error(a, b) for a, b in zip(trevo.grads(), peer.grads(), strict=True)
                               if a is not None and b is not None])
    row = {**point, "max_rel_error": error}
    limit = place.tolerance
    if not math.isfinite(error) or error > limit:
        return {**row, "status": "disagree", "reason": f"outputs differ by {error:.2e} relative (> {limit:g})"}
    cap = point["time_cap_s"]
    times = {}
    for label, side in (("trevo", trevo), ("peer", peer)):
        fn = _fn(side, mode, grad)
        warm = M.first_call(fn, device, cap)
        heartbeat()
        if warm > cap:
            times[label] = [warm]
            continue
        times[label] = M.repeat_times(fn, device, point["repeats"], cap * point["repeats"], warm)
    trevo_ms, peer_ms = 1000 * M.median(times["trevo"]), 1000 * M.median(times["peer"])
    return {**row, "status": "ok", "reason": "", "trevo_ms": trevo_ms, "peer_ms": peer_ms,
            "speedup": peer_ms / trevo_ms, "n_timed": min(len(t) for t in times.values())}


def _place(point: Row) -> Place:
    return Place(torch.device(point.get("device", "cpu")), DTYPES[point.get("dtype", "float32")])


def peer_names(pair: str, device: str = "cpu", dtype: str = "float32") -> list[str]:
    """The peers of ``pair`` on ``device`` (built at a tiny length; empty when the libraries are missing)."""
    try:
        return list(PAIRS[pair][1](64, torch.Generator().manual_seed(0), _place({"device": device, "dtype": dtype}))[1])
    except MissingPeer:
        return []


def run(pairs: list[str] | None, lengths: list[int], modes=("fwd", "fwdbwd"), *, repeats: int = 5,
        time_cap_s: float = 120.0, threads: int | None = 1, isolate: bool = True, on_row=None, device: str = "cpu",
        dtype: str = "float32") -> dict[str, Any]:
    chosen = list(pairs) if pairs else list(PAIRS)
    unknown = [p for p in chosen if p not in PAIRS]
    if unknown:
        raise TrevoError(f"unknown pair {', '.join(unknown)}; --pairs takes {', '.join(PAIRS)}")
    if threads:
        torch.set_num_threads(threads)
    points, skipped = [], []
    for pair in chosen:
        peers = peer_names(pair, device, dtype)
        if not peers:
            skipped.append({"bench": "peers", "pair": pair, "peer": "", "mode": "", "length": 0, "status": "skipped",
                            "reason": INSTALL})
        for peer in peers:
            for mode in modes:
                for length in sorted(set(lengths)):
                    points.append({"bench": "peers", "pair": pair, "what": PAIRS[pair][0], "peer": peer, "mode": mode,
                                   "length": int(length), "repeats": repeats, "time_cap_s": time_cap_s,
                                   "device": device, "dtype": dtype})
    rows = run_points(measure_point, points, group=lambda p: f"{p['pair']} {p['peer']} {p['mode']}", isolate=isolate,
                      hard_timeout_s=(repeats + 2) * 2 * time_cap_s + 60, threads=threads, on_row=on_row) + skipped
    meta = machine_meta(torch.device(device), dtype, threads)
    meta.update(bench="peers", lengths=sorted(set(lengths)), repeats=repeats, peers=_versions())
    return {"meta": meta, "rows": rows}


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("fla-core", "transformers", "einops"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def table(result: dict[str, Any]) -> str:
    header = ["trevo", "peer", "mode", "T", "trevo ms", "peer ms", "speedup", "max rel. error", "status"]
    lines = [[r.get("what", r["pair"]), r["peer"], r["mode"], r["length"], fmt(r.get("trevo_ms")),
              fmt(r.get("peer_ms")), fmt(r.get("speedup"), 3), fmt(r.get("max_rel_error"), 2),
              r["status"] + (f": {r['reason']}" if r["status"] != "ok" else "")] for r in result["rows"]]
    return markdown(table_of(header, lines))
