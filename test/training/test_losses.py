"""Losses on hand-made cases: a perfect prediction costs ~0, a wrong one costs more."""

from __future__ import annotations

import torch

from casmtr_ros.training import losses as L
from casmtr_ros.training.supervision import NO_MATCH


def _conf_from_idx(idx: torch.Tensor, L1: int, p: float) -> torch.Tensor:
    B, L0 = idx.shape
    conf = torch.full((B, L0, L1), (1 - p) / (L1 - 1))
    for b in range(B):
        for i in range(L0):
            if idx[b, i] >= 0:
                conf[b, i, idx[b, i]] = p
    return conf


def test_coarse_loss_perfect_vs_wrong() -> None:
    gt = torch.tensor([[3, 0, 2, NO_MATCH, 1]])
    perfect = torch.zeros(1, 5, 4)
    for i, j in enumerate(gt[0].tolist()):
        if j >= 0:
            perfect[0, i, j] = 1.0
    wrong = perfect.roll(1, dims=2)
    lp, lw = L.coarse_loss(perfect, gt), L.coarse_loss(wrong, gt)
    assert lp < 1e-5
    assert lw > 1.0
    assert lp < L.coarse_loss(_conf_from_idx(gt, 4, 0.6), gt) < lw


def test_coarse_loss_without_gt_is_negative_only() -> None:
    conf = torch.full((1, 3, 3), 1 / 3)
    none = torch.full((1, 3), NO_MATCH)
    sharp = torch.zeros(1, 3, 3)
    assert torch.isfinite(L.coarse_loss(conf, none))
    assert L.coarse_loss(sharp, none) < 1e-8 < L.coarse_loss(conf, none)


def test_cascade_labels_and_loss() -> None:
    idx = torch.tensor([[[5, 6, 7, 8], [1, 2, 3, 4]]])  # [B=1, L=2, K=4]
    gt = torch.tensor([[7, 9]])
    lab = L.cascade_labels(idx, gt)
    assert lab.tolist() == [[[False, False, True, False], [False, False, False, False]]]
    labels = lab[0, :1]
    good = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    bad = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    b = torch.zeros(1, dtype=torch.long)
    assert L.cascade_loss(good, labels, b, 1) < 1e-5
    assert L.cascade_loss(bad, labels, b, 1) > 1.0


def test_fine_loss_weights_and_threshold() -> None:
    target = torch.tensor([[0.2, -0.1], [0.5, 0.5], [1.5, 0.0]])  # last one is outside the window: ignored
    b = torch.zeros(3, dtype=torch.long)
    exact = torch.cat([target, torch.full((3, 1), 0.3)], 1)
    assert L.fine_loss(exact, target, b, 1) < 1e-10
    off = exact.clone()
    off[:2, :2] += 0.3
    assert torch.isclose(L.fine_loss(off, target, b, 1), torch.tensor(0.18), atol=1e-6)
    far = exact.clone()
    far[2, :2] = -5.0  # error on the ignored row changes nothing
    assert L.fine_loss(far, target, b, 1) < 1e-10
    # a confident (small std) wrong prediction costs more than an uncertain one
    conf_wrong = off.clone()
    conf_wrong[0, 2] = 0.01
    assert L.fine_loss(conf_wrong, target, b, 1) > 0.0


def test_losses_average_over_pairs() -> None:
    """Per-pair averaging: a batch of two copies costs the same as one copy (DDP-consistent)."""
    gt = torch.tensor([[2, 1, NO_MATCH]])
    conf = _conf_from_idx(gt, 3, 0.7)
    one = L.coarse_loss(conf, gt)
    two = L.coarse_loss(torch.cat([conf, conf]), torch.cat([gt, gt]))
    assert torch.isclose(one, two)
