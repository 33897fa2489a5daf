"""Registry-driven tests of the token-mixer contract: every registered mixer gets them, with no new
test code. Small sizes (d_model 16, lengths that are not a multiple of any chunk size) keep them fast.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from trevo.components.base import TokenMixer
from trevo.registry import TrevoError, create, get, names

D = 16
T = 19  # not a multiple of any test chunk size


def build(name: str, causal: bool, dtype=torch.float64, **extra) -> TokenMixer:
    entry = get("mixer", name)
    torch.manual_seed(0)
    kwargs = {"d_model": D, "causal": causal, **entry.test_options, **extra}
    return create("mixer", name, **kwargs).to(dtype)


def layout_for(name: str, seq: int) -> tuple[int, ...]:
    if get("mixer", name).needs_2d:
        side = int(seq ** 0.5)
        assert side * side == seq, "2-D mixers are tested on square lengths"
        return (side, side)
    return (seq,)


def cases(predicate=lambda e, causal: True):
    out = []
    for name in names("mixer"):
        entry = get("mixer", name)
        for causal in (True, False):
            if (entry.causal if causal else entry.bidirectional) and predicate(entry, causal):
                out.append(pytest.param(name, causal, id=f"{name}-{'causal' if causal else 'bidir'}"))
    return out


def seq_len(name: str) -> int:
    entry = get("mixer", name)
    if entry.needs_2d:
        return 16
    return min(T, entry.test_options.get("max_len", T))


@pytest.mark.parametrize("name,causal", cases())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_finite(name, causal, dtype):
    mixer = build(name, causal, dtype)
    n = seq_len(name)
    x = torch.randn(2, n, D, dtype=dtype)
    y = mixer(x, layout=layout_for(name, n))
    assert y.shape == x.shape and y.dtype == dtype
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name,causal", cases())
def test_every_parameter_gets_a_gradient(name, causal):
    mixer = build(name, causal)
    n = seq_len(name)
    x = torch.randn(2, n, D, dtype=torch.float64, requires_grad=True)
    mixer(x, layout=layout_for(name, n)).square().sum().backward()
    for pname, p in mixer.named_parameters():
        assert p.grad is not None, f"{pname} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name,causal", cases(lambda e, causal: causal))
def test_causal_mixers_never_see_the_future(name, causal):
    mixer = build(name, True)
    n = seq_len(name)
    x = torch.randn(2, n, D, dtype=torch.float64)
    y = mixer(x, layout=layout_for(name, n))
    for t in (0, n // 2, n - 2):
        x2 = x.clone()
        x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:]) * 3
        y2 = mixer(x2, layout=layout_for(name, n))
        assert torch.equal(y[:, :t + 1], y2[:, :t + 1]), f"output at <= {t} changed with inputs after {t}"


def _pairs():
    out = []
    for name in names("mixer"):
        entry = get("mixer", name)
        for causal in (True, False):
            if not (entry.causal if causal else entry.bidirectional):
                continue
            for a, b in itertools.combinations(entry.forms, 2):
                out.append(pytest.param(name, causal, a, b, id=f"{name}-{'c' if causal else 'b'}-{a}-{b}"))
    return out


@pytest.mark.parametrize("name,causal,form_a,form_b", _pairs())
def test_exact_forms_agree_in_float64(name, causal, form_a, form_b):
    n = seq_len(name)
    results = []
    for form in (form_a, form_b):
        mixer = build(name, causal)
        mixer.impl = form
        torch.manual_seed(1)
        x = torch.randn(2, n, D, dtype=torch.float64, requires_grad=True)
        y = mixer(x, layout=layout_for(name, n))
        y.backward(torch.randn_like(y))
        grads = {k: p.grad for k, p in mixer.named_parameters()}
        results.append((y.detach(), x.grad, grads))
    (ya, gxa, gpa), (yb, gxb, gpb) = results
    torch.testing.assert_close(ya, yb, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(gxa, gxb, rtol=1e-8, atol=1e-10)
    for k in gpa:
        torch.testing.assert_close(gpa[k], gpb[k], rtol=1e-8, atol=1e-10, msg=lambda m, k=k: f"{k}: {m}")


def _recurrent_cases():
    return cases(lambda e, causal: causal)


@pytest.mark.parametrize("name,causal", _recurrent_cases())
def test_prefill_then_step_equals_forward(name, causal):
    mixer = build(name, True)
    n = seq_len(name)
    x = torch.randn(2, n, D, dtype=torch.float64)
    full = mixer(x)
    t = n // 3
    y0, state = mixer.prefill(x[:, :t])
    ys = [y0]
    for i in range(t, n):
        y, state = mixer.step(x[:, i], state)
        assert y.shape == (2, D)
        ys.append(y[:, None])
    torch.testing.assert_close(torch.cat(ys, dim=1), full, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name,causal", _recurrent_cases())
def test_state_carried_across_a_split_equals_one_pass(name, causal):
    mixer = build(name, True)
    n = seq_len(name)
    x = torch.randn(2, n, D, dtype=torch.float64)
    full, _ = mixer.prefill(x)
    for t in (1, n // 2, n - 1):
        y1, state = mixer.prefill(x[:, :t])
        y2, _ = mixer.prefill(x[:, t:], state)
        torch.testing.assert_close(torch.cat([y1, y2], dim=1), full, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name,causal", cases(lambda e, causal: not causal))
def test_bidirectional_padding_is_ignored(name, causal):
    mixer = build(name, False)
    n = seq_len(name)
    x = torch.randn(2, n, D, dtype=torch.float64)
    mask = torch.ones(2, n, dtype=torch.bool)
    real = n - 5
    mask[1, real:] = False
    y = mixer(x, padding_mask=mask, layout=layout_for(name, n))
    x2 = x.clone()
    x2[1, real:] = torch.randn_like(x2[1, real:]) * 5
    y2 = mixer(x2, padding_mask=mask, layout=layout_for(name, n))
    torch.testing.assert_close(y[1, :real], y2[1, :real], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(y[0], y2[0], rtol=0, atol=0)


@pytest.mark.parametrize("name,causal", cases())
def test_wrong_input_shape_is_a_clear_error(name, causal):
    mixer = build(name, causal, torch.float32)
    with pytest.raises(TrevoError, match="expects input of shape"):
        mixer(torch.randn(2, 8, D + 1))
    with pytest.raises(TrevoError, match="floating-point"):
        mixer(torch.zeros(2, 8, D, dtype=torch.long))


@pytest.mark.parametrize("name", names("mixer"))
def test_metadata_is_complete(name):
    entry = get("mixer", name)
    assert entry.paper is not None and entry.paper.title and entry.paper.year
    assert entry.category and entry.family and entry.forms and entry.time
    assert entry.causal or entry.bidirectional
    cls = entry.factory
    assert tuple(entry.forms) == tuple(getattr(cls, "forms", entry.forms)), "registry forms differ from the class"
    assert (cls.__doc__ or "").strip(), "a public component needs a docstring naming its paper and equation"


def _backbone_cases():
    out = []
    for name in names("mixer"):
        entry = get("mixer", name)
        # Causal mixers on the causal byte LM; the others classify digit pixels (an 8×8 layout).
        task = "byte_lm" if entry.causal and not entry.needs_2d else "digits"
        out.append(pytest.param(name, task, id=f"{name}-{task}"))
    return out


@pytest.mark.parametrize("name,task", _backbone_cases())
def test_trains_one_step_inside_the_backbone(name, task):
    from trevo.config import RunConfig
    from trevo.train import build, make_optimizer

    # Size options of the tiny test instance (max_len, height, width) give way to the task's sizes.
    options = {k: v for k, v in get("mixer", name).test_options.items() if k not in ("max_len", "height", "width")}
    cfg = RunConfig().replace({"model.mixer": {"name": name, **options}, "model.d_model": D, "model.n_layers": 1,
                               "task.name": task, "train.batch_size": 2})
    if task == "byte_lm":
        cfg = cfg.replace({"task.seq_len": 16})
    task_obj, model = build(cfg)
    optimizer = make_optimizer(model, cfg.train)
    batch = task_obj.train_batch(0, 2, 0)
    losses = []
    for _ in range(2):
        loss = task_obj.loss(model(batch["input"], batch.get("padding_mask")), batch)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[1] < losses[0], "one AdamW step on the same batch should lower its loss"
