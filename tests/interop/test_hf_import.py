"""Logit parity of every imported model_type with transformers (float32, 1e-5): trevo's parallel
forward, its recurrent generation (prefill, then single-token steps on a batch of 3, where HF's own
RWKV steps return [B, B, V]), and greedy generation; plus the importer's clear errors."""

from __future__ import annotations

import json

import pytest
import torch

import trevo
from trevo.interop.hf_import import HFImportError, import_hf, read_hf_dir

pytest.importorskip("transformers", reason="the Hugging Face tests need the optional extra: pip install 'trevo[hf]'")
TYPES = ["rwkv", "rwkv_rescaled", "mamba", "mamba2", "llama", "gpt2"]
TOL = 1e-5


@pytest.fixture(scope="module")
def imported(hf_model, tmp_path_factory):
    runs = {}

    def get(model_type: str):
        if model_type not in runs:
            hf, path = hf_model(model_type)
            out = import_hf(path, tmp_path_factory.mktemp(f"run_{model_type}") / "run")
            runs[model_type] = (hf, trevo.load(out)[0])
        return runs[model_type]

    return get


def tokens(batch: int = 3, length: int = 19, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 64, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("model_type", TYPES)
def test_parallel_logits_equal_hf(imported, model_type):
    hf, model = imported(model_type)
    x = tokens()
    with torch.no_grad():
        expected, got = hf(x).logits, model(x)
    assert got.shape == expected.shape
    assert expected.std() > 0.1  # a model whose logits vary, so that parity means something
    assert (got - expected).abs().max() < TOL


@pytest.mark.parametrize("model_type", TYPES)
def test_recurrent_logits_equal_hf(imported, model_type):
    """Prefill 7 tokens, then 12 single-token steps on a batch of 3."""
    hf, model = imported(model_type)
    x = tokens()
    with torch.no_grad():
        expected = hf(x).logits
        logits, state = model.prefill(x[:, :7])
        steps = [logits]
        for t in range(7, x.shape[1]):
            step, state = model.step(x[:, t], state)
            assert step.shape == (3, 64)
            steps.append(step[:, None])
    assert (torch.cat(steps, 1) - expected).abs().max() < TOL


@pytest.mark.parametrize("model_type", TYPES)
def test_greedy_generation_equals_hf(imported, model_type):
    from trevo.generate import generate_ids

    hf, model = imported(model_type)
    prompt = tokens(1, 5, seed=2)
    with torch.no_grad():
        expected = hf.generate(prompt, max_new_tokens=16, do_sample=False)[:, 5:]
    got, _ = generate_ids(model, prompt, 16)
    assert torch.equal(got, expected)


def test_perceiver_masked_lm_logits_equal_hf(imported):
    """All positions, a shorter input (each output query reads only the latents) and a padded batch."""
    hf, model = imported("perceiver")
    x = tokens(2, 24)
    padding = torch.ones(2, 17, dtype=torch.long)
    padding[1, 12:] = 0
    with torch.no_grad():
        assert (model(x) - hf(input_ids=x).logits).abs().max() < TOL
        short = x[:, :17]
        assert (model(short) - hf(input_ids=short).logits[:, :17]).abs().max() < TOL
        padded = hf(input_ids=short, attention_mask=padding).logits[:, :17]
        assert (model(short, padding.bool()) - padded).abs().max() < TOL
        assert (padded - hf(input_ids=short).logits[:, :17]).abs().max() > 1e-3  # the padding mattered


def test_rwkv_rescaling_changes_the_function(imported):
    """The rescaled model is not the plain one with different norms by accident: HF in training mode
    (no rescaling) differs from HF at inference, and trevo matches the inference one (tested above)."""
    hf, model = imported("rwkv_rescaled")
    x = tokens()
    with torch.no_grad():
        inference = hf(x).logits
        hf.train()
        training = hf(x).logits
        hf.eval()
    assert (inference - training).abs().max() > 1e-4


def test_imported_run_loads_and_trains(imported, hf_model, tmp_path):
    """An imported run fine-tunes: train.init_from starts from its weights (on token files of its vocabulary)."""
    from trevo.tasks.tokenizer import write_token_file

    _, path = hf_model("gpt2")
    run = import_hf(path, tmp_path / "run", seq_len=16)
    data = tmp_path / "tokens"
    data.mkdir()
    for split, seed in (("train", 0), ("val", 1)):
        ids = torch.randint(0, 64, (400,), generator=torch.Generator().manual_seed(seed))
        write_token_file(data / f"{split}.bin", ids)
    cfg = trevo.api.run_config(run / "config.yaml").replace(
        {"task.tokens": str(data), "train.init_from": str(run), "train.steps": 2, "train.batch_size": 2,
         "train.eval_batches": 1, "train.warmup_steps": 1})
    before = trevo.load(run)[0].head.weight.clone()
    result = trevo.train(cfg, tmp_path / "tuned")
    tuned = trevo.load(tmp_path / "tuned")[0].head.weight
    assert result["final"]["step"] == 2
    assert 0 < (tuned - before).abs().max() < 0.1  # moved a little from the imported weights, not re-initialised


def test_unsupported_model_type_names_the_supported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(HFImportError, match="'bert' cannot be imported; supported: rwkv, mamba"):
        import_hf(tmp_path, tmp_path / "out")


def test_pickle_checkpoints_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(HFImportError, match="pickle files, which trevo never loads"):
        read_hf_dir(tmp_path)


def test_mismatched_shapes_are_named(hf_model, tmp_path):
    _, path = hf_model("llama")
    config = json.loads((path / "config.json").read_text())
    config["intermediate_size"] = 96  # the weights say 64
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes())
    with pytest.raises(HFImportError, match="gate_up.weight: checkpoint \\(128, 32\\), model \\(192, 32\\)"):
        import_hf(tmp_path, tmp_path / "out")


def test_unsupported_options_are_named(hf_model, tmp_path):
    _, path = hf_model("mamba2")
    config = json.loads((path / "config.json").read_text())
    config["n_groups"] = 2
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes())
    with pytest.raises(HFImportError, match="n_groups=2"):
        import_hf(tmp_path, tmp_path / "out")
