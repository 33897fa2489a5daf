"""Parity with flash-linear-attention 0.6.0's pure-PyTorch references for the evolved softmax
attentions: forgetting attention (``fla/ops/forgetting_attn/naive.py``), PaTH (``path_attn/naive.py``)
and NSA's three pieces (``nsa/naive.py``: compression, top-k selection, selected attention), every
trevo form, random inputs, lengths not a multiple of any chunk.

Each naive.py is loaded by file path; the fla imports NSA's file makes at the top (used only by its
variable-length paths) are served by stand-ins while it loads, so neither Triton nor the fla package
is imported. Install the peer with ``pip install --no-deps fla-core==0.6.0 einops``. fla's references
compute in float32, so the tolerance is float32's. ``python -m tests.ops.test_fla_parity_attention``
prints the table of maximum errors. Without an fla reference (checked against brute force in their
own tests instead): MoBA (fla has only a flash-attn kernel), multi-head latent attention, differential
attention and YOCO (no fla op).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from functools import cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from trevo.ops.attention import selected_block_attention
from trevo.ops.forgetting_attention import FORMS as FOX_FORMS
from trevo.ops.forgetting_attention import forgetting_attention
from trevo.ops.native_sparse_attention import FORMS as NSA_FORMS
from trevo.ops.native_sparse_attention import compressed_attention, compression_blocks, select_blocks
from trevo.ops.path_attention import FORMS as PATH_FORMS
from trevo.ops.path_attention import path_attention

FLA_VERSION = "0.6.0"
TOL = 1e-4  # relative to the largest reference entry; fla's references run in float32
B, HQ, H, T, D = 2, 4, 2, 21, 8
_STANDINS = ("fla", "fla.ops", "fla.ops.utils", "fla.ops.utils.pooling")


def fla_root() -> Path | None:
    """The installed fla package directory, found without importing it."""
    if importlib.util.find_spec("einops") is None:
        return None
    try:
        spec = importlib.util.find_spec("fla")
    except (ImportError, ValueError):
        return None
    return Path(spec.origin).parent if spec is not None and spec.origin else None


pytestmark = pytest.mark.skipif(
    fla_root() is None,
    reason=f"flash-linear-attention's references are not installed (pip install --no-deps "
           f"fla-core=={FLA_VERSION} einops)")


def _unused(*args, **kwargs):
    raise RuntimeError("a stand-in for an fla helper of the variable-length path was called")


@cache
def naive(op: str) -> types.ModuleType:
    """``fla/ops/<op>/naive.py`` loaded as a standalone module, fla's own imports stood in for."""
    path = fla_root() / "ops" / op / "naive.py"
    saved = {name: sys.modules.get(name) for name in _STANDINS}
    try:
        for name in _STANDINS:
            stand_in = types.ModuleType(name)
            stand_in.__path__ = []
            stand_in.prepare_chunk_offsets = stand_in.mean_pooling = _unused
            sys.modules[name] = stand_in
        spec = importlib.util.spec_from_file_location(f"fla_naive_{op}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name, module_before in saved.items():
            if module_before is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module_before
    return module


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-30))


def seq_first(x: torch.Tensor) -> torch.Tensor:
    """trevo's [B, H, T, ...] as fla's [B, T, H, ...], in float32 (and back)."""
    return x.transpose(1, 2).float()


def _rnd(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def fox_errors() -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    q, k, v = _rnd(gen, B, HQ, T, D), _rnd(gen, B, H, T, D), _rnd(gen, B, H, T, D)
    g = F.logsigmoid(_rnd(gen, B, HQ, T))
    ref = naive("forgetting_attn").naive_forgetting_attn(*map(seq_first, (q, k, v, g))).transpose(1, 2)
    k_all, v_all = (t.repeat_interleave(HQ // H, dim=1) for t in (k, v))
    return {form: rel_err(forgetting_attention(q, k_all, v_all, g.cumsum(-1), form=form, chunk_size=5), ref)
            for form in FOX_FORMS}


def path_errors(with_gate: bool) -> dict[str, float]:
    gen = torch.Generator().manual_seed(1)
    q, k, v = _rnd(gen, B, H, T, D), _rnd(gen, B, H, T, D), _rnd(gen, B, H, T, D)
    w = F.normalize(_rnd(gen, B, H, T, D), dim=-1)
    beta = 2 * torch.sigmoid(_rnd(gen, B, H, T))
    g = F.logsigmoid(_rnd(gen, B, H, T)) if with_gate else torch.zeros(B, H, T, dtype=torch.float64)
    scale = D ** -0.5
    ref = naive("path_attn").naive_path_attn(*map(seq_first, (q, k, v, w, beta, g)), scale, chunk_size=8)
    ref = ref.transpose(1, 2)
    # fla's reference adds the gate before scaling the logits: its forget term is scale·(G_i − G_j)
    forget = scale * g.cumsum(-1) if with_gate else None
    return {form: rel_err(path_attention(q, k, v, w, beta, k[:, :, :0], forget=forget, form=form, chunk_size=5)[0],
                          ref) for form in PATH_FORMS}


def _nsa_inputs(block_size: int):
    gen = torch.Generator().manual_seed(2)
    q, k, v = _rnd(gen, B, HQ, T, D), _rnd(gen, B, H, T, D), _rnd(gen, B, H, T, D)
    k_cmp, v_cmp = (compression_blocks(t, block_size, block_size).mean(dim=3) for t in (k, v))  # mean pooling
    return q, k, v, k_cmp, v_cmp


def nsa_compression_errors(block_size: int = 4) -> dict[str, float]:
    q, _, _, k_cmp, v_cmp = _nsa_inputs(block_size)
    ref, _ = naive("nsa").naive_nsa_compression(*map(seq_first, (q, k_cmp, v_cmp)), block_size, D ** -0.5)
    k_all, v_all = (t.repeat_interleave(HQ // H, dim=1) for t in (k_cmp, v_cmp))
    return {form: rel_err(compressed_attention(q, k_all, v_all, tk=T, block_size=block_size, stride=block_size,
                                               form=form, chunk_size=2), ref.transpose(1, 2)) for form in NSA_FORMS}


def nsa_selection(block_size: int = 4, n_selected: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """fla's and trevo's selected block numbers ``[B, H, T, n]`` (each sorted, −1 first)."""
    q, _, _, k_cmp, _ = _nsa_inputs(block_size)
    # fla pools the trailing partial block too (never visible, but the own block of the last queries)
    k_pooled = torch.cat([k_cmp, k_cmp[:, :, -1:]], dim=2) if T % block_size else k_cmp
    ref = naive("nsa").naive_nsa_topk(*map(seq_first, (q, k_pooled)), n_selected, block_size, D ** -0.5)
    ours = select_blocks(q.unflatten(1, (H, HQ // H)), k_cmp, tk=T, block_size=block_size, stride=block_size,
                         select_block_size=block_size, topk=n_selected)
    return ours.sort(dim=-1).values, ref.transpose(1, 2).sort(dim=-1).values


def nsa_selected_attention_errors(block_size: int = 4, n_selected: int = 4) -> dict[str, float]:
    q, k, v, _, _ = _nsa_inputs(block_size)
    _, indices = nsa_selection(block_size, n_selected)  # fla's selection, [B, H, T, n]
    ref = naive("nsa").naive_nsa_selection(*map(seq_first, (q, k, v)), indices.transpose(1, 2).contiguous(),
                                           block_size, D ** -0.5).transpose(1, 2)
    g = HQ // H
    k_all, v_all, idx = (t.repeat_interleave(g, dim=1) for t in (k, v, indices))
    return {form: rel_err(selected_block_attention(q, k_all, v_all, idx, block_size, form=form), ref)
            for form in NSA_FORMS}


@pytest.mark.parametrize("form", FOX_FORMS)
def test_forgetting_attention_matches_fla(form):
    assert fox_errors()[form] < TOL


@pytest.mark.parametrize("with_gate", [False, True])
def test_path_attention_matches_fla(with_gate):
    for form, err in path_errors(with_gate).items():
        assert err < TOL, (form, err)


def test_nsa_compressed_branch_matches_fla():
    for form, err in nsa_compression_errors().items():
        assert err < TOL, (form, err)


@pytest.mark.parametrize("n_selected", [3, 4])
def test_nsa_block_selection_matches_fla(n_selected):
    ours, ref = nsa_selection(n_selected=n_selected)
    assert torch.equal(ours, ref)


def test_nsa_selected_branch_matches_fla():
    for form, err in nsa_selected_attention_errors().items():
        assert err < TOL, (form, err)


def main() -> None:
    rows = [("forgetting attention", "naive_forgetting_attn", fox_errors()),
            ("PaTH", "naive_path_attn (g = 0)", path_errors(False)),
            ("PaTH-FoX", "naive_path_attn", path_errors(True)),
            ("NSA compressed branch", "naive_nsa_compression", nsa_compression_errors()),
            ("NSA selected branch", "naive_nsa_selection", nsa_selected_attention_errors())]
    print("| op | fla reference function | forms checked | max relative error |\n|---|---|---|---|")
    for op, ref, errors in rows:
        print(f"| {op} | {ref} | {', '.join(errors)} | {max(errors.values()):.1e} |")
    ours, ref = nsa_selection()
    print(f"| NSA block selection | naive_nsa_topk | (one) | identical sets: {bool(torch.equal(ours, ref))} |")


if __name__ == "__main__":
    main()
