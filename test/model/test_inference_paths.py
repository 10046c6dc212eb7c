"""Inference shortcuts equal the full computation: column arg-max, coarse matching without the LoFTR matches."""

from __future__ import annotations

import pytest
import torch

from casmtr_ros.model import coarse_matching
from casmtr_ros.model.coarse_matching import CoarseMatching, max_over_rows, softmax_maxima


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
    for key in ("next_idx_c01", "next_idx_c10"):
        assert torch.equal(full[key], fast[key]), key
    for key in ("next_conf_c01", "next_conf_c10"):  # 1 / sum exp(s - max) in blocks, not the softmax: rounding only
        torch.testing.assert_close(fast[key], full[key], rtol=2e-6, atol=0)
    assert "conf_matrix" not in fast and "b_ids" not in fast
    assert len(full["b_ids"]) > 0


@pytest.mark.parametrize("block_elems", [1, 200, 10**9])  # one row per block, several rows, everything at once
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softmax_maxima_equal_the_two_softmaxes(block_elems, dtype, monkeypatch) -> None:
    """Blockwise arg-max and maximum of both softmaxes equal the full softmaxes: masked rows and columns (uniform:
    index 0, value 1/L), exact ties (the first index wins, also across blocks), large and small logits."""
    monkeypatch.setattr(coarse_matching, "SOFTMAX_CHUNK_ELEMS", block_elems)
    g = torch.Generator().manual_seed(2)
    f0 = (torch.randn(2, 41, 16, generator=g) * 2).to(dtype)
    f1 = (torch.randn(2, 57, 16, generator=g) * 2).to(dtype)
    f0[0, 10] = f0[0, 12] = f0[0, 30] = 3 * f1[0, 0]  # rows 10, 12, 30 tie, and win column 0: row 10 must win
    f1[1, 5] = f1[1, 20] = f1[1, 40] = 3 * f0[1, 0]  # columns 5, 20, 40 tie, and win row 0: column 5 must win
    m0 = torch.ones(2, 41, dtype=torch.bool)
    m1 = torch.ones(2, 57, dtype=torch.bool)
    m0[0, 3] = False
    m1[1, 7] = False
    m1[1, 50:] = False
    sim = torch.bmm(f0, f1.transpose(1, 2)) / 0.1
    sim.masked_fill_(~(m0[:, :, None] & m1[:, None, :]), -coarse_matching.INF)
    c01, i01 = torch.softmax(sim, 2).max(dim=2)
    c10, i10 = torch.softmax(sim, 1).max(dim=1)
    idx01, conf01, idx10, conf10 = softmax_maxima(f0, f1, 0.1, m0, m1)
    assert torch.equal(idx01, i01) and torch.equal(idx10, i10)
    # fp32: a block's matrix product rounds a logit of ~100 differently from the whole product by an ulp (~1e-5)
    rtol = 2e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(conf01, c01, rtol=rtol, atol=0)
    torch.testing.assert_close(conf10, c10, rtol=rtol, atol=0)
    assert int(idx10[0, 0]) == 10 and int(idx01[1, 0]) == 5  # exact ties: the first index wins
    assert int(idx01[0, 3]) == 0 and conf01[0, 3].item() == pytest.approx(1 / 57)  # masked row: uniform
    assert int(idx10[1, 7]) == 0 and conf10[1, 7].item() == pytest.approx(1 / 41)  # masked column: uniform
