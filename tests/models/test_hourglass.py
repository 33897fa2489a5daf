"""Hourglass: the causal shift makes the shortened model exactly causal (and the test catches the leak
without it), the middle blocks run on ⌈T/k⌉ tokens, bidirectional use ignores padding, bad options
get clear errors, and the model trains."""

from __future__ import annotations

import pytest
import torch

from trevo.config import ComponentSpec, ModelConfig
from trevo.errors import IncompatibleError
from trevo.models import build_model
from trevo.tasks.base import TaskInfo, cross_entropy

LM = TaskInfo(vocab_size=256, head="lm", seq_len=20, causal="required", layout=(20,), metric="bpb")


def _model(info=LM, k=3, **more) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(arch="hourglass", d_model=16, n_layers=2, mixer=ComponentSpec("softmax_attention"),
                      options={"shorten_factor": k, **more})
    return build_model(cfg, info).double()


def _leaks(model, tokens) -> bool:
    y = model(tokens)
    for t in range(tokens.shape[1] - 1):
        changed = tokens.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] + 7) % 256
        if not torch.equal(model(changed)[:, :t + 1], y[:, :t + 1]):
            return True
    return False


def test_the_shifted_hourglass_never_sees_the_future_and_the_unshifted_one_does():
    model = _model()
    tokens = torch.randint(0, 256, (2, 20))  # 20 is not a multiple of k = 3
    assert not _leaks(model, tokens)
    model.causal = False  # pooling without the shift: a shortened token carries later inputs back
    assert _leaks(model, tokens)


def test_the_middle_blocks_see_the_shortened_sequence():
    model = _model(k=4)
    lengths = []
    model.inner[0].register_forward_pre_hook(lambda _m, args: lengths.append(args[0].shape[1]))
    model(torch.randint(0, 256, (1, 18)))
    assert lengths == [5]  # ⌈18 / 4⌉
    assert len(model.pre) == 1 and len(model.inner) == 2 and len(model.post) == 1


def test_bidirectional_hourglass_ignores_padding():
    info = TaskInfo(vocab_size=17, head="classify", seq_len=12, n_classes=3, layout=(12,))
    model = _model(info, k=2)
    tokens = torch.randint(0, 17, (1, 12))
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[:, 9:] = False
    other = tokens.clone()
    other[:, 9:] = (other[:, 9:] + 5) % 17
    torch.testing.assert_close(model(tokens, mask), model(other, mask), rtol=1e-12, atol=1e-12)


def test_bad_hourglass_options_are_clear_errors():
    with pytest.raises(IncompatibleError, match="takes no option 'shorten'"):
        _model(shorten=2)
    with pytest.raises(IncompatibleError, match="shorten_factor"):
        _model(k=0)
    with pytest.raises(IncompatibleError, match="--mode parallel"):
        _model().prefill(torch.zeros(1, 3, dtype=torch.long))
    cfg = ModelConfig(arch="hourglass", d_model=16, n_layers=2, residual=ComponentSpec("admin"))
    with pytest.raises(IncompatibleError, match="model.residual='admin'"):
        build_model(cfg, LM)


def test_the_residual_placement_reaches_every_block():
    cfg = ModelConfig(arch="hourglass", d_model=16, n_layers=2, residual=ComponentSpec("postnorm"))
    model = build_model(cfg, LM)
    blocks = [*model.pre, *model.inner, *model.post]
    assert len(blocks) == 4 and {type(b.residual).__name__ for b in blocks} == {type(blocks[0].residual).__name__}
    assert blocks[0].residual.ends_in_norm and isinstance(model.norm, torch.nn.Identity)  # post-norm: no final norm


def test_hourglass_trains_a_step():
    model = _model().float()
    tokens = torch.randint(0, 256, (4, 21))
    batch = {"input": tokens[:, :-1], "target": tokens[:, 1:]}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(3):
        loss = cross_entropy(model(batch["input"]), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
