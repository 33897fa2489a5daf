"""Import a local Hugging Face model directory into a trevo run directory.

``import_hf(PATH, OUT)`` reads ``config.json`` and ``model.safetensors`` (or its shards, as
``save_pretrained`` writes them) — never a pickle (``pytorch_model.bin`` is refused), never the
network — maps the weights onto trevo components and writes ``OUT/config.yaml``,
``OUT/checkpoint.safetensors`` (and ``OUT/tokenizer.json`` when the model has one), which
``trevo generate``, ``trevo eval``, ``trevo train --set train.init_from=OUT`` and ``trevo.load`` read.

Supported ``model_type``s and the trevo model each becomes (``pretrained_lm`` is the MetaFormer with
the options checkpoints need, ``trevo.models.pretrained_lm``):

| model_type | mixer | channel | norm | position | other |
|---|---|---|---|---|---|
| rwkv (RWKV-4) | rwkv4 | rwkv4_channel | layernorm | none | ``ln0`` as embed_norm, inference rescaling |
| mamba | mamba | (none) | rmsnorm | none | mixer-only blocks |
| mamba2 | mamba2 | (none) | rmsnorm | none | mixer-only blocks, one group |
| llama | softmax_attention (GQA) | swiglu | rmsnorm | rope | untied head |
| gpt2 | softmax_attention, biases | mlp, gelu_tanh | layernorm | learned | tied head |
| perceiver (masked LM) | see ``trevo.interop.hf_perceiver`` | | | | |

Every mapping is tested for logit parity against ``transformers`` (tests/interop/test_hf_import.py).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from trevo.checkpoint import CHECKPOINT, atomic_write_text, save_checkpoint
from trevo.config import RunConfig
from trevo.errors import TrevoError

Tensors = dict[str, torch.Tensor]


class HFImportError(TrevoError, ValueError):
    """A Hugging Face directory that cannot be imported (unsupported type, options or shapes)."""


def read_hf_dir(path: str | Path) -> tuple[dict[str, Any], Tensors]:
    """``config.json`` and the safetensors weights of a local model directory (``save_pretrained``'s layout)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise HFImportError(f"{str(root)!r} is not a directory; give a local Hugging Face model folder "
                            f"(config.json + model.safetensors, as save_pretrained writes it)")
    config_path = root / "config.json"
    if not config_path.is_file():
        raise HFImportError(f"{root} has no config.json; is it a Hugging Face model folder?")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise HFImportError(f"{config_path} is not valid JSON: {e}") from None
    index = root / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else []
    if not files and (root / "model.safetensors").is_file():
        files = ["model.safetensors"]
    if not files:
        pickled = [p.name for p in root.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        hint = (f" It holds {', '.join(pickled)}: pickle files, which trevo never loads (they can run code). "
                f"Convert them with transformers' save_pretrained(..., safe_serialization=True) first."
                if pickled else "")
        raise HFImportError(f"{root} has no model.safetensors.{hint}")
    tensors: Tensors = {}
    for name in files:
        try:
            tensors.update(load_file(str(root / name)))
        except (SafetensorError, OSError) as e:
            raise HFImportError(f"{root / name} is not a readable safetensors file: {e}") from None
    return config, tensors


# ----------------------------------------------------------------------------------------------------------
# One mapping per model_type: the trevo model config, and the trevo weights from the HF weights.

def _get(config: dict[str, Any], *names: str, default: Any = None) -> Any:
    for n in names:
        if config.get(n) is not None:
            return config[n]
    return default


def _number(value: Any) -> float:
    """A float from config.json, where transformers writes infinity as {"__float__": "Infinity"}."""
    return float(value["__float__"]) if isinstance(value, dict) and "__float__" in value else float(value)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise HFImportError(message)


def _take(tensors: Tensors, name: str) -> torch.Tensor:
    if name not in tensors:
        raise HFImportError(f"the checkpoint has no tensor {name!r}; is config.json the one of these weights?")
    return tensors[name]


def _expand_for(hidden: int, d: int) -> float:
    """An ``expand`` whose int(expand·d) is exactly ``hidden`` (RWKV's channel-mix width)."""
    return (hidden + 0.5) / d


def _head(tensors: Tensors, name: str, embed: torch.Tensor, tied: bool) -> torch.Tensor:
    return embed if tied or name not in tensors else tensors[name]


def _rwkv(config: dict[str, Any], tensors: Tensors) -> tuple[dict[str, Any], Tensors]:
    d, L = config["hidden_size"], config["num_hidden_layers"]
    _require(_get(config, "attention_hidden_size", default=d) == d,
             f"rwkv: attention_hidden_size={config.get('attention_hidden_size')} differs from hidden_size={d}; "
             f"trevo's rwkv4 mixer has one width")
    eps = config.get("layer_norm_epsilon", 1e-5)
    inner = _get(config, "intermediate_size", default=4 * d)
    tied = bool(config.get("tie_word_embeddings", False))
    model = {"arch": "pretrained_lm", "d_model": d, "n_layers": L, "mixer": {"name": "rwkv4"},
             "channel": {"name": "rwkv4_channel", "expand": _expand_for(inner, d)},
             "norm": {"name": "layernorm", "eps": eps}, "position": "none", "tie_embeddings": tied,
             "options": {"embed_norm": {"name": "layernorm", "eps": eps},
                         "final_norm": {"name": "layernorm", "eps": 1e-5},
                         "rwkv_rescale_every": int(config.get("rescale_every", 0) or 0)}}
    embed = _take(tensors, "rwkv.embeddings.weight")
    w = {"embed.weight": embed, "embed_norm.weight": _take(tensors, "rwkv.blocks.0.pre_ln.weight"),
         "embed_norm.bias": _take(tensors, "rwkv.blocks.0.pre_ln.bias"),
         "norm.weight": _take(tensors, "rwkv.ln_out.weight"), "norm.bias": _take(tensors, "rwkv.ln_out.bias"),
         "head.weight": _head(tensors, "head.weight", embed, tied)}
    for i in range(L):
        src, dst = f"rwkv.blocks.{i}", f"blocks.{i}"
        for a, b in (("ln1", "norm1"), ("ln2", "norm2")):
            for p in ("weight", "bias"):
                w[f"{dst}.{b}.{p}"] = _take(tensors, f"{src}.{a}.{p}")
        att, ffn = f"{src}.attention", f"{src}.feed_forward"
        w[f"{dst}.mixer.time_decay"] = _take(tensors, f"{att}.time_decay")
        w[f"{dst}.mixer.time_first"] = _take(tensors, f"{att}.time_first")
        for a, b in (("key", "k"), ("value", "v"), ("receptance", "r")):
            w[f"{dst}.mixer.time_mix_{b}"] = _take(tensors, f"{att}.time_mix_{a}").reshape(-1)
        for p in ("key", "value", "receptance", "output"):
            w[f"{dst}.mixer.{p}.weight"] = _take(tensors, f"{att}.{p}.weight")
        for a, b in (("key", "k"), ("receptance", "r")):
            w[f"{dst}.channel.time_mix_{b}"] = _take(tensors, f"{ffn}.time_mix_{a}").reshape(-1)
        for p in ("key", "value", "receptance"):
            w[f"{dst}.channel.{p}.weight"] = _take(tensors, f"{ffn}.{p}.weight")
    return model, w


def _check_silu(config: dict[str, Any], model_type: str) -> None:
    act = config.get("hidden_act", "silu")
    _require(act == "silu", f"{model_type}: hidden_act={act!r}; trevo's {model_type} uses silu")


def _mamba(config: dict[str, Any], tensors: Tensors) -> tuple[dict[str, Any], Tensors]:
    d, L = config["hidden_size"], config["num_hidden_layers"]
    _check_silu(config, "mamba")
    inner = _get(config, "intermediate_size", default=2 * d)
    _require(inner % d == 0, f"mamba: intermediate_size={inner} is not a multiple of hidden_size={d}")
    _require(not config.get("use_bias", False), "mamba: use_bias=true (biased in/out projections) is not supported")
    rank = config.get("time_step_rank", "auto")
    rank = -(-d // 16) if rank == "auto" else int(rank)
    tied = bool(config.get("tie_word_embeddings", True))
    eps = config.get("layer_norm_epsilon", 1e-5)
    model = {"arch": "pretrained_lm", "d_model": d, "n_layers": L,
             "mixer": {"name": "mamba", "d_state": config["state_size"], "expand": inner // d,
                       "conv_size": config.get("conv_kernel", 4), "dt_low_rank_dim": rank},
             "norm": {"name": "rmsnorm", "eps": eps}, "position": "none", "tie_embeddings": tied,
             "options": {"mixer_only": True}}
    embed = _take(tensors, "backbone.embeddings.weight")
    w = {"embed.weight": embed, "norm.weight": _take(tensors, "backbone.norm_f.weight"),
         "head.weight": _head(tensors, "lm_head.weight", embed, tied)}
    for i in range(L):
        src, dst = f"backbone.layers.{i}", f"blocks.{i}"
        w[f"{dst}.norm1.weight"] = _take(tensors, f"{src}.norm.weight")
        m = f"{src}.mixer"
        for a, b in (("in_proj", "in_proj"), ("x_proj", "x_proj"), ("dt_proj", "dt_proj"), ("out_proj", "out_proj"),
                     ("conv1d", "conv")):
            w[f"{dst}.mixer.{b}.weight"] = _take(tensors, f"{m}.{a}.weight")
        conv_bias = tensors.get(f"{m}.conv1d.bias")
        w[f"{dst}.mixer.conv.bias"] = conv_bias if conv_bias is not None else torch.zeros(inner)
        w[f"{dst}.mixer.dt_bias"] = _take(tensors, f"{m}.dt_proj.bias")
        w[f"{dst}.mixer.A_log"] = _take(tensors, f"{m}.A_log")
        w[f"{dst}.mixer.D"] = _take(tensors, f"{m}.D")
    return model, w


def _mamba2(config: dict[str, Any], tensors: Tensors) -> tuple[dict[str, Any], Tensors]:
    d, L = config["hidden_size"], config["num_hidden_layers"]
    _check_silu(config, "mamba2")
    expand = config.get("expand", 2)
    _require(float(expand).is_integer(), f"mamba2: expand={expand} must be an integer")
    expand = int(expand)
    head_dim, n_heads = config["head_dim"], config["num_heads"]
    _require(n_heads * head_dim == expand * d, f"mamba2: num_heads·head_dim = {n_heads * head_dim} must equal "
                                               f"expand·hidden_size = {expand * d}")
    _require(config.get("n_groups", 1) == 1, f"mamba2: n_groups={config.get('n_groups')}; trevo's mamba2 shares "
                                             f"B and C across all heads (n_groups=1)")
    _require(not config.get("use_bias", False), "mamba2: use_bias=true is not supported")
    eps = config.get("layer_norm_epsilon", 1e-5)
    _require(eps == 1e-5, f"mamba2: layer_norm_epsilon={eps}; trevo's mamba2 gated norm uses 1e-5")
    limit = [_number(v) for v in config.get("time_step_limit") or (0.0, float("inf"))]
    _require(limit[0] <= 0 and limit[1] == float("inf"),
             f"mamba2: time_step_limit={limit} (a clamp of Δ) is not supported")
    tied = bool(config.get("tie_word_embeddings", False))
    model = {"arch": "pretrained_lm", "d_model": d, "n_layers": L,
             "mixer": {"name": "mamba2", "expand": expand, "head_dim": head_dim, "d_state": config["state_size"],
                       "conv_size": config.get("conv_kernel", 4)},
             "norm": {"name": "rmsnorm", "eps": eps}, "position": "none", "tie_embeddings": tied,
             "options": {"mixer_only": True}}
    embed = _take(tensors, "backbone.embeddings.weight")
    w = {"embed.weight": embed, "norm.weight": _take(tensors, "backbone.norm_f.weight"),
         "head.weight": _head(tensors, "lm_head.weight", embed, tied)}
    conv_dim = expand * d + 2 * config["state_size"]
    for i in range(L):
        src, dst = f"backbone.layers.{i}", f"blocks.{i}"
        w[f"{dst}.norm1.weight"] = _take(tensors, f"{src}.norm.weight")
        m = f"{src}.mixer"
        for a, b in (("in_proj", "in_proj"), ("out_proj", "out_proj"), ("conv1d", "conv"), ("norm", "norm")):
            w[f"{dst}.mixer.{b}.weight"] = _take(tensors, f"{m}.{a}.weight")
        conv_bias = tensors.get(f"{m}.conv1d.bias")
        w[f"{dst}.mixer.conv.bias"] = conv_bias if conv_bias is not None else torch.zeros(conv_dim)
        for p in ("dt_bias", "A_log", "D"):
            w[f"{dst}.mixer.{p}"] = _take(tensors, f"{m}.{p}")
    return model, w


def _llama(config: dict[str, Any], tensors: Tensors) -> tuple[dict[str, Any], Tensors]:
    d, L = config["hidden_size"], config["num_hidden_layers"]
    _check_silu(config, "llama")
    n_heads = config["num_attention_heads"]
    n_kv = _get(config, "num_key_value_heads", default=n_heads)
    head_dim = _get(config, "head_dim", default=d // n_heads)
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    _require(rope_type == "default", f"llama: rope_type={rope_type!r} (scaled RoPE) is not supported; "
                                     f"trevo's rope is the default RoFormer rotation")
    theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    inner = config["intermediate_size"]
    _require(inner % 8 == 0, f"llama: intermediate_size={inner} must be a multiple of 8 (trevo's swiglu width rule)")
    tied = bool(config.get("tie_word_embeddings", False))
    bias = bool(config.get("attention_bias", False))
    model = {"arch": "pretrained_lm", "d_model": d, "n_layers": L,
             "mixer": {"name": "softmax_attention", "n_heads": n_heads, "n_kv_heads": n_kv, "head_dim": head_dim,
                       "bias": bias},
             "channel": {"name": "swiglu", "expand": 1.5 * inner / d, "bias": bool(config.get("mlp_bias", False))},
             "norm": {"name": "rmsnorm", "eps": config.get("rms_norm_eps", 1e-6)},
             "position": {"name": "rope", "base": float(theta)}, "tie_embeddings": tied, "options": {}}
    embed = _take(tensors, "model.embed_tokens.weight")
    w = {"embed.weight": embed, "norm.weight": _take(tensors, "model.norm.weight"),
         "head.weight": _head(tensors, "lm_head.weight", embed, tied)}
    for i in range(L):
        src, dst = f"model.layers.{i}", f"blocks.{i}"
        w[f"{dst}.norm1.weight"] = _take(tensors, f"{src}.input_layernorm.weight")
        w[f"{dst}.norm2.weight"] = _take(tensors, f"{src}.post_attention_layernorm.weight")
        a = f"{src}.self_attn"
        for p in ("weight", "bias") if bias else ("weight",):
            w[f"{dst}.mixer.q_proj.{p}"] = _take(tensors, f"{a}.q_proj.{p}")
            w[f"{dst}.mixer.kv_proj.{p}"] = torch.cat([_take(tensors, f"{a}.k_proj.{p}"),
                                                       _take(tensors, f"{a}.v_proj.{p}")])
            w[f"{dst}.mixer.out_proj.{p}"] = _take(tensors, f"{a}.o_proj.{p}")
        m = f"{src}.mlp"
        for p in ("weight", "bias") if config.get("mlp_bias") else ("weight",):
            w[f"{dst}.channel.gate_up.{p}"] = torch.cat([_take(tensors, f"{m}.gate_proj.{p}"),
                                                         _take(tensors, f"{m}.up_proj.{p}")])
            w[f"{dst}.channel.down.{p}"] = _take(tensors, f"{m}.down_proj.{p}")
    return model, w


GPT2_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu",
                    "silu": "silu", "swish": "silu"}


def _gpt2(config: dict[str, Any], tensors: Tensors) -> tuple[dict[str, Any], Tensors]:
    d, L, n_heads = config["n_embd"], config["n_layer"], config["n_head"]
    act = config.get("activation_function", "gelu_new")
    _require(act in GPT2_ACTIVATIONS, f"gpt2: activation_function={act!r}; supported: {', '.join(GPT2_ACTIVATIONS)}")
    _require(config.get("scale_attn_weights", True), "gpt2: scale_attn_weights=false is not supported")
    _require(not config.get("scale_attn_by_inverse_layer_idx", False),
             "gpt2: scale_attn_by_inverse_layer_idx=true is not supported")
    _require(not config.get("add_cross_attention", False), "gpt2: cross-attention layers are not supported")
    inner = _get(config, "n_inner", default=4 * d)
    _require(inner % 8 == 0, f"gpt2: n_inner={inner} must be a multiple of 8 (trevo's mlp width rule)")
    tied = bool(config.get("tie_word_embeddings", True))
    model = {"arch": "pretrained_lm", "d_model": d, "n_layers": L, "max_len": config.get("n_positions", 1024),
             "mixer": {"name": "softmax_attention", "n_heads": n_heads, "bias": True},
             "channel": {"name": "mlp", "expand": inner / d, "activation": GPT2_ACTIVATIONS[act], "bias": True},
             "norm": {"name": "layernorm", "eps": config.get("layer_norm_epsilon", 1e-5)},
             "position": "learned", "tie_embeddings": tied, "options": {}}
    embed = _take(tensors, "transformer.wte.weight")
    w = {"embed.weight": embed, "position.table": _take(tensors, "transformer.wpe.weight"),
         "norm.weight": _take(tensors, "transformer.ln_f.weight"), "norm.bias": _take(tensors, "transformer.ln_f.bias"),
         "head.weight": _head(tensors, "lm_head.weight", embed, tied)}
    for i in range(L):
        src, dst = f"transformer.h.{i}", f"blocks.{i}"
        for a, b in (("ln_1", "norm1"), ("ln_2", "norm2")):
            for p in ("weight", "bias"):
                w[f"{dst}.{b}.{p}"] = _take(tensors, f"{src}.{a}.{p}")
        # Conv1D stores W as [in, out] (y = x W + b); nn.Linear as [out, in].
        qkv_w, qkv_b = _take(tensors, f"{src}.attn.c_attn.weight").t(), _take(tensors, f"{src}.attn.c_attn.bias")
        w[f"{dst}.mixer.q_proj.weight"], w[f"{dst}.mixer.kv_proj.weight"] = qkv_w[:d], qkv_w[d:]
        w[f"{dst}.mixer.q_proj.bias"], w[f"{dst}.mixer.kv_proj.bias"] = qkv_b[:d], qkv_b[d:]
        w[f"{dst}.mixer.out_proj.weight"] = _take(tensors, f"{src}.attn.c_proj.weight").t()
        w[f"{dst}.mixer.out_proj.bias"] = _take(tensors, f"{src}.attn.c_proj.bias")
        w[f"{dst}.channel.up.weight"] = _take(tensors, f"{src}.mlp.c_fc.weight").t()
        w[f"{dst}.channel.up.bias"] = _take(tensors, f"{src}.mlp.c_fc.bias")
        w[f"{dst}.channel.down.weight"] = _take(tensors, f"{src}.mlp.c_proj.weight").t()
        w[f"{dst}.channel.down.bias"] = _take(tensors, f"{src}.mlp.c_proj.bias")
    return model, w


MAPPINGS: dict[str, Callable[[dict[str, Any], Tensors], tuple[dict[str, Any], Tensors]]] = {
    "rwkv": _rwkv, "mamba": _mamba, "mamba2": _mamba2, "llama": _llama, "gpt2": _gpt2,
}


def _mappings() -> dict[str, Callable]:
    from trevo.interop.hf_perceiver import perceiver_mapping  # it builds on this module's helpers

    return {**MAPPINGS, "perceiver": perceiver_mapping}


def convert(config: dict[str, Any], tensors: Tensors, *, seq_len: int | None = None,
            tokenizer: str | None = None) -> tuple[RunConfig, Tensors]:
    """The trevo run config and trevo state dict of a Hugging Face model's config and weights."""
    model_type = config.get("model_type")
    mappings = _mappings()
    if model_type not in mappings:
        raise HFImportError(f"model_type {model_type!r} cannot be imported; supported: {', '.join(mappings)}")
    model, weights = mappings[model_type](config, tensors)
    vocab = config.get("vocab_size") or int(weights["embed.weight"].shape[0])
    context = config.get("n_positions") or config.get("max_position_embeddings") or config.get("context_length")
    seq_len = seq_len or min(int(context or 256), 256)
    task = model.pop("task", None) or {"name": "token_lm", "seq_len": seq_len, "vocab_size": vocab,
                                       "tokenizer": tokenizer}
    return RunConfig.from_dict({"model": model, "task": task}), {k: v.float() for k, v in weights.items()}


def build_imported(cfg: RunConfig, weights: Tensors) -> torch.nn.Module:
    """The trevo model of ``cfg`` holding ``weights`` (shapes checked, every tensor used)."""
    from trevo.models import build_model
    from trevo.registry import create

    task = create("task", cfg.task.name, **cfg.task.options)
    model = build_model(cfg.model, task.info)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unused = sorted(set(weights) - set(expected))
    if missing or unused:
        raise HFImportError(f"the mapped weights do not fit the trevo model (missing {missing[:4]}, unused "
                            f"{unused[:4]}); this is a bug in the {cfg.model.arch} mapping")
    wrong = [f"{k}: checkpoint {tuple(v.shape)}, model {tuple(expected[k].shape)}"
             for k, v in weights.items() if v.shape != expected[k].shape]
    if wrong:
        raise HFImportError(f"tensor shapes do not match config.json: {'; '.join(wrong[:3])}")
    model.load_state_dict(weights)
    return model.eval()


def import_hf(path: str | Path, out: str | Path, *, seq_len: int | None = None) -> Path:
    """Write the trevo run directory ``out`` for the Hugging Face model folder ``path``; returns ``out``."""
    root, out = Path(path).expanduser(), Path(out)
    config, tensors = read_hf_dir(root)
    if (out / CHECKPOINT).exists():
        raise HFImportError(f"{out} already holds a run; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = None
    if (root / "tokenizer.json").is_file():
        shutil.copyfile(root / "tokenizer.json", out / "tokenizer.json")
        tokenizer = str((out / "tokenizer.json").resolve())
    cfg, weights = convert(config, tensors, seq_len=seq_len, tokenizer=tokenizer)
    model = build_imported(cfg, weights)
    save_weights(out / CHECKPOINT, model, cfg, {"imported_from": str(root.resolve()),
                                               "model_type": config.get("model_type")})
    atomic_write_text(out / "config.yaml", cfg.to_yaml())
    return out


def save_weights(path: Path, model: torch.nn.Module, cfg: RunConfig, extra: dict[str, Any] | None = None) -> None:
    """A checkpoint of the weights alone (no optimizer), readable by ``trevo.checkpoint.load_checkpoint``."""
    meta = {"step": 0, "config_hash": cfg.hash(), "history": [], "losses": [], **(extra or {})}
    save_checkpoint(path, model, None, meta)
