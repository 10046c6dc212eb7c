"""The faster gathered ops equal the reference PyTorch ops (values and gradients)."""

from __future__ import annotations

import torch

from casmtr_ros.training import fast_ops

REF = fast_ops.REFERENCE


def _grads(fn, *tensors):
    ts = [t.clone().requires_grad_(t.is_floating_point()) for t in tensors]
    out = fn(*ts)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach(), [t.grad for t in ts if t.is_floating_point()]


def test_score_computation_matches_reference() -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 6, 4, 3, 8, generator=g), torch.randn(2, 30, 3, 8, generator=g)
    idx = torch.randint(0, 30, (2, 6, 5, 3), generator=g)
    a, ga = _grads(REF["score_computation"], q, k, idx)
    b, gb = _grads(fast_ops.score_computation, q, k, idx)
    assert torch.allclose(a, b, atol=1e-5)
    for x, y in zip(ga, gb, strict=True):
        assert torch.allclose(x, y, atol=1e-5)


def test_value_aggregation_matches_reference_shared_and_general() -> None:
    g = torch.Generator().manual_seed(1)
    s, v = torch.rand(2, 6, 4, 5, 3, generator=g), torch.randn(2, 30, 3, 8, generator=g)
    general = torch.randint(0, 30, (2, 6, 4, 5, 3), generator=g)
    shared = torch.randint(0, 30, (2, 6, 1, 5, 3), generator=g).expand(-1, -1, 4, -1, -1).contiguous()
    for idx in (general, shared):
        a, ga = _grads(REF["value_aggregation"], s, v, idx)
        b, gb = _grads(fast_ops.value_aggregation, s, v, idx)
        assert torch.allclose(a, b, atol=1e-5)
        for x, y in zip(ga, gb, strict=True):
            assert torch.allclose(x, y, atol=1e-5)


def test_cascade_score_matches_reference() -> None:
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(2, 40, 16, generator=g), torch.randn(2, 40, 16, generator=g)
    idx = torch.randint(0, 40, (2, 40, 100), generator=g)
    a, ga = _grads(REF["cascade_score"], q, k, idx)
    b, gb = _grads(fast_ops.cascade_score, q, k, idx)
    assert torch.allclose(a, b, atol=1e-5)
    for x, y in zip(ga, gb, strict=True):
        assert torch.allclose(x, y, atol=1e-5)
