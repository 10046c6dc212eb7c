"""CasMTR losses (spec section 14.3): coarse dual-softmax focal, cascade focal over candidate windows, fine L2/std.

Each loss is computed per pair and averaged over the pairs of the batch, so a batch split across processes
(DistributedDataParallel averages gradients) gives the same update as one process holding the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from casmtr_ros.training.supervision import NO_MATCH


@dataclass(frozen=True)
class LossConf:
    """Weights and focal parameters (official values by default)."""

    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    pos_weight: float = 1.0
    neg_weight: float = 1.0
    coarse_weight: float = 1.0
    cascade_weight: float = 1.0
    fine_weight: float = 1.0
    fine_correct_thr: float = 1.0


def focal_terms(p: torch.Tensor, pos: torch.Tensor, alpha: float, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean focal loss over the positives and over the negatives of the probabilities ``p`` (NaN-free).

    Positive term ``-alpha (1-p)^gamma log p``, negative ``-alpha p^gamma log(1-p)``; ``p`` clamped to
    [1e-6, 1-1e-6]. An empty set contributes 0.
    """
    p = p.clamp(1e-6, 1 - 1e-6)
    zero = p.sum() * 0.0
    lp = -alpha * (1 - p[pos]) ** gamma * p[pos].log()
    ln = -alpha * p[~pos] ** gamma * (1 - p[~pos]).log()
    return (lp.mean() if lp.numel() else zero), (ln.mean() if ln.numel() else zero)


def coarse_loss(conf: torch.Tensor, gt_idx: torch.Tensor, c: LossConf = LossConf()) -> torch.Tensor:
    """Dual-softmax focal loss. ``conf [B, L0, L1]`` probabilities, ``gt_idx [B, L0]`` target cell or ``NO_MATCH``.

    Unlike the official code (which maps invalid warps to cell 0 and therefore never uses cell 0 as a positive),
    the GT here marks missing matches explicitly, so every cell can be a positive. Pairs without any positive
    use only the negative term.
    """
    losses = []
    for b in range(conf.shape[0]):
        pos = torch.zeros_like(conf[b], dtype=torch.bool)
        rows = torch.nonzero(gt_idx[b] != NO_MATCH).squeeze(1)
        pos[rows, gt_idx[b, rows]] = True
        lp, ln = focal_terms(conf[b], pos, c.focal_alpha, c.focal_gamma)
        losses.append(c.pos_weight * lp + c.neg_weight * ln)
    return torch.stack(losses).mean()


def cascade_labels(idx_c01: torch.Tensor, gt_idx: torch.Tensor) -> torch.Tensor:
    """One-hot labels ``[..., K]`` of the GT cell among the candidates ``idx_c01 [..., K]`` (all-False if absent)."""
    return (idx_c01 == gt_idx[..., None]) & (gt_idx[..., None] != NO_MATCH)


def cascade_loss(p01: torch.Tensor, labels: torch.Tensor, batch_ids: torch.Tensor, batch_size: int,
                 c: LossConf = LossConf()) -> torch.Tensor:
    """Focal loss of the candidate softmax ``p01 [n, K]`` against one-hot ``labels [n, K]`` of the kept rows.

    ``batch_ids [n]`` gives each row's pair; the loss is the mean over pairs that have rows.
    """
    losses = []
    for b in range(batch_size):
        sel = batch_ids == b
        if not bool(sel.any()):
            continue
        lp, ln = focal_terms(p01[sel], labels[sel], c.focal_alpha, c.focal_gamma)
        losses.append(c.pos_weight * lp + c.neg_weight * ln)
    if not losses:
        return p01.sum() * 0.0
    return torch.stack(losses).sum() / batch_size


def fine_loss(expec_f: torch.Tensor, target: torch.Tensor, batch_ids: torch.Tensor, batch_size: int,
              c: LossConf = LossConf()) -> torch.Tensor:
    """``l2_with_std``: squared offset error weighted by ``(1/std) / mean(1/std)`` (detached), only where
    ``|target|_inf < fine_correct_thr``. ``expec_f [M, 3]`` = (x, y, std), ``target [M, 2]``."""
    correct = target.abs().max(-1).values < c.fine_correct_thr
    losses = []
    for b in range(batch_size):
        sel = correct & (batch_ids == b)
        if not bool(sel.any()):
            continue
        inv_std = 1.0 / expec_f[sel, 2].clamp(min=1e-10)
        w = (inv_std / inv_std.mean()).detach()
        losses.append((((target[sel] - expec_f[sel, :2]) ** 2).sum(-1) * w).mean())
    if not losses:
        return expec_f.sum() * 0.0
    return torch.stack(losses).sum() / batch_size
