"""Score-bias relative positions: T5's buckets on a hand table, KERPLE's kernels against their formulas and
conditionally positive definite on a sampled grid, Transformer-XL's terms against a loop; every relative
position of softmax attention (and every score bias any mixer takes) gives scores invariant to a common
shift of query and key positions and works through prefill and steps with the KV cache."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import prefill_then_step
from trevo.components.position_biases import sinusoid_table, t5_bucket
from trevo.components.positions import alibi_slopes
from trevo.errors import IncompatibleError
from trevo.registry import build, get, names

D = 16
RELATIVE = get("mixer", "softmax_attention").relative_positions
# every relative position some mixer accepts (kernelized attention's translation_equivariant too)
ACCEPTED = sorted({p for m in names("mixer") for p in get("mixer", m).relative_positions})
BIASES = [n for n in ACCEPTED if hasattr(get("position", n).factory, "bias")]
ROTATIONS = [n for n in RELATIVE if hasattr(get("position", n).factory, "rotate")]
CONTENT = [n for n in RELATIVE if hasattr(get("position", n).factory, "content_bias")
           and getattr(get("position", n).factory, "shift_invariant", True)]


def _attached(name: str, n_heads: int = 2, causal: bool = True, **options):
    torch.manual_seed(0)
    position = build("position", name, options, d_model=D, max_len=64)
    if hasattr(position, "attach"):
        position.attach(n_heads=n_heads, head_dim=D // n_heads, causal=causal)
    for p in position.parameters():  # away from the initialisation, so no term is zero by construction
        torch.nn.init.normal_(p, std=0.5)
    return position.double()


# T5's bucket of (key − query) by hand, from the bucketing function of Raffel et al. (n = 32, max 128):
# one-sided, exact below 16, then 16 + ⌊log(d/16)/log(8)·16⌋, capped at 31.
CAUSAL_TABLE = {0: 0, -1: 1, -15: 15, -16: 16, -20: 17, -32: 21, -64: 26, -127: 31, -128: 31, -1000: 31, 5: 0}
# both sides: 16 buckets per side, exact below 8, then 8 + ⌊log(d/8)/log(16)·8⌋; keys after the query +16.
BIDIRECTIONAL_TABLE = {0: 0, -3: 3, 3: 19, -8: 8, 8: 24, -16: 10, 16: 26, -128: 15, 1000: 31, -7: 7, 7: 23}


@pytest.mark.parametrize("bidirectional,table", [(False, CAUSAL_TABLE), (True, BIDIRECTIONAL_TABLE)])
def test_t5_buckets_match_the_hand_table(bidirectional, table):
    relative = torch.tensor(list(table))
    got = t5_bucket(relative, bidirectional=bidirectional, n_buckets=32, max_distance=128)
    assert got.tolist() == list(table.values())


def test_t5_bias_reads_its_table_by_bucket():
    position = _attached("t5_bias", n_heads=2, causal=True)
    bias = position.bias(2, 3, 40)
    # query 2 of 3 sits at position 39; key 0 is 39 back: bucket 16 + ⌊log(39/16)/log 8 · 16⌋ = 22.
    assert int(t5_bucket(torch.tensor([-39]), bidirectional=False)) == 22
    assert bias[1, 2, 0].item() == position.table[1, 22].item()
    assert bias[0, 0, 37].item() == position.table[0, 0].item()  # query 0 at position 37 on its own key
    with pytest.raises(IncompatibleError, match="n_buckets"):
        build("position", "t5_bias", {"n_buckets": 32, "max_distance": 8}, d_model=D)


def test_kerple_kernels_match_their_formulas():
    log = _attached("kerple_log", n_heads=2)
    r1, r2 = (torch.nn.functional.softplus(p).detach() for p in (log.r1_raw, log.r2_raw))
    bias = log.bias(2, 1, 6).detach()  # one query at position 5
    for h in range(2):
        for j in range(6):
            expected = -float(r1[h]) * math.log(1 + float(r2[h]) * (5 - j))
            assert float(bias[h, 0, j]) == pytest.approx(expected, rel=1e-12)
    power = _attached("kerple_power", n_heads=2)
    r1, r2 = torch.nn.functional.softplus(power.r1_raw).detach(), 2 * torch.sigmoid(power.r2_raw).detach()
    bias = power.bias(2, 1, 6).detach()
    for h in range(2):
        for j in range(6):
            assert float(bias[h, 0, j]) == pytest.approx(-float(r1[h]) * (5 - j) ** float(r2[h]), rel=1e-12, abs=0)


def test_kerple_power_starts_as_alibi():
    power = build("position", "kerple_power", {}, d_model=D)
    power.attach(n_heads=4, head_dim=4, causal=True)
    alibi = build("position", "alibi", {}, d_model=D)
    torch.testing.assert_close(power.bias(4, 5, 9), alibi.bias(4, 5, 9))
    torch.testing.assert_close(torch.nn.functional.softplus(power.r1_raw), alibi_slopes(4))


def _min_cpd_eigenvalue(matrix: torch.Tensor) -> float:
    """The smallest eigenvalue of K on the vectors c with Σc = 0 (K is CPD iff it is ≥ 0)."""
    n = matrix.shape[0]
    basis = torch.linalg.qr(torch.eye(n, dtype=torch.float64) - 1.0 / n)[0][:, : n - 1]  # spans {c: Σc = 0}
    return float(torch.linalg.eigvalsh(basis.T @ matrix @ basis).min())


@pytest.mark.parametrize("name", ["kerple_log", "kerple_power"])
def test_kerple_kernels_are_conditionally_positive_definite_on_a_grid(name):
    generator = torch.Generator().manual_seed(0)
    position = _attached(name, n_heads=4)
    tk = 300
    bias = position.bias(4, tk, tk).detach()  # [H, T, T]: b(i, j) for every pair of positions 0..T−1
    for trial in range(5):
        points = torch.randperm(tk, generator=generator)[:40]  # a sampled grid of positions
        for h in range(4):
            k = bias[h][points][:, points]
            assert _min_cpd_eigenvalue(k) > -1e-8 * float(k.abs().max()), (name, trial, h)
    # The check can fail: −|i − j|^3 (power 3 > 2) is not conditionally positive definite.
    points = torch.arange(0, 40, dtype=torch.float64)
    assert _min_cpd_eigenvalue(-(points[:, None] - points[None, :]).abs() ** 3) < -1.0


def test_transformer_xl_terms_equal_the_loop():
    position = _attached("transformer_xl", n_heads=2, causal=True)
    b, h, tq, tk, d = 2, 2, 3, 5, D // 2
    q, k = torch.randn(b, h, tq, d, dtype=torch.float64), torch.randn(b, h, tk, d, dtype=torch.float64)
    got = position.content_bias(q, k).detach()
    w = position.r_proj.weight.detach().view(h, d, D)
    for bi in range(b):
        for hi in range(h):
            for i in range(tq):
                for j in range(tk):
                    r = sinusoid_table(torch.tensor([tk - tq + i - j]), D)[0]  # R_{i−j}
                    wr = w[hi] @ r
                    u, v = position.u.detach()[hi], position.v.detach()[hi]
                    expected = (q[bi, hi, i] @ wr + u @ k[bi, hi, j] + v @ wr) / math.sqrt(d)
                    assert float(got[bi, hi, i, j]) == pytest.approx(float(expected), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("name", BIASES)
@pytest.mark.parametrize("causal", [True, False])
def test_score_biases_are_invariant_to_a_common_shift(name, causal):
    position = _attached(name, n_heads=4, causal=causal)
    tq, tk = 4, 9
    for shift in (1, 7, 100):
        torch.testing.assert_close(position.bias(4, tq, tk + shift)[..., shift:], position.bias(4, tq, tk))


@pytest.mark.parametrize("name", CONTENT)
def test_content_terms_are_invariant_to_a_common_shift(name):
    position = _attached(name, n_heads=2)
    q, k = torch.randn(1, 2, 3, D // 2, dtype=torch.float64), torch.randn(1, 2, 6, D // 2, dtype=torch.float64)
    for shift in (1, 5, 80):
        earlier = torch.randn(1, 2, shift, D // 2, dtype=torch.float64)  # keys before: every position moves by shift
        shifted = position.content_bias(q, torch.cat([earlier, k], dim=2))[..., shift:]
        torch.testing.assert_close(shifted, position.content_bias(q, k))


def test_deberta_scores_equal_the_loop():
    position = _attached("deberta", n_heads=2, max_distance=3)
    b, h, tq, tk, d = 1, 2, 4, 9, D // 2
    q, k = torch.randn(b, h, tq, d, dtype=torch.float64), torch.randn(b, h, tk, d, dtype=torch.float64)
    got = position.content_bias(q, k).detach() + q @ k.transpose(-1, -2) / math.sqrt(d)  # Ã as the mixer sees it
    p = position.embeddings.detach()
    w_k, w_q = (m.weight.detach().view(h, d, D) for m in (position.key_proj, position.query_proj))

    def delta(i: int, j: int) -> int:  # DeBERTa's δ with k = 3
        return 0 if i - j <= -3 else (5 if i - j >= 3 else i - j + 3)

    for hi in range(h):
        for a in range(tq):
            i = tk - tq + a
            for j in range(tk):
                c2p = q[0, hi, a] @ (w_k[hi] @ p[delta(i, j)])
                p2c = k[0, hi, j] @ (w_q[hi] @ p[delta(j, i)])
                expected = (q[0, hi, a] @ k[0, hi, j] + c2p + p2c) / math.sqrt(3 * d)
                assert float(got[0, hi, a, j]) == pytest.approx(float(expected), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("name", ROTATIONS)
def test_rotations_give_scores_invariant_to_a_common_shift(name):
    position = _attached(name, n_heads=2)
    q, k = torch.randn(1, 1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 1, 8, dtype=torch.float64)

    def score(m: int, n: int) -> float:
        return float((position.rotate(q, m) * position.rotate(k, n, key=True)).sum())

    for m, n in ((3, 1), (9, 2), (4, 4)):
        assert score(m + 50, n + 50) == pytest.approx(score(m, n), rel=1e-9)


def _mixer(position: str | None, causal: bool, mixer: str = "softmax_attention", **options):
    torch.manual_seed(0)
    built = None if position is None else build("position", position, {}, d_model=D, max_len=64)
    defaults = {"n_heads": 4, "n_kv_heads": 2} if mixer == "softmax_attention" else {}
    m = build("mixer", mixer, {**get("mixer", mixer).test_options, **defaults, **options}, d_model=D, causal=causal,
              position=built, max_len=64, layout=(64,)).double()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return m


# every mixer that takes relative positions, with each one it takes, in each of its forms
MIXER_POSITIONS = [(m, p, f) for m in names("mixer") for p in get("mixer", m).relative_positions
                   for f in (get("mixer", m).forms or ("auto",))]


@pytest.mark.parametrize("mixer,name,form", MIXER_POSITIONS)
def test_every_relative_position_works_through_the_kv_cache(mixer, name, form):
    m = _mixer(name, True, mixer, form=form) if form != "auto" else _mixer(name, True, mixer)
    x = torch.randn(2, 11, D, dtype=torch.float64)
    full = m(x)
    torch.testing.assert_close(prefill_then_step(m, x, 4), full, rtol=1e-10, atol=1e-10)
    # and the position acts: without it the outputs differ
    without = _mixer(None, True, mixer, form=form) if form != "auto" else _mixer(None, True, mixer)
    assert not torch.allclose(without(x), full, atol=1e-3)


@pytest.mark.parametrize("name", RELATIVE)
def test_padded_keys_do_not_reach_real_ones_bidirectionally(name):
    mixer = _mixer(name, False)
    x = torch.randn(2, 7, D, dtype=torch.float64)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    changed = x.clone()
    changed[1, 4:] = torch.randn(3, D, dtype=torch.float64)
    torch.testing.assert_close(mixer(changed, padding_mask=mask)[mask], mixer(x, padding_mask=mask)[mask])


def test_tupe_scores_equal_the_loop_and_depend_on_absolute_positions():
    position = _attached("tupe", n_heads=2)
    b, h, tq, tk, d = 1, 2, 3, 7, D // 2
    q, k = torch.randn(b, h, tq, d, dtype=torch.float64), torch.randn(b, h, tk, d, dtype=torch.float64)
    got = position.content_bias(q, k).detach() + q @ k.transpose(-1, -2) / math.sqrt(d)  # α as the mixer sees it
    p = position.table.detach()
    u_q, u_k = (m.weight.detach().view(h, d, D) for m in (position.query_proj, position.key_proj))
    t5 = position.t5.bias(h, tq, tk).detach()
    for hi in range(h):
        for a in range(tq):
            i = tk - tq + a
            for j in range(tk):
                expected = (q[0, hi, a] @ k[0, hi, j] + (u_q[hi] @ p[i]) @ (u_k[hi] @ p[j])) / math.sqrt(2 * d)
                expected = expected + t5[hi, a, j]
                assert float(got[0, hi, a, j]) == pytest.approx(float(expected), rel=1e-10, abs=1e-12)
    earlier = torch.randn(1, 2, 4, d, dtype=torch.float64)
    shifted = position.content_bias(q, torch.cat([earlier, k], dim=2))[..., 4:]
    assert not torch.allclose(shifted, position.content_bias(q, k))  # absolute: a shift changes the scores
    with pytest.raises(IncompatibleError, match="max_len"):
        position.content_bias(q, torch.randn(1, 2, 65, d, dtype=torch.float64))
