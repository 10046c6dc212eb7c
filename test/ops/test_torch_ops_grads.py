"""Gradients of the PyTorch ops (the training path, formerly ``training/fast_ops``) equal those of plain
``torch.gather`` references, for per-child and shared (every CasMTR caller) value indices."""

from __future__ import annotations

import torch

from casmtr_ros.ops import torch_ops


def gather_score(q, k, idx):  # q [B,N1,4,H,D], k [B,N2,H,D], idx [B,N1,K,H]
    N1 = idx.shape[1]
    D = k.shape[-1]
    g = torch.gather(k[:, None].expand(-1, N1, -1, -1, -1), 2, idx[..., None].expand(-1, -1, -1, -1, D))
    return torch.einsum("bnfhd,bnkhd->bnfkh", q, g)


def gather_value(s, v, idx):  # s [B,N,4,K,H], v [B,M,H,D], idx [B,N,4,K,H]
    N, F = idx.shape[1], idx.shape[2]
    D = v.shape[-1]
    src = v[:, None, None].expand(-1, N, F, -1, -1, -1)
    g = torch.gather(src, 3, idx[..., None].expand(-1, -1, -1, -1, -1, D))
    return torch.einsum("bnfkh,bnfkhd->bnfhd", s, g)


def gather_cascade(q, k, idx):  # q [B,N1,C], k [B,N2,C], idx [B,N1,K]
    C = q.shape[-1]
    g = torch.gather(k[:, None].expand(-1, idx.shape[1], -1, -1), 2, idx[..., None].expand(-1, -1, -1, C))
    return torch.einsum("bnc,bnkc->bnk", q, g)


def _grads(fn, *tensors):
    ts = [t.clone().requires_grad_(t.is_floating_point()) for t in tensors]
    out = fn(*ts)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach(), [t.grad for t in ts if t.is_floating_point()]


def _same(fn, ref, *tensors) -> None:
    a, ga = _grads(ref, *tensors)
    b, gb = _grads(fn, *tensors)
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    for x, y in zip(gb, ga, strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


def test_score_computation_grads() -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 6, 4, 3, 8, generator=g), torch.randn(2, 30, 3, 8, generator=g)
    _same(torch_ops.score_computation, gather_score, q, k, torch.randint(0, 30, (2, 6, 5, 3), generator=g))


def test_value_aggregation_grads_shared_and_general() -> None:
    g = torch.Generator().manual_seed(1)
    s, v = torch.rand(2, 6, 4, 5, 3, generator=g), torch.randn(2, 30, 3, 8, generator=g)
    general = torch.randint(0, 30, (2, 6, 4, 5, 3), generator=g)
    shared = torch.randint(0, 30, (2, 6, 1, 5, 3), generator=g).expand(-1, -1, 4, -1, -1).contiguous()
    for idx in (general, shared):
        _same(torch_ops.value_aggregation, gather_value, s, v, idx)
    with torch.no_grad():  # inference path (embedding_bag) equals the grad path
        torch.testing.assert_close(torch_ops.value_aggregation(s, v, shared), gather_value(s, v, shared))


def test_cascade_score_grads() -> None:
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(2, 40, 16, generator=g), torch.randn(2, 40, 16, generator=g)
    _same(torch_ops.cascade_score, gather_cascade, q, k, torch.randint(0, 40, (2, 40, 100), generator=g))
