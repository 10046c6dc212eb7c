"""Indoor cascade cross-attention relative-position bias (spec §7.4) against a per-pixel transcription."""

from __future__ import annotations

import pytest
import torch

from casmtr_ros.model.cascade_attention import CascadeFeatureTransformer, candidate_windows
from casmtr_ros.model.quadtree import ungroup_children
from casmtr_ros.model.relative_bias import BiasedCascadeTransformer, cascade_relative_bias


def naive_bias(h_tab: torch.Tensor, w_tab: torch.Tensor, centre: torch.Tensor, cand4: torch.Tensor,
               h4: int, w4: int, w8t: int, lb: int = 10) -> torch.Tensor:
    """``cand4 [B, L4, K]`` per-pixel candidates -> ``[B, L4, K, H]``, one pixel and candidate at a time."""
    B, L4, K = cand4.shape
    out = torch.zeros(B, L4, K, h_tab.shape[1])
    for b in range(B):
        for q in range(L4):
            y4, x4 = divmod(q, w4)
            c8 = int(centre[b, (y4 // 2) * (w4 // 2) + x4 // 2])
            tx, ty = 2 * (c8 % w8t), 2 * (c8 // w8t)
            for k in range(K):
                ky, kx = divmod(int(cand4[b, q, k]), 2 * w8t)
                rx = (x4 % 2) - (tx - kx + lb) + 2 * lb
                ry = (y4 % 2) - (ty - ky + lb) + 2 * lb
                assert 2 <= rx <= 20 and 2 <= ry <= 20  # the range stated in the spec
                out[b, q, k] = w_tab[rx] + h_tab[ry]
    return out


@pytest.mark.parametrize(("h8", "w8"), [(5, 5), (6, 9), (7, 5)])
def test_bias_matches_per_pixel_formula(h8: int, w8: int) -> None:
    torch.manual_seed(h8 * 10 + w8)
    m = BiasedCascadeTransformer(32, 4, ["self", "cross"])
    with torch.no_grad():
        m.h_pos_bias.weight.normal_()
        m.w_pos_bias.weight.normal_()
    B, L8 = 2, h8 * w8
    centre = torch.randint(0, L8, (B, L8))
    centre[0, :4] = torch.tensor([0, L8 - 1, w8 - 1, L8 - w8])  # corners: shifted windows
    cand = candidate_windows(centre, m.window, h8, w8)  # [B, L8, 100]
    got = m.cross_bias(centre, cand, h8, w8)  # [B, L8, 4, 100, H]
    assert got.shape == (B, L8, 4, 100, 4)
    per_pixel = CascadeFeatureTransformer.per_pixel(cand, 2 * h8, 2 * w8)
    want = naive_bias(m.h_pos_bias.weight.detach(), m.w_pos_bias.weight.detach(), centre, per_pixel,
                      2 * h8, 2 * w8, w8)
    torch.testing.assert_close(ungroup_children(got, 2 * h8, 2 * w8), want)


def test_bias_table_sizes_and_range_check() -> None:
    m = BiasedCascadeTransformer(32, 4, ["cross"])
    assert m.h_pos_bias.weight.shape == (22, 4) and m.w_pos_bias.weight.shape == (22, 4)
    centre = torch.zeros(1, 25, dtype=torch.long)
    far = torch.full((1, 25, 100), 39 * 40 + 39)  # candidates far from the centre: outside the table
    with pytest.raises(ValueError, match="outside the bias table"):
        cascade_relative_bias(m.h_pos_bias, m.w_pos_bias, centre, far, 20, m.lb)


def test_bias_changes_cross_attention_output() -> None:
    torch.manual_seed(0)
    m = BiasedCascadeTransformer(32, 4, ["cross"]).eval()
    f0, f1 = torch.randn(1, 100, 32), torch.randn(1, 100, 32)
    idx = torch.randint(0, 25, (1, 25))
    with torch.no_grad():
        a = m(f0, f1, 10, 10, idx, idx)[0]
        m.w_pos_bias.weight.normal_(0, 2.0)
        b = m(f0, f1, 10, 10, idx, idx)[0]
    assert not torch.allclose(a, b)
