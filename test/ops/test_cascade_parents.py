"""The cascade fast paths equal the general ops: ``cascade_score_parents`` (keys gathered once per 2x2 parent) vs
``cascade_score`` on per-pixel candidates, ``window_score_heads`` / ``window_value`` (whole-cell gathers) vs
``score_computation`` / ``value_aggregation``."""

from __future__ import annotations

import pytest
import torch

from casmtr_ros.model.cascade_attention import (
    CascadeFeatureTransformer,
    candidate_windows,
    cell_children,
    window_cells,
    window_offsets,
)
from casmtr_ros.model.quadtree import children_index, group_children
from casmtr_ros.ops import torch_ops


def _case(B: int, h8: int, w8: int, C: int, seed: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    h4, w4 = 2 * h8, 2 * w8
    q = torch.randn(B, h4 * w4, C, generator=g, dtype=dtype)
    k = torch.randn(B, h4 * w4, C, generator=g, dtype=dtype)
    centre = torch.randint(0, h8 * w8, (B, h8 * w8), generator=g)
    parents = candidate_windows(centre, window_offsets(5), h8, w8)
    return q, k, parents, h4, w4


@pytest.mark.parametrize("B,h8,w8,C", [(1, 5, 5, 8), (2, 6, 9, 16), (1, 12, 10, 64)])
def test_equals_per_pixel_scores(B: int, h8: int, w8: int, C: int) -> None:
    q, k, parents, h4, w4 = _case(B, h8, w8, C, seed=h8 * w8)
    per_pixel = CascadeFeatureTransformer.per_pixel(parents, h4, w4)
    ref = torch_ops.cascade_score(q, k, per_pixel)
    out = torch_ops.cascade_score_parents(q, k, parents, h4, w4)
    assert out.shape == ref.shape == (B, h4 * w4, 100)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    by_cells = torch_ops.cascade_score_parents(q, k, parents, h4, w4, window_cells(parents, w8))
    assert torch.equal(by_cells, out)  # whole-cell rows gather the same keys in the same order
    # naive reference: explicit dot products
    b, i, kk = 0, 7, 42
    assert float(out[b, i, kk]) == pytest.approx(float(q[b, i] @ k[b, per_pixel[b, i, kk]]), rel=1e-5, abs=1e-5)


def test_fp64_and_gradients() -> None:
    q, k, parents, h4, w4 = _case(1, 5, 6, 4, seed=3, dtype=torch.float64)
    q.requires_grad_(True)
    k.requires_grad_(True)
    per_pixel = CascadeFeatureTransformer.per_pixel(parents, h4, w4)
    out = torch_ops.cascade_score_parents(q, k, parents, h4, w4)
    assert out.dtype == torch.float64
    w = torch.randn_like(out)
    gq, gk = torch.autograd.grad((out * w).sum(), (q, k))
    rq, rk = torch.autograd.grad((torch_ops.cascade_score(q, k, per_pixel) * w).sum(), (q, k))
    torch.testing.assert_close(gq, rq)
    torch.testing.assert_close(gk, rk)


def test_bad_inputs() -> None:
    q, k, parents, h4, w4 = _case(1, 5, 5, 4, seed=1)
    with pytest.raises(ValueError, match="do not fit"):
        torch_ops.cascade_score_parents(q, k, parents, h4 + 2, w4)
    with pytest.raises(IndexError, match="out of range"):
        torch_ops.cascade_score_parents(q, k, parents + k.shape[1], h4, w4)


@pytest.mark.parametrize("B,h8,w8,H,D", [(1, 5, 5, 2, 8), (2, 7, 6, 4, 16)])
def test_window_score_equals_score_computation(B: int, h8: int, w8: int, H: int, D: int) -> None:
    g = torch.Generator().manual_seed(B * h8 + w8)
    h4, w4 = 2 * h8, 2 * w8
    q = torch.randn(B, h8 * w8, 4, H, D, generator=g)
    k = torch.randn(B, h4 * w4, H, D, generator=g)
    cand = candidate_windows(torch.randint(0, h8 * w8, (B, h8 * w8), generator=g), window_offsets(5), h8, w8)
    cells = window_cells(cand, w8)
    kids = torch.stack([(2 * (cells // w8) + a) * w4 + 2 * (cells % w8) + b for a in (0, 1) for b in (0, 1)], -1)
    assert torch.equal(kids.flatten(-2), cand)  # the cells' children, cell-major, are the candidates
    assert torch.equal(cell_children(cells, w8), cand)
    index = cand[..., None].expand(-1, -1, -1, H).contiguous()
    ref = torch_ops.score_computation(q, k, index)
    out = torch_ops.window_score_heads(q, group_children(k, h4, w4), cells).permute(0, 1, 3, 4, 2)
    assert out.shape == ref.shape == (B, h8 * w8, 4, 100, H)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("B,h8,w8,H,D", [(1, 5, 5, 2, 8), (2, 7, 6, 4, 16)])
def test_window_value_equals_value_aggregation(B: int, h8: int, w8: int, H: int, D: int) -> None:
    """Cell-gathered attention (heads-major scores, then values) equals the per-pixel ops, gradients included."""
    g = torch.Generator().manual_seed(10 * B + h8)
    h4, w4 = 2 * h8, 2 * w8
    q = torch.randn(B, h8 * w8, 4, H, D, generator=g)
    k = torch.randn(B, h4 * w4, H, D, generator=g)
    v = torch.randn(B, h4 * w4, H, D, generator=g, requires_grad=True)
    cand = candidate_windows(torch.randint(0, h8 * w8, (B, h8 * w8), generator=g), window_offsets(5), h8, w8)
    cells = window_cells(cand, w8)
    index = cand[..., None].expand(-1, -1, -1, H).contiguous()
    qk = (q.clone().requires_grad_(), k.clone().requires_grad_())
    heads = torch_ops.window_score_heads(qk[0], group_children(qk[1], h4, w4), cells)
    assert heads.shape == (B, h8 * w8, H, 4, 100) and heads.is_contiguous()
    ref_scores = torch_ops.score_computation(qk[0], qk[1], index)
    torch.testing.assert_close(heads.permute(0, 1, 3, 4, 2), ref_scores)
    ws = torch.randn(ref_scores.shape, generator=g)
    got = torch.autograd.grad((heads.permute(0, 1, 3, 4, 2) * ws).sum(), qk)
    want = torch.autograd.grad((ref_scores * ws).sum(), qk)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    A = torch.softmax(heads.detach(), -1).requires_grad_()
    out = torch_ops.window_value(A, group_children(v, h4, w4), cells)
    ref = torch_ops.value_aggregation(A.permute(0, 1, 3, 4, 2).contiguous(), v,
                                      index[:, :, None].expand(-1, -1, 4, -1, -1).contiguous())
    assert out.shape == ref.shape == (B, h8 * w8, 4, H, D)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    w = torch.randn(out.shape, generator=g)
    ga, gv = torch.autograd.grad((out * w).sum(), (A, v))
    ra, rv = torch.autograd.grad((ref * w).sum(), (A, v))
    torch.testing.assert_close(ga, ra, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gv, rv, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        torch_ops.window_value(A[..., :96], group_children(v, h4, w4), cells)
    with pytest.raises(IndexError, match="out of range"):
        torch_ops.window_value(A, group_children(v, h4, w4), cells + h8 * w8)


def test_window_ops_with_cells_per_head_equal_the_quadtree_ops() -> None:
    """QuadTree levels: each head attends to the 2x2 children of its own top-k parents; gathering those cells per
    head gives the scores and messages of ``score_computation`` / ``value_aggregation`` on the children index."""
    g = torch.Generator().manual_seed(7)
    B, h, w, H, D, K = 2, 8, 10, 4, 8, 3
    Lp = (h // 2) * (w // 2)
    qf, kf, vf = (torch.randn(B, h * w, H, D, generator=g) for _ in range(3))
    top = torch.stack([torch.randperm(Lp, generator=g)[:K] for _ in range(B * Lp * H)]).view(B, Lp, H, K)
    top = top.transpose(2, 3).contiguous()  # [B, Lp, K, H]: distinct parents per query block and head
    cand = children_index(top, w // 2)  # [B, Lp, 4K, H]
    qg = group_children(qf, h, w)
    ref = torch_ops.score_computation(qg, kf, cand)  # [B, Lp, 4, 4K, H]
    heads = torch_ops.window_score_heads(qg, group_children(kf, h, w), top)  # [B, Lp, H, 4, 4K]
    torch.testing.assert_close(heads.permute(0, 1, 3, 4, 2), ref)
    A = torch.softmax(heads, -1)
    want = torch_ops.value_aggregation(A.permute(0, 1, 3, 4, 2).contiguous(), vf,
                                       cand[:, :, None].expand(-1, -1, 4, -1, -1).contiguous())
    torch.testing.assert_close(torch_ops.window_value(A, group_children(vf, h, w), top), want, rtol=1e-5, atol=1e-5)
