"""Export: a trevo run as a transformers folder; AutoModelForCausalLM.from_pretrained gives back the
same logits, and generate() runs through trevo's recurrent state (TrevoState), not by re-running the prefix."""

from __future__ import annotations

import pytest
import torch

from trevo.interop.hf_import import import_hf

pytest.importorskip("transformers", reason="the Hugging Face tests need the optional extra: pip install 'trevo[hf]'")
TYPES = ["rwkv", "mamba", "mamba2", "llama", "gpt2"]


@pytest.fixture(scope="module")
def exported(hf_model, tmp_path_factory):
    from transformers import AutoModelForCausalLM

    import trevo.hf

    def get(model_type: str):
        hf, path = hf_model(model_type)
        root = tmp_path_factory.mktemp(f"export_{model_type}")
        run = import_hf(path, root / "run")
        out = trevo.hf.export_hf(run, root / "hf")
        return hf, AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()

    return get


@pytest.mark.parametrize("model_type", TYPES)
def test_round_trip_equals_the_original(exported, model_type):
    """HF model → trevo import → trevo export → from_pretrained: the logits of the original."""
    hf, back = exported(model_type)
    assert type(back).__name__ == "TrevoForCausalLM"
    x = torch.randint(0, 64, (2, 13), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert (back(x).logits - hf(x).logits).abs().max() < 1e-5
        assert torch.equal(back.generate(x[:1], max_new_tokens=10, do_sample=False),
                           hf.generate(x[:1], max_new_tokens=10, do_sample=False))


def test_masked_lm_round_trip(hf_model, tmp_path):
    from transformers import AutoModelForMaskedLM

    import trevo.hf

    hf, path = hf_model("perceiver")
    out = trevo.hf.export_hf(import_hf(path, tmp_path / "run"), tmp_path / "hf")
    back = AutoModelForMaskedLM.from_pretrained(out, local_files_only=True).eval()
    assert type(back).__name__ == "TrevoForMaskedLM"
    x = torch.randint(0, 64, (2, 24))
    with torch.no_grad():
        assert (back(x).logits - hf(input_ids=x).logits).abs().max() < 1e-5


def test_generate_steps_through_the_state(exported):
    """After the prompt, every forward of generate() gets one token and a TrevoState whose offset grows."""
    from trevo.hf import TrevoState

    _, back = exported("mamba")
    seen = []
    original = back.trevo.prefill

    def spy(tokens, state=None):
        seen.append((tokens.shape[1], None if state is None else state["offset"]))
        return original(tokens, state)

    back.trevo.prefill = spy
    out = back.generate(torch.tensor([[1, 2, 3, 4, 5]]), max_new_tokens=4, do_sample=False,
                        return_dict_in_generate=True)
    assert seen == [(5, None), (1, 5), (1, 6), (1, 7)]
    assert isinstance(out.past_key_values, TrevoState) and out.past_key_values.get_seq_length() == 8


def test_any_trevo_model_exports(tmp_path):
    """A model trained in trevo (here a hybrid-free RWKV-4 byte LM) exports and reloads with equal logits."""
    from transformers import AutoModelForCausalLM

    import trevo.hf

    cfg = trevo.api.run_config({"model": {"mixer": "rwkv4", "channel": "rwkv4_channel", "d_model": 32, "n_layers": 2},
                                "task": {"name": "byte_lm", "seq_len": 32},
                                "train": {"steps": 2, "batch_size": 2, "eval_batches": 1, "warmup_steps": 1}})
    trevo.train(cfg, tmp_path / "run")
    model = trevo.load(tmp_path / "run")[0]
    back = AutoModelForCausalLM.from_pretrained(trevo.hf.export_hf(tmp_path / "run", tmp_path / "hf")).eval()
    x = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        assert (back(x).logits - model(x)).abs().max() < 1e-6


def test_padded_batches_are_refused(exported):
    _, back = exported("gpt2")
    with pytest.raises(ValueError, match="padded batch"):
        back(torch.tensor([[1, 2, 3]]), attention_mask=torch.tensor([[0, 1, 1]]))


def test_a_tokenized_run_exports_with_its_tokenizer(tmp_path, monkeypatch):
    """A token_lm run (BPE trained on the data) → AutoTokenizer + AutoModelForCausalLM generate what trevo does."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import trevo.hf
    from trevo.generate import generate_ids

    monkeypatch.setenv("TREVO_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "code.py"
    data.write_text("".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(300)))
    cfg = trevo.api.run_config({"model": {"d_model": 32, "n_layers": 1, "position": "rope"},
                                "task": {"name": "token_lm", "seq_len": 32, "data": str(data), "vocab_size": 300},
                                "train": {"steps": 2, "batch_size": 2, "eval_batches": 1, "warmup_steps": 1}})
    trevo.train(cfg, tmp_path / "run")
    out = trevo.hf.export_hf(tmp_path / "run", tmp_path / "hf")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out)
    assert model.config.eos_token_id == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    prompt = tokenizer("def f", return_tensors="pt")
    hf_ids = model.generate(**prompt, max_new_tokens=8, do_sample=False, eos_token_id=None)
    ours, _ = generate_ids(trevo.load(tmp_path / "run")[0], prompt["input_ids"], 8)
    assert torch.equal(hf_ids[:, prompt["input_ids"].shape[1]:], ours)
    assert tokenizer.decode(hf_ids[0]).startswith("def f")


def test_continuous_input_and_regression_runs_are_refused_by_name():
    from trevo.config import ComponentSpec, ModelConfig, RunConfig
    from trevo.errors import IncompatibleError
    from trevo.interop.hf_export import to_hf
    from trevo.models import build_model
    from trevo.registry import create

    info = create("task", "optical_flow", size=6).info
    cfg = ModelConfig(arch="perceiver_io", d_model=8, n_layers=1, position=ComponentSpec("fourier", {"n_bands": 2}),
                      options={"n_latents": 2})
    with pytest.raises(IncompatibleError, match="head 'regress' and continuous inputs"):
        to_hf(build_model(cfg, info), RunConfig(model=cfg))
