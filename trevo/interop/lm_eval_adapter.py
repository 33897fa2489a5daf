"""lm-evaluation-harness adapter: a trevo causal LM as an ``lm_eval.api.model.LM``.

    from trevo.interop.lm_eval_adapter import TrevoLM
    lm_eval.simple_evaluate(model=TrevoLM("runs/mine"), tasks=["my_task"],
                            task_manager=lm_eval.tasks.TaskManager(include_path="my_tasks/"))

or ``lm_eval --model trevo --model_args run=runs/mine …`` after ``import trevo.interop.lm_eval_adapter``
(it registers the name ``trevo``). Text is encoded as the run was trained: bytes for byte_lm, the
run's tokenizer for token_lm. ``loglikelihood`` scores the continuation's tokens after the context
(the last ``seq_len`` tokens of context + continuation, so long contexts are truncated on the left);
``loglikelihood_rolling`` scores a whole text in consecutive windows; ``generate_until`` decodes
greedily through the recurrent state and stops at the first of the ``until`` strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from trevo.errors import IncompatibleError


@register_model("trevo")
class TrevoLM(LM):
    """A trevo run directory (trained or imported) evaluated by lm-evaluation-harness."""

    def __init__(self, run: str | Path, batch_size: int = 8, max_gen_toks: int = 64, **kwargs: Any) -> None:
        super().__init__()
        from trevo.api import load

        self.model, self.cfg, self.task = load(run)
        if self.model.info.head != "lm":
            raise IncompatibleError(f"lm-evaluation-harness needs a causal language model; {run} has a "
                                    f"{self.model.info.head!r} head")
        self.tokenizer = getattr(self.model, "tokenizer", None)
        self.seq_len, self.batch_size, self.max_gen_toks = self.model.info.seq_len, int(batch_size), int(max_gen_toks)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8")) if self.tokenizer is None else self.tokenizer.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace") if self.tokenizer is None else self.tokenizer.decode(ids)

    @torch.no_grad()
    def _score(self, context: list[int], continuation: list[int]) -> tuple[float, bool]:
        """Sum of log p(continuation | context) and whether greedy decoding gives the continuation."""
        ids = (context + continuation)[-(self.seq_len + 1):]
        n = min(len(continuation), len(ids) - 1)
        inputs = torch.tensor([ids[:-1]])
        logp = torch.log_softmax(self.model(inputs)[0, -n:].float(), dim=-1)
        target = torch.tensor(ids[-n:])
        return float(logp.gather(1, target[:, None]).sum()), bool((logp.argmax(-1) == target).all())

    def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
        """Context and continuation are encoded apart (lm-eval's convention), so the continuation's
        tokens are exactly the ones scored; an empty context starts from token 0."""
        out = []
        for request in requests:
            context, continuation = request.args
            out.append(self._score(self.encode(context) or [0], self.encode(continuation)))
        return out

    @torch.no_grad()
    def loglikelihood_rolling(self, requests: list[Any]) -> list[float]:
        import numpy as np

        from trevo.interop.evaluate import score_lm

        out = []
        for request in requests:
            ids = np.asarray(self.encode(request.args[0]), dtype=np.int64)
            out.append(-score_lm(self.model, ids, self.seq_len, self.batch_size)["nll"] if len(ids) > 1 else 0.0)
        return out

    @torch.no_grad()
    def generate_until(self, requests: list[Any]) -> list[str]:
        from trevo.generate import generate_ids

        out = []
        for request in requests:
            context, kwargs = request.args
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            n = int(kwargs.get("max_gen_toks", self.max_gen_toks))
            ids = self.encode(context)[-self.seq_len:] or [0]
            new, _ = generate_ids(self.model, torch.tensor([ids]), n)
            text = self.decode(new[0].tolist())
            cuts = [text.index(u) for u in until if u and u in text]
            out.append(text[:min(cuts)] if cuts else text)
        return out
