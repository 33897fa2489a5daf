"""Clustered attention: K-means reaches its fixed point (every query nearest its centroid, every centroid
the mean of its members); one cluster per query is exact attention; the improved form is exact when the
top-k covers every key and otherwise equals its formula built by a loop."""

from __future__ import annotations

import math

import torch

from trevo.ops.clustered_attention import clustered_attention, kmeans


def _qkv(t=12, seed=0):
    torch.manual_seed(seed)
    return (torch.randn(1, 2, t, 4, dtype=torch.float64) for _ in range(3))


def test_kmeans_reaches_a_lloyd_fixed_point():
    q, _, _ = _qkv(30)
    assign, centroids = kmeans(q, 4, n_iter=50)
    for h in range(2):
        nearest = torch.cdist(q[0, h], centroids[0, h]).argmin(-1)
        assert torch.equal(nearest, assign[0, h])
        for c in range(4):
            members = q[0, h][assign[0, h] == c]
            if len(members):
                torch.testing.assert_close(centroids[0, h, c], members.mean(0))


def test_one_cluster_per_query_is_exact_attention():
    q, k, v = _qkv()
    exact = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(clustered_attention(q, k, v, 12, n_iter=2), exact)


def test_clustered_output_is_the_centroid_attention():
    q, k, v = _qkv()
    assign, centroids = kmeans(q, 3, n_iter=5)
    want = torch.zeros_like(q)
    for h in range(2):
        for i in range(12):
            c = centroids[0, h, assign[0, h, i]]
            want[0, h, i] = torch.softmax(k[0, h] @ c / math.sqrt(4), 0) @ v[0, h]
    torch.testing.assert_close(clustered_attention(q, k, v, 3, n_iter=5), want)


def test_improved_with_every_key_is_exact_attention():
    q, k, v = _qkv()
    exact = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(clustered_attention(q, k, v, 3, n_iter=5, topk=12), exact)


def test_improved_equals_its_formula():
    q, k, v = _qkv()
    assign, centroids = kmeans(q, 3, n_iter=5)
    want = torch.zeros_like(q)
    for h in range(2):
        for i in range(12):
            a_c = torch.softmax(k[0, h] @ centroids[0, h, assign[0, h, i]] / math.sqrt(4), 0)
            top = a_c.topk(4).indices
            row = a_c.clone()
            exact = torch.softmax(k[0, h, top] @ q[0, h, i] / math.sqrt(4), 0)
            row[top] = a_c[top].sum() * exact
            want[0, h, i] = row @ v[0, h]
    got = clustered_attention(q, k, v, 3, n_iter=5, topk=4)
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, clustered_attention(q, k, v, 3, n_iter=5))  # the recomputation matters
