"""Inference shortcuts equal the full computation: column arg-max, coarse matching without the LoFTR matches."""

from __future__ import annotations

import torch

from casmtr_ros.model.coarse_matching import CoarseMatching, max_over_rows


def test_max_over_rows_equals_torch_max_with_ties() -> None:
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(2, 37, 53, generator=g) * 3, 1)
    p[1, :, 4] = 1.0 / 37  # a uniform column (fully masked): first row wins
    p[0, 5, 9] = p[0, 2, 9] = 2.0  # tie between rows 2 and 5
    vals, idx = max_over_rows(p)
    ref_vals, ref_idx = p.max(dim=1)
    assert torch.equal(vals, ref_vals) and torch.equal(idx, ref_idx)
    assert int(idx[0, 9]) == 2 and int(idx[1, 4]) == 0


def test_coarse_matching_without_matches_keeps_the_cascade_inputs() -> None:
    g = torch.Generator().manual_seed(1)
    f0, f1 = torch.randn(1, 48, 32, generator=g), torch.randn(1, 48, 32, generator=g)
    m0 = torch.ones(1, 48, dtype=torch.bool)
    m1 = m0.clone()
    m1[:, 40:] = False
    cm = CoarseMatching(temperature=0.1, thr=0.0)
    full = cm(f0, f1, (6, 8), (6, 8), m0, m1)
    fast = cm(f0, f1, (6, 8), (6, 8), m0, m1, matches=False)
    for key in ("next_idx_c01", "next_conf_c01", "next_idx_c10", "next_conf_c10"):
        assert torch.equal(full[key], fast[key]), key
    assert "conf_matrix" not in fast and "b_ids" not in fast
    assert len(full["b_ids"]) > 0
