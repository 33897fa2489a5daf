"""Defining properties of the Perceiver family: N × M attention, decoding subsets, weight sharing,
permutation invariance, padding, any latent mixer, and Perceiver AR's causality and generation."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from trevo.config import ComponentSpec, ModelConfig
from trevo.errors import IncompatibleError
from trevo.models import build_model
from trevo.models.layers import reuses_attention
from trevo.ops.cross_attention import naive_causal_cross_attention, windowed_causal_cross_attention
from trevo.registry import create, get, names
from trevo.tasks.base import TaskInfo
from trevo.train import logits_of

DIGITS = TaskInfo(vocab_size=17, head="classify", seq_len=64, n_classes=10, layout=(8, 8))
TEXT_LM = TaskInfo(vocab_size=256, head="lm", seq_len=56, causal="required", layout=(40,))
TEXT_MLM = TaskInfo(vocab_size=256, head="mlm", seq_len=24, causal="forbidden", layout=(24,))


def model(arch: str, info: TaskInfo, position: str = "learned", dtype=torch.float64, seed: int = 0,
          mixer: ComponentSpec | None = None, **options) -> torch.nn.Module:
    torch.manual_seed(seed)
    pos = ComponentSpec(position, {"n_bands": 4} if position == "fourier" else {})
    cfg = ModelConfig(arch=arch, d_model=16, n_layers=1, position=pos, max_len=info.seq_len,
                      mixer=mixer or ComponentSpec("softmax_attention"), options={"n_latents": 8, **options})
    return build_model(cfg, info).to(dtype).eval()


# ---------------------------------------------------------------------------------------------- Perceiver (IO)

class ScoreShapes(TorchDispatchMode):
    """Records the (queries, keys) of every attention kernel and the shape of every tensor produced."""

    def __init__(self) -> None:
        super().__init__()
        self.scores: set[tuple[int, int]] = set()
        self.outputs: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if "scaled_dot_product" in str(func):
            self.scores.add((args[0].shape[-2], args[1].shape[-2]))
        outs = out if isinstance(out, (tuple, list)) else [out]
        self.outputs += [tuple(o.shape) for o in outs if isinstance(o, torch.Tensor)]
        return out


@pytest.mark.parametrize("arch", ["perceiver", "perceiver_io"])
def test_attention_matrices_are_n_by_m_never_m_by_m(arch):
    m = model(arch, DIGITS, dtype=torch.float32)
    with ScoreShapes() as rec:
        m(torch.randint(0, 17, (2, 64)))
    want = {(8, 64), (8, 8)} | ({(1, 8)} if arch == "perceiver_io" else set())
    assert rec.scores == want
    assert not any(s[-2:] == (64, 64) for s in rec.outputs)
    baseline = build_model(ModelConfig(d_model=16, n_layers=1), DIGITS)  # the control sees M×M
    with ScoreShapes() as rec:
        baseline(torch.randint(0, 17, (2, 64)))
    assert (64, 64) in rec.scores


def test_decoding_a_subset_of_outputs_equals_the_full_decode():
    m = model("perceiver_io", TEXT_MLM)
    x = torch.randint(0, 256, (3, 24))
    full = m(x)
    idx = torch.tensor([5, 0, 23, 7])
    torch.testing.assert_close(m(x, outputs=idx), full[:, idx], rtol=0, atol=1e-13)
    per_row = torch.tensor([[1, 2], [3, 4], [22, 0]])
    torch.testing.assert_close(m(x, outputs=per_row), full.gather(1, per_row[..., None].expand(-1, -1, 256)),
                               rtol=0, atol=1e-13)


def test_a_boolean_mask_decodes_only_the_masked_positions():
    m = model("perceiver_io", TEXT_MLM)
    x = torch.randint(0, 256, (3, 24))
    full = m(x)
    mask = torch.zeros(3, 24, dtype=torch.bool)
    mask[0, [2, 9, 17]] = mask[1, [0, 23]] = mask[2, [5, 6, 7]] = True  # rows with different counts
    out = m(x, outputs=mask)
    assert out.shape == full.shape
    torch.testing.assert_close(out[mask], full[mask], rtol=0, atol=1e-13)
    assert not out[~mask].any()
    with ScoreShapes() as rec:
        m(x, outputs=mask)
    assert rec.scores == {(8, 24), (8, 8), (3, 8)}  # decoder: 3 queries (the most masked in a row), not 24


def test_masked_lm_training_decodes_only_the_loss_mask():
    task = create("task", "mlm", seq_len=40)
    m = model("perceiver_io", task.info, dtype=torch.float32)
    batch = task.train_batch(0, 2, 0)
    with ScoreShapes() as rec:
        logits = logits_of(m, batch)
    assert rec.scores == {(8, 40), (8, 8), (6, 8)}  # round(15% of 40) = 6 decoder queries per row
    torch.testing.assert_close(task.loss(logits, batch), task.loss(m(batch["input"]), batch))

def test_weight_sharing_really_shares():
    def count(repeats, share):
        return model("perceiver", DIGITS, n_cross_attends=repeats, share_weights=share).num_params()

    assert count(2, True) == count(3, True) == count(6, True) > count(1, True)
    m = model("perceiver", DIGITS, n_cross_attends=3, share_weights=False)
    one_repeat = sum(p.numel() for p in m.encoder.cross[1].parameters()) + sum(
        p.numel() for p in m.encoder.stacks[1].parameters())
    assert count(3, False) - count(2, False) == one_repeat
    shared = model("perceiver", DIGITS, n_cross_attends=3, share_weights=True)
    enc = shared.encoder
    x = torch.randint(0, 17, (2, 64))
    xin, z = enc.embed_inputs(x), enc.latents.expand(2, -1, -1)
    for cross in (enc.cross[0], enc.cross[1], enc.cross[1]):  # the repeats reuse one module
        z = enc.stacks[0][0](cross(z, xin), None, (8,))
    torch.testing.assert_close(enc(x), z, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["perceiver", "perceiver_io"])
def test_learned_positions_make_a_pixel_permutation_invisible(arch):
    m = model(arch, DIGITS, position="learned")
    x = torch.randint(0, 17, (4, 64))
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(3))
    ref = m(x)
    table = m.encoder.inputs.position.module.table
    with torch.no_grad():
        table.copy_(table[perm])
    torch.testing.assert_close(m(x[:, perm]), ref, rtol=0, atol=1e-12)
    assert (m(x) - ref).abs().max() > 1e-6  # the permuted table alone does change the output


def test_padding_is_ignored():
    m = model("perceiver_io", DIGITS)
    x = torch.randint(0, 17, (2, 64))
    mask = torch.arange(64)[None, :] < torch.tensor([[50], [64]])
    y = x.clone()
    y[0, 50:] = (y[0, 50:] + 1) % 17
    torch.testing.assert_close(m(x, mask), m(y, mask), rtol=0, atol=1e-13)


def _bidirectional_latent_mixers():
    return [n for n in names("mixer") if get("mixer", n).bidirectional and not get("mixer", n).needs_2d
            and not reuses_attention(n)]  # the latent stack repeats one mixer


@pytest.mark.parametrize("mixer", _bidirectional_latent_mixers())
def test_latent_stack_takes_any_bidirectional_mixer(mixer):
    m = model("perceiver_io", DIGITS, mixer=ComponentSpec(mixer, get("mixer", mixer).test_options),
              dtype=torch.float32)
    out = m(torch.randint(0, 17, (2, 64)))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_bad_combinations_are_refused():
    with pytest.raises(IncompatibleError, match="perceiver_ar"):
        model("perceiver_io", TEXT_LM)
    with pytest.raises(IncompatibleError, match="perceiver_io"):
        model("perceiver", TEXT_MLM)
    with pytest.raises(IncompatibleError, match="takes no option 'n_latent'"):
        build_model(ModelConfig(arch="perceiver", options={"n_latent": 3}), DIGITS)
    with pytest.raises(IncompatibleError, match="concatenates positions"):
        model("perceiver", DIGITS, position="rope")
    with pytest.raises(IncompatibleError, match="bidirectional mixers"):
        model("perceiver", DIGITS, mixer=ComponentSpec("rwkv4"))


# ---------------------------------------------------------------------------------------------- Perceiver AR

def test_windowed_cross_attention_equals_full_causal_attention():
    q, k, v = (torch.randn(2, 3, 19, 4, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(windowed_causal_cross_attention(q, k, v, 5), naive_causal_cross_attention(q, k, v),
                               rtol=1e-12, atol=1e-12)


def test_perceiver_ar_latents_are_the_last_positions_and_see_only_the_prefix():
    m = model("perceiver_ar", TEXT_LM, n_latents=8, dtype=torch.float32)
    with ScoreShapes() as rec:
        m(torch.randint(0, 256, (1, 56)))
    assert rec.scores == {(8, 8 * w) for w in range(1, 8)}  # cross: window × its prefix; latent: 8 × 8
    assert not any(s[-2:] == (56, 56) for s in rec.outputs)


def _causal_mixers():
    return [n for n in names("mixer") if get("mixer", n).causal and not get("mixer", n).needs_2d
            and not reuses_attention(n)]


def _ar(mixer: str) -> torch.nn.Module:
    return model("perceiver_ar", TEXT_LM, position="none", mixer=ComponentSpec(mixer, get("mixer", mixer).test_options),
                 n_latents=6)


@pytest.mark.parametrize("mixer", _causal_mixers())
def test_perceiver_ar_never_sees_the_future(mixer):
    m = _ar(mixer)
    x = torch.randint(0, 256, (2, 23))
    ref = m(x)
    for t in (5, 13):  # the last position of a window, and one inside a window
        y = x.clone()
        y[:, t + 1:] = torch.randint(0, 256, (2, 22 - t))
        torch.testing.assert_close(m(y)[:, :t + 1], ref[:, :t + 1], rtol=0, atol=1e-12)
    torch.testing.assert_close(m(x[:, :9]), ref[:, :9], rtol=0, atol=1e-12)


@pytest.mark.parametrize("mixer", ["softmax_attention", "rwkv4"])
def test_perceiver_ar_prefill_and_step_equal_forward(mixer):
    m = _ar(mixer)
    x = torch.randint(0, 256, (2, 23))
    ref = m(x)
    first, state = m.prefill(x[:, :4])
    second, state = m.prefill(x[:, 4:15], state)
    steps = []
    for t in range(15, 23):
        logits, state = m.step(x[:, t], state)
        steps.append(logits)
    torch.testing.assert_close(torch.cat([first, second, torch.stack(steps, 1)], 1), ref, rtol=1e-9, atol=1e-9)
