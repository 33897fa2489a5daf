"""MAD's synthetic tasks (Poli et al. 2024, "Mechanistic Design and Scaling of Hybrid Architectures",
arXiv 2403.17844): cheap token-manipulation tasks whose scores track compute-optimal perplexity.

Definitions followed (the generators of the mad-lab code, ``mad/data/instances.py``), for vocabulary V
and length T. Keys come from the lower half of the non-special vocabulary, values from the upper half,
noise tokens from the ids above both. As in MAD, a model trains on next-token prediction over the whole
sequence, and is scored (accuracy) only where a value is recalled:

- ``mad_recall`` (in-context recall): T/2 - 1 key-value pairs, each key drawn uniformly and bound to one
  value for the whole sequence, then a copy token (V-1), a key seen before and its value; scored on that
  last value (``multi_query``: no copy token, and every value of a repeated key is scored too).
- ``mad_noisy_recall``: the same, each pair replaced with probability ``frac_noise`` by two noise tokens
  (from ``noise_vocab_size`` ids of their own); noise is never a key and never queried.
- ``mad_fuzzy_recall``: keys and values are runs of 1 … ``k_motif_size`` / ``v_motif_size`` tokens (at
  evaluation every key has the full ``k_motif_size``); the probe pair is placed at a random point, the
  sequence left-padded with a pad token (V-2) and closed by the copy token, the probe key and its value,
  whose tokens are scored (``multi_query``, as mad-lab's benchmark runs it: no copy token, V-1 pads, and
  the value of every key already shown is scored too).
- ``mad_memorization``: a key-value map fixed for the whole task (drawn from ``kv_map_seed``), never shown
  in context: T/2 pairs ``key, insert-token`` (V-1), the value scored at each insert token — the
  task is remembering the map in the weights.

- ``mad_compression``: T-1 tokens drawn uniformly from the V-1 ids below the compression token (V-1),
  which closes the sequence; the targets are the inputs, every position scored (the compression token
  too, as in mad-lab). mad-lab trains it with its ``AutoEncoder`` backbone: the layers under test encode,
  the last position's output is the code, and a fixed non-expanding MLP decoder (the code plus a
  sinusoidal position, norm-linear-GELU twice, norm and unembedding) predicts every token from it; here
  the task's ``reconstruct`` head is that decoder (trevo.models.tokens.ReconstructionHead). mad-lab's
  noise option for it is not built (its benchmark runs none).

Selective copying is trevo's ``selective_copy`` (Mamba's definition; mad-lab's generator differs in its
token layout: blank V-2 and copy V-1, tokens inserted among blanks, the copied tokens asked for after one
copy token).
Small departures: the pair kept clear of noise is drawn among the T/2 - 1 context pairs (mad-lab draws
it among T/2, which can leave a sequence of pure noise and no key to query).

MAD's difficulty settings vary V ∈ {16, 32, 64} (recall; 256 … 1024 for memorization), T ∈ {128 … 1024},
``frac_noise`` ∈ {0.2 … 0.8}; the defaults here are the mad-lab function defaults. MAD's protocol
(mad-lab ``mad/configs.py``) trains on a fixed set of 12,800 examples for 200 epochs in batches of 128
and tests on 1,280 (``train_size=12800, test_size=1280``; mad-lab removes no duplicates). Where the
defaults differ: fresh examples every step (``train_size=None``) and evaluation sets of batch_size ×
eval_batches examples; the ``mad`` arena preset keeps them (400 steps of 32, one difficulty per task),
so no preset reproduces MAD's protocol exactly.
"""

from __future__ import annotations

import numpy as np
import torch

from trevo.registry import Paper, register
from trevo.tasks.base import Batch, TaskInfo
from trevo.tasks.synthetic import GeneratedTask, numpy_seed, require

MAD = Paper("Mechanistic Design and Scaling of Hybrid Architectures", "2403.17844", 2024)


def _batch(rows: list[tuple[list[int], list[int], list[bool]]]) -> Batch:
    """inputs, next-token targets and the scored positions of each example, stacked."""
    return {"input": torch.tensor([r[0] for r in rows]), "target": torch.tensor([r[1] for r in rows]),
            "loss_mask": torch.tensor([r[2] for r in rows])}


class _MADTask(GeneratedTask):
    """Shared: an LM head, accuracy on the scored positions; training on every next token (MAD's
    ``is_training`` instances are the shifted inputs), evaluation on the scored ones only."""

    train_on_all = True

    def _info(self) -> TaskInfo:
        return TaskInfo(vocab_size=self.vocab_size, head="lm", seq_len=self.seq_len, causal="required",
                        layout=(self.seq_len,), metric="accuracy", higher_is_better=True)

    def example(self, rng: np.random.Generator, training: bool) -> tuple[list[int], list[int], list[bool]]:
        raise NotImplementedError

    def make(self, gen: torch.Generator, n: int, training: bool = False) -> Batch:
        rng = np.random.default_rng(numpy_seed(gen))
        return _batch([self.example(rng, training) for _ in range(n)])

    def make_train(self, gen: torch.Generator, n: int) -> Batch:
        return self.make(gen, n, training=True)

    def train_view(self, batch: Batch) -> Batch:
        if self.train_on_all:
            batch = {**batch, "loss_mask": torch.ones_like(batch["loss_mask"])}
        return batch


def _shifted(sequence: list[int], scored_values: list[bool]) -> tuple[list[int], list[int], list[bool]]:
    """Inputs ``seq[:-1]``, targets ``seq[1:]``, scored where the target is a queried value."""
    return sequence[:-1], sequence[1:], scored_values[1:]


@register("task", "mad_recall", paper=MAD, category="Benchmark", family="recall")
class InContextRecall(_MADTask):
    """MAD in-context recall: key-value pairs bound within a sequence, then one key queried (V-1 is
    the copy token)."""

    def __init__(self, vocab_size: int = 16, seq_len: int = 128, multi_query: bool = False,
                 noise_vocab_size: int = 0, frac_noise: float = 0.0,
                 train_size: int | None = None, test_size: int | None = None,
                 cache_dir: str | None = None) -> None:
        special = 0 if multi_query else 1
        usable = vocab_size - special - noise_vocab_size
        require(seq_len % 2 == 0 and seq_len >= 4, f"in-context recall: seq_len must be even and ≥ 4, got {seq_len}")
        require(usable >= 2, f"vocab_size={vocab_size} leaves {usable} ids for keys and values after the copy "
                             f"token and {noise_vocab_size} noise ids; need ≥ 2")
        require(0 <= frac_noise < 1, f"frac_noise must be in [0, 1), got {frac_noise}")
        require(frac_noise == 0 or noise_vocab_size > 0, "frac_noise > 0 needs noise_vocab_size > 0")
        self.vocab_size, self.seq_len, self.multi_query = vocab_size, seq_len, multi_query
        self.noise_vocab_size, self.frac_noise = noise_vocab_size, frac_noise
        self.keys, self.values = np.arange(usable // 2), np.arange(usable // 2, usable)
        self.noise = np.arange(usable, usable + noise_vocab_size)
        self.params = {"vocab_size": vocab_size, "seq_len": seq_len, "multi_query": multi_query,
                       "noise_vocab_size": noise_vocab_size, "frac_noise": frac_noise}
        self.fixed_sets("InContextRecall", train_size, test_size, cache_dir)
        self.info = self._info()

    def example(self, rng, training):
        pairs = self.seq_len // 2 - 1
        keep = rng.integers(pairs)  # one pair is never noise: there is always a key to query
        seq, scored, bound = [], [], {}
        for i in range(pairs):
            if i != keep and self.frac_noise > 0 and rng.random() < self.frac_noise:
                seq += [int(t) for t in rng.choice(self.noise, 2)]
                scored += [False, False]
                continue
            k = int(rng.choice(self.keys))
            repeated = k in bound
            v = bound.setdefault(k, int(rng.choice(self.values)))
            seq += [k, v]
            scored += [False, self.multi_query and repeated]
        probe = int(rng.choice(sorted(bound)))
        tail = [probe, bound[probe]] if self.multi_query else [self.vocab_size - 1, probe, bound[probe]]
        seq += tail
        scored += [False] * (len(tail) - 1) + [True]
        return _shifted(seq, scored)


@register("task", "mad_noisy_recall", paper=MAD, category="Benchmark", family="recall")
class NoisyInContextRecall(InContextRecall):
    """MAD noisy in-context recall: in-context recall with pairs replaced by noise tokens of their own."""

    def __init__(self, vocab_size: int = 32, seq_len: int = 128, multi_query: bool = False,
                 noise_vocab_size: int = 16, frac_noise: float = 0.2,
                 train_size: int | None = None, test_size: int | None = None,
                 cache_dir: str | None = None) -> None:
        super().__init__(vocab_size, seq_len, multi_query, noise_vocab_size, frac_noise, train_size, test_size,
                         cache_dir)


@register("task", "mad_fuzzy_recall", paper=MAD, category="Benchmark", family="recall")
class FuzzyInContextRecall(_MADTask):
    """MAD fuzzy in-context recall: keys and values span several tokens (runs of 1 … motif size)."""

    def __init__(self, vocab_size: int = 16, seq_len: int = 128, k_motif_size: int = 3,
                 v_motif_size: int = 3, multi_query: bool = False, train_size: int | None = None,
                 test_size: int | None = None, cache_dir: str | None = None) -> None:
        usable = vocab_size - (1 if multi_query else 2)  # the pad (V-2) and copy (V-1) tokens; multi-query: pad V-1
        require(k_motif_size >= 1 and v_motif_size >= 1, "k_motif_size and v_motif_size must be ≥ 1")
        require(usable // 2 >= max(k_motif_size, v_motif_size),
                f"vocab_size={vocab_size}: keys and values of {max(k_motif_size, v_motif_size)} distinct tokens "
                f"need vocab_size ≥ {2 * max(k_motif_size, v_motif_size) + 2}")
        require(seq_len >= 3 * (k_motif_size + v_motif_size) + 2,
                f"seq_len={seq_len} is too short for motifs of {k_motif_size} + {v_motif_size} tokens")
        self.vocab_size, self.seq_len, self.multi_query = vocab_size, seq_len, multi_query
        self.k_motif_size, self.v_motif_size = k_motif_size, v_motif_size
        self.keys, self.values = np.arange(usable // 2), np.arange(usable // 2, usable)
        self.params = {"vocab_size": vocab_size, "seq_len": seq_len, "k_motif_size": k_motif_size,
                       "v_motif_size": v_motif_size, "multi_query": multi_query}
        self.fixed_sets("FuzzyInContextRecall", train_size, test_size, cache_dir)
        self.info = self._info()

    def _motif(self, rng, vocab, size: int) -> tuple[int, ...]:
        return tuple(int(t) for t in rng.choice(vocab, size, replace=False))  # a permutation of `size` tokens

    def example(self, rng, training):
        k_sizes = range(1, self.k_motif_size + 1) if training else [self.k_motif_size]
        v_sizes = range(1, self.v_motif_size + 1)
        probe_k = self._motif(rng, self.keys, int(rng.choice(k_sizes)))
        probe_v = self._motif(rng, self.values, int(rng.choice(v_sizes)))
        probe_len = len(probe_k) + len(probe_v)
        budget = self.seq_len - probe_len - (self.k_motif_size + self.v_motif_size)
        at = int(rng.integers(self.seq_len - 2 * probe_len))
        seq, scored, bound, shown, placed = [], [], {probe_k: probe_v}, set(), False
        while len(seq) < budget:
            if len(seq) >= at and not placed:
                k, v, placed = probe_k, probe_v, True
            else:
                k = self._motif(rng, self.keys, int(rng.choice(k_sizes)))
                v = bound.setdefault(k, self._motif(rng, self.values, int(rng.choice(v_sizes))))
                placed = placed or k == probe_k
            # multi-query (mad-lab): the value of every key shown before is scored too
            scored += [False] * len(k) + [self.multi_query and k in shown] * len(v)
            shown.add(k)
            seq += [*k, *v]
        if not placed:  # the context ended before the probe's place: the probe is its last pair
            scored += [False] * (len(probe_k) + len(probe_v))
            seq += [*probe_k, *probe_v]
        tail = [*probe_k, *probe_v] if self.multi_query else [self.vocab_size - 1, *probe_k, *probe_v]
        scored += [False] * (len(tail) - len(probe_v)) + [True] * len(probe_v)
        seq += tail
        pad = self.seq_len + 1 - len(seq)
        pad_token = self.vocab_size - 1 if self.multi_query else self.vocab_size - 2
        seq, scored = [pad_token] * pad + seq, [False] * pad + scored
        return _shifted(seq[-(self.seq_len + 1):], scored[-(self.seq_len + 1):])


@register("task", "mad_memorization", paper=MAD, category="Benchmark", family="memorization")
class Memorization(_MADTask):
    """MAD memorization: a fixed key → value map, learned in the weights; each key is followed by an
    insert token (V-1) at which its value is scored."""

    train_on_all = False  # as mad-lab: only the values at the insert tokens are targets

    def __init__(self, vocab_size: int = 256, seq_len: int = 32, kv_map_seed: int = 12345,
                 train_size: int | None = None, test_size: int | None = None,
                 cache_dir: str | None = None) -> None:
        require(vocab_size >= 3, f"vocab_size must be ≥ 3 (a key, a value, the insert token), got {vocab_size}")
        require(seq_len % 2 == 0 and seq_len >= 2, f"seq_len must be even and ≥ 2, got {seq_len}")
        self.vocab_size, self.seq_len, self.kv_map_seed = vocab_size, seq_len, kv_map_seed
        usable = vocab_size - 1
        rng = np.random.default_rng(kv_map_seed)  # the same map in every process, for every split
        keys, values = rng.permutation(usable // 2), rng.permutation(np.arange(usable // 2, usable))
        self.kv_map = {int(k): int(v) for k, v in zip(keys, values, strict=False)}
        self.params = {"vocab_size": vocab_size, "seq_len": seq_len, "kv_map_seed": kv_map_seed}
        self.fixed_sets("Memorization", train_size, test_size, cache_dir)
        self.info = self._info()

    def example(self, rng, training):
        keys = list(self.kv_map)
        inputs, targets, scored = [], [], []
        for _ in range(self.seq_len // 2):
            k = keys[int(rng.integers(len(keys)))]
            inputs += [k, self.vocab_size - 1]
            targets += [0, self.kv_map[k]]
            scored += [False, True]
        return inputs, targets, scored


@register("task", "mad_compression", paper=MAD, category="Benchmark", family="compression")
class Compression(_MADTask):
    """MAD compression: T-1 tokens drawn uniformly from V-1 ids, then the compression token (V-1); the
    model encodes the sequence and a fixed decoder reconstructs every token from the last position's
    representation alone (``head="reconstruct"``: trevo.models.tokens.ReconstructionHead)."""

    def __init__(self, vocab_size: int = 16, seq_len: int = 32, train_size: int | None = None,
                 test_size: int | None = None, cache_dir: str | None = None) -> None:
        require(vocab_size >= 2, f"vocab_size must be ≥ 2 (a token and the compression token), got {vocab_size}")
        require(seq_len >= 2, f"seq_len must be ≥ 2 (a token and the compression token), got {seq_len}")
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.params = {"vocab_size": vocab_size, "seq_len": seq_len}
        self.fixed_sets("Compression", train_size, test_size, cache_dir)
        self.info = TaskInfo(vocab_size=vocab_size, head="reconstruct", seq_len=seq_len, causal="required",
                             layout=(seq_len,), metric="accuracy", higher_is_better=True)

    def example(self, rng, training):
        tokens = [int(t) for t in rng.integers(0, self.vocab_size - 1, self.seq_len - 1)] + [self.vocab_size - 1]
        return tokens, tokens, [True] * self.seq_len  # the target is the input itself, every position scored
