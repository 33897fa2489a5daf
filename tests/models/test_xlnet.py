"""The two-stream model: a query-stream position never sees its own content (nor any token after it in
the order), the content stream with the identity order is causal, and a causal task is refused."""

from __future__ import annotations

import pytest
import torch

from trevo.config import ModelConfig
from trevo.errors import IncompatibleError
from trevo.models.xlnet import XLNet
from trevo.tasks.base import TaskInfo

INFO = TaskInfo(vocab_size=20, head="mlm", seq_len=8, causal="forbidden")


def _model() -> XLNet:
    torch.manual_seed(0)
    return XLNet(ModelConfig(arch="xlnet", d_model=16, n_layers=2, options={"n_heads": 2}), INFO).double().eval()


def test_a_query_position_sees_only_the_tokens_before_it_in_the_order():
    model = _model()
    tokens = torch.randint(0, 20, (1, 8), generator=torch.Generator().manual_seed(1))
    order = torch.tensor([[3, 0, 7, 5, 1, 6, 2, 4]])
    rank = {p: r for r, p in enumerate(order[0].tolist())}
    base = model.two_stream(tokens, order)
    for i in range(8):
        changed = tokens.clone()
        changed[0, i] = (changed[0, i] + 1) % 20
        out = model.two_stream(changed, order)
        for j in range(8):
            if rank[i] >= rank[j]:  # its own content (i == j) or a token at or after j in the order
                torch.testing.assert_close(out[0, j], base[0, j], rtol=0, atol=1e-12)
            else:
                assert not torch.allclose(out[0, j], base[0, j])


def test_the_content_stream_of_the_identity_order_is_causal():
    model = _model()
    tokens = torch.randint(0, 20, (2, 8), generator=torch.Generator().manual_seed(2))
    identity = torch.arange(8).expand(2, 8)
    h, _ = model.streams(tokens, identity)
    for t in range(1, 8):
        h_prefix, _ = model.streams(tokens[:, :t], identity[:, :t])
        torch.testing.assert_close(h[:, :t], h_prefix)  # what follows position t never reaches it
    full, _ = model.streams(tokens, None)
    assert not torch.allclose(full[:, 0], h[:, 0])  # forward is bidirectional


def test_a_causal_task_is_refused():
    with pytest.raises(IncompatibleError, match="bidirectional encoder.*permutation_lm.*mlm"):
        XLNet(ModelConfig(arch="xlnet", d_model=16, n_layers=1), TaskInfo(vocab_size=256, head="lm", seq_len=8,
                                                                         causal="required"))
