"""Export any trevo model as a ``transformers`` model: ``TrevoConfig`` and ``TrevoForCausalLM`` (and
the masked-LM and classification heads), registered with the Auto classes on ``import trevo.hf``.

``export_hf(RUN_DIR, OUT)`` writes ``OUT/config.json`` (model_type ``trevo``, holding the trevo model
config), ``OUT/model.safetensors`` and, for a tokenized run, the tokenizer (``tokenizer.json`` with
its ``PreTrainedTokenizerFast`` files), so that after ``import trevo.hf``::

    model = AutoModelForCausalLM.from_pretrained(OUT)
    tokenizer = AutoTokenizer.from_pretrained(OUT)
    model.generate(**tokenizer("def ", return_tensors="pt"), max_new_tokens=20)

``generate`` runs through trevo's recurrent state (``TrevoState``, handed back as
``past_key_values``): the prompt is prefilled once, then every new token is one ``step`` — a KV cache
for softmax attention, a constant-size state for the recurrent mixers — never a re-run of the prefix.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    GenerationMixin,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import CausalLMOutputWithPast, MaskedLMOutput, SequenceClassifierOutput

from trevo.config import ModelConfig, RunConfig
from trevo.errors import IncompatibleError
from trevo.tasks.base import TaskInfo
from trevo.tasks.tokenizer import END_OF_TEXT

HEADS = {"lm": "TrevoForCausalLM", "mlm": "TrevoForMaskedLM", "classify": "TrevoForSequenceClassification"}


class TrevoConfig(PreTrainedConfig):
    """A trevo model as a ``transformers`` config: ``trevo_model`` is the trevo model config (a
    ``ModelConfig`` as a dict) and ``trevo_task`` what the model needs of its task (vocab_size, head,
    seq_len, n_classes, causal, layout)."""

    model_type = "trevo"

    def __init__(self, trevo_model: dict[str, Any] | None = None, trevo_task: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        self.trevo_model = trevo_model or RunConfig().to_dict()["model"]
        self.trevo_task = trevo_task or {"vocab_size": 256, "head": "lm", "seq_len": 256, "causal": "required"}
        kwargs.setdefault("vocab_size", self.trevo_task["vocab_size"])
        kwargs.setdefault("tie_word_embeddings", bool(self.trevo_model.get("tie_embeddings", True)))
        super().__init__(**kwargs)

    def task_info(self) -> TaskInfo:
        info = dict(self.trevo_task)
        if info.get("layout") is not None:
            info["layout"] = tuple(info["layout"])
        return TaskInfo(**info)

    def model_config(self) -> ModelConfig:
        return RunConfig.from_dict({"model": self.trevo_model}).model


class TrevoState:
    """trevo's generation state (per layer: a KV cache or a recurrent state) as ``past_key_values``."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return int(self.state["offset"])

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        """Select the batch rows ``beam_idx`` of every state tensor (beam search)."""
        self.state = _map_tensors(self.state, lambda t: t.index_select(0, beam_idx.to(t.device)))


def _map_tensors(obj: Any, fn) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


class TrevoPreTrainedModel(PreTrainedModel):
    config_class = TrevoConfig
    config: TrevoConfig
    base_model_prefix = "trevo"
    main_input_name = "input_ids"

    def __init__(self, config: TrevoConfig) -> None:
        super().__init__(config)
        from trevo.models import build_model

        info = config.task_info()
        if info.head != self.head:
            raise IncompatibleError(f"{type(self).__name__} needs a trevo model with a {self.head!r} head; this one "
                                    f"has {info.head!r}: load it with {HEADS[info.head]}")
        self.trevo = build_model(config.model_config(), info)
        if getattr(self.trevo, "head", None) is not None and self.trevo.head.weight is getattr(
                getattr(self.trevo, "embed", None), "weight", None):
            self._tied_weights_keys = {"trevo.head.weight": "trevo.embed.weight"}
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        """trevo initialises its own modules when it builds them; loading replaces them."""

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.trevo.embed


def _check_mask(attention_mask: torch.Tensor | None) -> None:
    if attention_mask is not None and not bool(attention_mask.all()):
        raise ValueError("trevo models read every position of input_ids; a padded batch (attention_mask with "
                         "zeros) is not supported: generate one prompt at a time or prompts of one length")


class TrevoForCausalLM(TrevoPreTrainedModel, GenerationMixin):
    """A trevo causal LM; ``past_key_values`` is a ``TrevoState``."""

    head = "lm"
    _is_stateful = True

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the state is trevo's own (TrevoState), created by the first forward

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None,
                past_key_values: TrevoState | None = None, use_cache: bool | None = None,
                labels: torch.LongTensor | None = None, return_dict: bool | None = None,
                logits_to_keep: int = 0, cache: TrevoState | None = None, **kwargs: Any) -> CausalLMOutputWithPast:
        # transformers >= 5.24 hands the state back as ``cache`` (``past_key_values`` before): take either.
        past_key_values = cache if cache is not None else past_key_values
        if past_key_values is None and not use_cache:
            _check_mask(attention_mask)
            logits, cache = self.trevo(input_ids), None
        else:
            if past_key_values is None:
                _check_mask(attention_mask)
            state = past_key_values.state if past_key_values is not None else None
            logits, state = self.trevo.prefill(input_ids, state)
            cache = TrevoState(state)
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                                     labels[:, 1:].reshape(-1), ignore_index=-100)
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=cache)


class TrevoForMaskedLM(TrevoPreTrainedModel):
    """A trevo masked LM (a bidirectional model with an ``mlm`` head)."""

    head = "mlm"

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None,
                labels: torch.LongTensor | None = None, **kwargs: Any) -> MaskedLMOutput:
        mask = None if attention_mask is None else attention_mask.bool()
        logits = self.trevo(input_ids, mask)
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                                     ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits)


class TrevoForSequenceClassification(TrevoPreTrainedModel):
    """A trevo sequence classifier (a model with a ``classify`` head)."""

    head = "classify"

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None,
                labels: torch.LongTensor | None = None, **kwargs: Any) -> SequenceClassifierOutput:
        mask = None if attention_mask is None else attention_mask.bool()
        logits = self.trevo(input_ids, mask)
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


CLASSES = {"lm": TrevoForCausalLM, "mlm": TrevoForMaskedLM, "classify": TrevoForSequenceClassification}


def register() -> None:
    """Register ``TrevoConfig`` and the trevo models with ``transformers``' Auto classes (idempotent)."""
    try:
        AutoConfig.register("trevo", TrevoConfig)
    except ValueError:  # already registered
        return
    AutoModelForCausalLM.register(TrevoConfig, TrevoForCausalLM)
    AutoModelForMaskedLM.register(TrevoConfig, TrevoForMaskedLM)
    AutoModelForSequenceClassification.register(TrevoConfig, TrevoForSequenceClassification)


def to_hf(model: torch.nn.Module, cfg: RunConfig, **config: Any) -> TrevoPreTrainedModel:
    """The ``transformers`` model holding (a copy of) the weights of the trevo ``model``; ``config`` sets
    fields of its ``TrevoConfig`` (e.g. ``eos_token_id``)."""
    info = model.info
    if info.head not in HEADS or getattr(info, "input_features", 0):
        raise IncompatibleError(f"a Hugging Face export holds a token model with a {', '.join(HEADS)} head; this "
                                f"run's task has head {info.head!r}"
                                f"{' and continuous inputs' if getattr(info, 'input_features', 0) else ''}: keep it "
                                f"as a trevo run directory (safetensors + config.yaml)")
    task = {k: v for k, v in dataclasses.asdict(info).items() if k in ("vocab_size", "head", "seq_len", "n_classes",
                                                                     "causal", "layout")}
    task["layout"] = list(task["layout"]) if task["layout"] is not None else None
    config = TrevoConfig(trevo_model=cfg.to_dict()["model"], trevo_task=task, architectures=[HEADS[info.head]],
                         **config)
    hf = CLASSES[info.head](config)
    hf.trevo.load_state_dict(model.state_dict())
    return hf.eval()


def export_hf(run_dir: str | Path, out: str | Path) -> Path:
    """Write the ``transformers`` directory ``out`` for the trevo run ``run_dir``; returns ``out``."""
    from trevo.api import load

    out = Path(out)
    model, cfg, task = load(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = getattr(task, "tokenizer", None) if cfg.task.name == "token_lm" else None
    eos = tokenizer.token_to_id(END_OF_TEXT) if tokenizer is not None else None
    to_hf(model, cfg, eos_token_id=eos).save_pretrained(out)
    if tokenizer is not None:
        from transformers import PreTrainedTokenizerFast

        PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=END_OF_TEXT if eos is not None else None
                                ).save_pretrained(out)
    run = Path(run_dir)
    if (run / "tokenizer.json").is_file() and not (out / "tokenizer.json").is_file():
        shutil.copyfile(run / "tokenizer.json", out / "tokenizer.json")
    return out


register()
