"""Matching steps on hand-made inputs: NMS ties and borders, cascade filters, fine windows and soft-argmax."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from casmtr_ros.model.cascade_matching import CascadeMatching, maxpool_nms
from casmtr_ros.model.coarse_matching import CoarseMatching
from casmtr_ros.model.fine import FineMatching, gather_windows

torch.manual_seed(0)


def test_nms_tie_keeps_top_left_most():
    conf = torch.zeros(1, 7, 7)
    conf[0, 3, 3] = conf[0, 3, 4] = conf[0, 4, 2] = 0.9  # three equal maxima within each other's window
    keep = maxpool_nms(conf, 5)[0]
    assert keep[3, 3] and not keep[3, 4] and not keep[4, 2]
    assert torch.equal(keep, maxpool_nms(conf.clone(), 5)[0])


def test_nms_borders_and_suppression_chain():
    conf = torch.tensor([[0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.8],
                         [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
                         [0.1, 0.1, 0.6, 0.1, 0.1, 0.1, 0.1],
                         [0.1, 0.1, 0.1, 0.1, 0.7, 0.1, 0.1]])[None]
    keep = maxpool_nms(conf, 5)[0]
    assert keep[0, 6] and keep[3, 4]  # corner pixel survives; (3,4) max of its clipped window
    assert not keep[0, 0]  # suppressed by 0.6 at (2,2) (distance 2)
    assert not keep[2, 2]  # suppressed by 0.7 at (3,4) even if 0.7 is later rejected by another filter
    assert keep.sum() == 2


@pytest.mark.parametrize("kernel", [3, 5])
def test_nms_equals_max_pool_with_indices(kernel):
    conf = torch.randint(0, 4, (2, 9, 11), generator=torch.Generator().manual_seed(kernel)).float() / 4  # many ties
    _, idx = F.max_pool2d(conf[:, None], kernel, 1, kernel // 2, return_indices=True)
    ref = idx[:, 0] == torch.arange(9 * 11).view(1, 9, 11)
    assert torch.equal(maxpool_nms(conf, kernel), ref)


def naive_filter(conf01, j01, j10, pre8, h4, w4, test_thr, pre_thr, b, nms, official=True):
    keep = torch.zeros_like(conf01, dtype=torch.bool)
    nms_keep = maxpool_nms(conf01.view(1, h4, w4), nms).view(-1) if nms else torch.ones_like(keep[0])
    for i in range(h4 * w4):
        y, x = divmod(i, w4)
        ty, tx = divmod(j01[0, i].item(), w4)
        ok = nms_keep[i] and conf01[0, i] > test_thr and pre8[0, (y // 2) * (w4 // 2) + x // 2] > pre_thr
        ok = ok and b <= y < h4 - b and b <= x < w4 - b
        hi_x, hi_y = (w4 - b, h4 - b) if official else (w4 - b - 1, h4 - b - 1)
        ok = ok and b <= tx <= hi_x and b <= ty <= hi_y
        ok = ok and j10[0, j01[0, i]] == i
        keep[0, i] = bool(ok)
    return keep


@pytest.mark.parametrize("quirks", ["official", "corrected"])
def test_cascade_filters_match_naive(quirks):
    h4, w4 = 32, 40
    L4 = h4 * w4
    m = CascadeMatching(test_thr=0.1, pre_thr=0.1, border_rm=2, nms_kernel=3, quirks=quirks)
    g = torch.Generator().manual_seed(0)
    conf01 = torch.rand(1, L4, generator=g)
    j01 = torch.randint(0, L4, (1, L4), generator=g)
    j10 = torch.randint(0, L4, (1, L4), generator=g)
    consistent = torch.randperm(L4, generator=g)[: 3 * L4 // 4]
    j10[0, j01[0, consistent]] = consistent  # most rows pass the cycle check
    pre8 = torch.rand(1, L4 // 4, generator=g)
    got = m._filter(conf01, j01, j10, pre8, h4, w4, None, None)
    ref = naive_filter(conf01, j01, j10, pre8, h4, w4, 0.1, 0.1, 2, 3, quirks == "official")
    assert got.sum() >= 3 and torch.equal(got, ref)


def test_target_border_asymmetry_and_fallback():
    h4 = w4 = 8
    L4 = 64
    feat = torch.zeros(1, L4, 4)
    idx = torch.arange(L4).view(1, L4, 1).expand(1, L4, 3).contiguous()
    common = {"test_thr": 0.0, "pre_thr": 0.0, "border_rm": 2, "nms_kernel": 0}
    official = CascadeMatching(**common)
    out = official(feat, feat, idx, idx, (h4, w4), torch.ones(1, 16))
    # identity matches: source rows/cols 2..5 kept; the target rule would keep 6 too, but the source rule cuts it
    assert sorted(out["i_ids"].tolist()) == [y * 8 + x for y in range(2, 6) for x in range(2, 6)]
    # target column w4 - b (= 6) is kept by the official rule and rejected by the corrected one; 7 always rejected
    idx01, idx10 = idx.clone(), idx.clone()
    idx01[0, 27], idx10[0, 30] = 30, 27  # (3,3) -> (3,6)
    idx01[0, 35], idx10[0, 39] = 39, 35  # (4,3) -> (4,7)
    out = official(feat, feat, idx01, idx10, (h4, w4), torch.ones(1, 16))
    assert 27 in out["i_ids"].tolist() and 35 not in out["i_ids"].tolist()
    out = CascadeMatching(**common, quirks="corrected")(feat, feat, idx01, idx10, (h4, w4), torch.ones(1, 16))
    assert 27 not in out["i_ids"].tolist() and 35 not in out["i_ids"].tolist() and 26 in out["i_ids"].tolist()
    # nothing survives -> official forces pixel 0; corrected returns no match
    out = official(feat, feat, idx, idx, (h4, w4), torch.zeros(1, 16))
    assert out["i_ids"].tolist() == [0] and out["b_ids"].tolist() == [0]
    out = CascadeMatching(**common, quirks="corrected")(feat, feat, idx, idx, (h4, w4), torch.zeros(1, 16))
    assert out["i_ids"].numel() == 0


def test_cascade_padding_masks():
    h4 = w4 = 8
    L4 = 64
    feat0, feat1 = torch.randn(1, L4, 4), torch.randn(1, L4, 4)
    idx = torch.randint(0, L4, (1, L4, 6))
    mask = torch.ones(1, h4, w4, dtype=torch.bool)
    mask[:, :, 6:] = False  # image 1 is 6 columns wide at 1/4
    m = CascadeMatching(test_thr=0.0, pre_thr=0.0, border_rm=0, nms_kernel=0)
    out = m(feat0, feat1, idx, idx, (h4, w4), torch.ones(1, 16), torch.ones_like(mask), mask)
    valid = mask.flatten(1)
    p = out["conf_matrix"][0]
    cand_valid = valid[0][idx[0]]
    assert torch.all(p[cand_valid.any(-1)][~cand_valid[cand_valid.any(-1)]] < 1e-6)
    assert torch.all(valid[0][out["next_idx_c01"][0][cand_valid.any(-1)]])


def test_coarse_matching_masks_and_argmax():
    f0, f1 = torch.randn(1, 12, 8), torch.randn(1, 12, 8)
    cm = CoarseMatching(temperature=0.1, thr=0.0)
    out = cm(f0, f1, (3, 4), (3, 4))
    sim = f0[0] @ f1[0].T / 8 / 0.1
    assert torch.equal(out["next_idx_c01"][0], sim.softmax(1).argmax(1))
    assert torch.equal(out["next_idx_c10"][0], sim.softmax(0).argmax(0))
    m1 = torch.ones(1, 12, dtype=torch.bool)
    m1[0, 8:] = False
    out = cm(f0, f1, (3, 4), (3, 4), torch.ones_like(m1), m1)
    assert torch.all(out["next_idx_c01"] < 8)


def test_gather_windows_equals_unfold():
    feat = torch.randn(2, 3, 8, 10)  # 1/2 map of a 1/4 grid 4x5
    b = torch.tensor([0, 1, 1, 0])
    i4 = torch.tensor([0, 19, 7, 13])
    got = gather_windows(feat, b, i4, 5, 2, 5)
    unf = F.unfold(feat, 5, padding=2, stride=2).view(2, 3, 25, 20).permute(0, 3, 2, 1)
    assert torch.equal(got, unf[b, i4])


def test_fine_soft_argmax_matches_naive():
    f0, f1 = torch.randn(3, 25, 4), torch.randn(3, 25, 4)
    mk0, mk1 = torch.tensor([[8.0, 4.0]] * 3), torch.tensor([[12.0, 16.0]] * 3)
    out = FineMatching()(f0, f1, mk0, mk1, 2.0)
    for m in range(3):
        p = torch.softmax(f1[m] @ f0[m, 12] / 2.0, 0).view(5, 5)
        g = torch.linspace(-1, 1, 5)
        ex, ey = (p.sum(0) * g).sum(), (p.sum(1) * g).sum()
        vx, vy = (p.sum(0) * g**2).sum() - ex**2, (p.sum(1) * g**2).sum() - ey**2
        torch.testing.assert_close(out["expec_f"][m], torch.stack([ex, ey, vx.sqrt() + vy.sqrt()]), atol=1e-6,
                                   rtol=1e-5)
        torch.testing.assert_close(out["mkpts1_f"][m], mk1[m] + torch.stack([ex, ey]) * 4, atol=1e-5, rtol=1e-5)
