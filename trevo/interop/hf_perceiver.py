"""The Hugging Face Perceiver masked LM (``PerceiverForMaskedLM``, model_type ``perceiver``) onto
trevo's ``perceiver_mlm`` model (``trevo.models.perceiver_mlm``): the input embedding and positions,
the latents, the encoder's cross-attend, the self-attention layers as trevo blocks (softmax attention
with biases, a GELU MLP, LayerNorm), the decoder's position queries and cross-attend, and the bias of
the embedding decoder. The language Perceiver's byte ids (vocabulary 262: 6 special tokens, then the
bytes; mask id 3) become a ``token_mlm`` task with ``byte_offset: 6``.
"""

from __future__ import annotations

from typing import Any

import torch

from trevo.interop.hf_import import HFImportError, Tensors, _require, _take
from trevo.registry import names

PERCEIVER_BYTE_VOCAB, PERCEIVER_SPECIALS, PERCEIVER_MASK = 262, 6, 3


def _cross(w: Tensors, tensors: Tensors, src: str, dst: str) -> None:
    att = f"{src}.attention"
    for a, b in (("self.layernorm1", "q_norm"), ("self.layernorm2", "kv_norm"), ("self.query", "query"),
                 ("self.key", "key"), ("self.value", "value"), ("output.dense", "out"), ("layernorm", None),
                 ("mlp.dense1", None), ("mlp.dense2", None)):
        for p in ("weight", "bias"):
            source = f"{att}.{a}.{p}" if b else f"{src}.{a}.{p}"
            target = {"layernorm": "mlp_norm", "mlp.dense1": "mlp.up", "mlp.dense2": "mlp.down"}.get(a, b)
            w[f"{dst}.{target}.{p}"] = _take(tensors, source)


def perceiver_mapping(config: dict[str, Any], tensors: Tensors) -> tuple[dict[str, Any], Tensors]:
    if "embedding_decoder.bias" not in tensors or "perceiver.input_preprocessor.embeddings.weight" not in tensors:
        raise HFImportError("perceiver: only the masked language model (PerceiverForMaskedLM: text embeddings, "
                            "a position-query decoder, the embedding decoder) can be imported")
    act = config.get("hidden_act", "gelu")
    _require(act in names("activation"), f"perceiver: hidden_act={act!r}; supported: {', '.join(names('activation'))}")
    d, embed_dim = config["d_latents"], config["d_model"]
    qk, v = config.get("qk_channels"), config.get("v_channels")
    _require(qk in (None, d) and v in (None, d),
             f"perceiver: qk_channels={qk}, v_channels={v}; trevo's latent attention has the latent width {d}")
    shape = config.get("cross_attention_shape_for_attention", "kv")
    cross_qk = qk or (embed_dim if shape == "kv" else d)
    n_layers, max_pos, vocab = config["num_self_attends_per_block"], config["max_position_embeddings"], config[
        "vocab_size"]
    model = {
        "arch": "perceiver_mlm", "d_model": d, "n_layers": n_layers, "max_len": max_pos,
        "mixer": {"name": "softmax_attention", "n_heads": config["num_self_attention_heads"], "bias": True},
        "channel": {"name": "mlp", "expand": float(config.get("self_attention_widening_factor", 1)),
                    "activation": act, "bias": True},
        "norm": {"name": "layernorm", "eps": 1e-5}, "position": "learned", "tie_embeddings": True,
        "options": {"n_latents": config["num_latents"], "embed_dim": embed_dim, "n_blocks": config["num_blocks"],
                    "cross_heads": config["num_cross_attention_heads"], "cross_qk_dim": cross_qk,
                    "cross_v_dim": v or cross_qk, "cross_expand": float(config.get("cross_attention_widening_factor",
                                                                                    1)),
                    "cross_query_residual": bool(config.get("use_query_residual", True)),
                    "decoder_heads": 8, "decoder_qk_dim": 256, "decoder_v_dim": embed_dim, "decoder_expand": 1.0,
                    "activation": act}}
    task: dict[str, Any] = {"name": "token_mlm", "seq_len": min(max_pos, 256), "vocab_size": vocab}
    if vocab == PERCEIVER_BYTE_VOCAB:
        task.update(byte_offset=PERCEIVER_SPECIALS, mask_id=PERCEIVER_MASK)
    model["task"] = task
    pre = "perceiver.input_preprocessor"
    w = {"embed.weight": _take(tensors, f"{pre}.embeddings.weight"),
         "position.table": _take(tensors, f"{pre}.position_embeddings.weight"),
         "latents": _take(tensors, "perceiver.embeddings.latents"),
         "queries": _take(tensors, "perceiver.decoder.output_position_encodings.position_embeddings"),
         "head_bias": _take(tensors, "embedding_decoder.bias")}
    _cross(w, tensors, "perceiver.encoder.cross_attention", "encoder")
    _cross(w, tensors, "perceiver.decoder.decoding_cross_attention", "decoder")
    for i in range(n_layers):
        src, dst = f"perceiver.encoder.self_attends.{i}", f"blocks.{i}"
        att = f"{src}.attention"
        for p in ("weight", "bias"):
            w[f"{dst}.norm1.{p}"] = _take(tensors, f"{att}.self.layernorm1.{p}")
            w[f"{dst}.norm2.{p}"] = _take(tensors, f"{src}.layernorm.{p}")
            w[f"{dst}.mixer.q_proj.{p}"] = _take(tensors, f"{att}.self.query.{p}")
            w[f"{dst}.mixer.kv_proj.{p}"] = torch.cat([_take(tensors, f"{att}.self.key.{p}"),
                                                       _take(tensors, f"{att}.self.value.{p}")])
            w[f"{dst}.mixer.out_proj.{p}"] = _take(tensors, f"{att}.output.dense.{p}")
            w[f"{dst}.channel.up.{p}"] = _take(tensors, f"{src}.mlp.dense1.{p}")
            w[f"{dst}.channel.down.{p}"] = _take(tensors, f"{src}.mlp.dense2.{p}")
    return model, w
