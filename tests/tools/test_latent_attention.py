"""Latent attention maps: the weights returned are the ones the forward pass uses (the outputs recomputed
from them equal the model's own), they are distributions that ignore padding, and `trevo inspect attention`
draws a trained run's maps with every byte HTML-escaped."""

from __future__ import annotations

import json

import pytest
import torch

from trevo.cli import main
from trevo.config import ComponentSpec, ModelConfig, RunConfig
from trevo.errors import IncompatibleError
from trevo.models import build_model
from trevo.registry import create
from trevo.tasks.base import TaskInfo
from trevo.tools.latent_attention import attention_maps, describe, html_bytes
from trevo.train import train

DIGITS = TaskInfo(vocab_size=17, head="classify", seq_len=64, n_classes=10, layout=(8, 8))
MLM = TaskInfo(vocab_size=257, head="mlm", seq_len=24, causal="forbidden", layout=(24,))


def _model(arch, info, position="learned", **options):
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, d_model=16, n_layers=1, position=ComponentSpec(position), max_len=info.seq_len,
                      options=options)
    return build_model(cfg, info).double().eval()


CASES = [("perceiver", DIGITS, {"n_latents": 6, "n_cross_attends": 2, "share_weights": False}),
         ("perceiver_io", DIGITS, {"n_latents": 6}), ("perceiver_io", MLM, {"n_latents": 5}),
         ("perceiver_mlm", MLM, {"n_latents": 5, "cross_heads": 2, "decoder_heads": 2, "decoder_qk_dim": 16})]


@pytest.mark.parametrize(("arch", "info", "options"), CASES, ids=[f"{a}-{i.head}" for a, i, _ in CASES])
def test_outputs_recomputed_from_the_weights_equal_the_forward_pass(arch, info, options):
    model = _model(arch, info, **options)
    tokens = torch.randint(0, info.vocab_size, (3, info.seq_len), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, info.seq_len, dtype=torch.bool)
    mask[1, -5:] = False
    with torch.no_grad():
        out, maps = attention_maps(model, tokens, mask)
    torch.testing.assert_close(out, model(tokens, mask), rtol=0, atol=1e-10)
    assert len(maps) == options.get("n_cross_attends", 1)
    for w in maps:
        assert w.shape[0] == 3 and w.shape[2:] == (options["n_latents"], info.seq_len)
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1], dtype=w.dtype))
        assert float(w[1, ..., -5:].abs().max()) == 0.0  # padded inputs get no weight


def test_features_and_refusals():
    task = create("task", "point_clouds", n_points=20)
    model = _model("perceiver", task.info, position="none", n_latents=4)
    x = task.train_batch(0, 2, 0)["input"].double()
    out, maps = attention_maps(model, x)
    torch.testing.assert_close(out, model(x), rtol=0, atol=1e-10)
    with pytest.raises(IncompatibleError, match="no latent array"):
        attention_maps(torch.nn.Linear(2, 2), x)


def test_describe_and_html_by_hand():
    w = torch.tensor([[0.0, 0.5, 0.5, 0.0], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
    tokens = torch.tensor([ord("<"), ord("A"), ord(" "), 256])
    s = describe(w, tokens)
    assert s[0]["entropy_bits"] == pytest.approx(1.0) and s[1]["entropy_bits"] == pytest.approx(2.0)
    assert s[0]["mean_pos"] == pytest.approx(1.5) and s[0]["spread"] == pytest.approx(0.5)
    assert s[0]["capital_enrichment"] == pytest.approx(0.5 / 0.25) and s[1]["punct_enrichment"] == pytest.approx(1)
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    where = describe(w, coordinates=points)  # a set of points: the weighted centre and radius in space
    assert where[0]["point"] == [0.5, 0.5] and where[0]["radius"] == pytest.approx(0.5 ** 0.5)
    assert where[1]["point"] == [0.5, 0.5] and "mean_pos" not in where[1]
    page = html_bytes(tokens, w, [0], s)
    assert "&lt;" in page and "<span" in page and ">▮<" in page and "<<" not in page


def test_inspect_attention_cli_on_a_trained_masked_lm(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = RunConfig().override(["model.arch=perceiver_io", "model.d_model=16", "model.n_layers=1",
                                "model.position.name=learned", "model.options.n_latents=6", "task.name=mlm",
                                "task.seq_len=32", "train.steps=2", "train.batch_size=2", "train.eval_every=2",
                                "train.eval_batches=1", "train.checkpoint_every=2", "train.warmup_steps=1"])
    train(cfg, run, progress=False)
    main(["inspect", "attention", str(run), "--out", str(tmp_path / "maps"), "--latents", "3"])
    printed = capsys.readouterr().out
    assert "6 latents over 32 inputs" in printed and printed.count("latent ") >= 3
    page = (tmp_path / "maps" / "attention.html").read_text()
    assert page.count("<h3>") == 3 * 2  # 3 latents × 2 examples
    stats = json.loads((tmp_path / "maps" / "attention.json").read_text())
    assert len(stats["latents"]) == 2 and len(stats["latents"][0]) == 6
