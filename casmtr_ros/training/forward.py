"""The training-time forward pass of a CasMTR model (spec section 14.2) with its losses and metrics.

Inference (``CasMTR.forward``) keeps one match per surviving 1/4 pixel after NMS and thresholds; training
instead needs the ground truth inside the pass: the 1/4 rows that feed the cascade loss and the fine stage
are the candidate rows whose confidence exceeds ``cascade_conf_thr``, that pass the border rule and the cycle
check, and whose candidate window contains exactly one ground-truth cell (at most ``cascade_max_rows`` per
pair, drawn at random). This module runs the model's submodules in that order:

backbone -> PE -> 1/8 QuadTree transformer -> dual-softmax (coarse focal loss) -> UpBlock -> PE -> 1/4 cascade
transformer -> candidate softmax (cascade focal loss) -> fine windows of the predicted matches -> fine
transformer -> soft-argmax (fine L2/std loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from casmtr_ros.model.quadtree import group_children, ungroup_children
from casmtr_ros.training import losses as L
from casmtr_ros.training.supervision import NO_MATCH, fine_target, gt_from_warps


@dataclass(frozen=True)
class ForwardConf:
    """Training-time selection of 1/4 rows and fine matches (official outdoor values by default)."""

    cascade_conf_thr: float = 0.0101
    cascade_border: int = 2
    cascade_max_rows: int = 4096
    fine_max_matches: int = 1024
    grad_checkpoint: bool = False


def _ckpt(fn, *args, enabled: bool):
    if enabled and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def _subsample(mask: torch.Tensor, limit: int, gen: torch.Generator) -> torch.Tensor:
    """Keep at most ``limit`` True entries per row of ``mask [B, L]`` (random, reproducible via ``gen``)."""
    out = torch.zeros_like(mask)
    for b in range(mask.shape[0]):
        idx = torch.nonzero(mask[b]).squeeze(1)
        if idx.numel() > limit:
            perm = torch.randperm(idx.numel(), generator=gen)[:limit].to(idx.device)
            idx = idx[perm]
        out[b, idx] = True
    return out


def _candidate_softmax(f0: torch.Tensor, f1: torch.Tensor, cand: torch.Tensor, h4: int, w4: int,
                       temperature: float) -> torch.Tensor:
    """Softmax over the candidates of every 1/4 pixel, ``[B, L4, K]``, in the order of ``per_pixel(cand)``.

    Same scores as ``cascade_score(f0, f1, per_pixel(cand))``, computed once per 1/8 parent (the four children
    share their candidates): ``<f0_i, f1_j> / (C * temperature)``.
    """
    B, L4, C = f0.shape
    K = cand.shape[-1]
    rows = f1.float().reshape(B * L4, C)
    off = torch.arange(B, device=f0.device)[:, None, None] * L4
    g = rows.index_select(0, (cand + off).reshape(-1)).view(B, -1, K, C)  # [B, L8, K, C]
    q = group_children(f0.float(), h4, w4)  # [B, L8, 4, C]
    s = torch.matmul(q, g.transpose(-1, -2)) / (C * temperature)  # [B, L8, 4, K]
    return torch.softmax(ungroup_children(s, h4, w4), -1)


def training_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], parts: list[str],
                  fconf: ForwardConf, lconf: L.LossConf, gen: torch.Generator
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """Run one batch through ``model`` (a CasMTR module) and return ``(total loss, logs)``.

    ``batch``: ``image0, image1 [B, 3, H, W]`` and the 1/4-grid warps ``w01, v01, w10, v10`` of the datasets.
    ``parts`` selects the heads: 'coarse' always, then 'cascade' and 'fine'.
    """
    img0, img1 = batch["image0"], batch["image1"]
    B, _, H, W = img0.shape
    h8, w8, h4, w4 = H // 8, W // 8, H // 4, W // 4
    dev = img0.device
    w01, v01, w10, v10 = (batch[k].to(dev) for k in ("w01", "v01", "w10", "v10"))
    logs: dict[str, float] = {}

    f8, f4, f2 = model.backbone(torch.cat([img0, img1], 0))
    f8 = _flat(model.pos_encoding_8c(f8))
    c0, c1 = _ckpt(model.loftr_coarse_8c, f8[:B], f8[B:], h8, w8, enabled=fconf.grad_checkpoint)
    cm = model.coarse_matching_8c(c0, c1, (h8, w8), (h8, w8))
    gt8 = gt_from_warps(w01, v01, w10, v10, (h4, w4), (h4, w4), 8, 4)
    loss_c = L.coarse_loss(cm["conf_matrix"], gt8, lconf)
    total = lconf.coarse_weight * loss_c
    has8 = gt8 != NO_MATCH
    logs["loss_coarse"] = float(loss_c.detach())
    logs["n_gt8"] = float(has8.sum()) / B
    logs["acc8"] = float((cm["next_idx_c01"][has8] == gt8[has8]).float().mean()) if has8.any() else float("nan")
    if "cascade" not in parts:
        logs["loss"] = float(total.detach())
        return total, logs

    C8 = c0.shape[-1]
    x8 = torch.cat([c0, c1], 0).transpose(1, 2).reshape(2 * B, C8, h8, w8)
    x4 = _flat(model.pos_encoding_4c(model.up_block1(x8, f4)))
    idx8_01 = cm["next_idx_c01"].detach()
    idx8_10 = cm["next_idx_c10"].detach()
    tr = model.loftr_coarse_4c
    q0, q1, cand01, cand10 = _ckpt(tr, x4[:B], x4[B:], h4, w4, idx8_01, idx8_10, enabled=fconf.grad_checkpoint)
    idx_c01 = tr.per_pixel(cand01, h4, w4)
    idx_c10 = tr.per_pixel(cand10, h4, w4)
    temp = float(getattr(model.cascade_matching_4c, "temperature", 1.0))
    with torch.autocast(dev.type, enabled=False):
        p01 = _candidate_softmax(q0, q1, cand01, h4, w4, temp)
        with torch.no_grad():
            p10 = _candidate_softmax(q1, q0, cand10, h4, w4, temp)
    conf01, arg01 = p01.detach().max(-1)
    j01 = torch.gather(idx_c01, 2, arg01[..., None])[..., 0]
    j10 = torch.gather(idx_c10, 2, p10.argmax(-1)[..., None])[..., 0]

    gt4 = gt_from_warps(w01, v01, w10, v10, (h4, w4), (h4, w4), 4, 4)
    labels = L.cascade_labels(idx_c01, gt4)
    rows = (conf01 > fconf.cascade_conf_thr) & (labels.sum(-1) == 1)
    b = fconf.cascade_border
    if b > 0:
        r = torch.arange(h4 * w4, device=dev)
        ry, rx = r // w4, r % w4
        src_ok = (ry >= b) & (ry < h4 - b) & (rx >= b) & (rx < w4 - b)
        ty, tx = j01 // w4, j01 % w4
        rows &= src_ok[None] & (tx >= b) & (tx <= w4 - b) & (ty >= b) & (ty <= h4 - b)
    rows &= torch.gather(j10, 1, j01) == torch.arange(h4 * w4, device=dev)[None]
    rows = _subsample(rows, fconf.cascade_max_rows, gen)
    if not rows.any():  # keep one row so the graph stays connected (as the official code does)
        rows[0, int(torch.nonzero(labels[0].any(-1)).flatten()[:1].sum())] = True
    b_ids, i_ids = torch.where(rows)
    loss_cas = L.cascade_loss(p01[b_ids, i_ids], labels[b_ids, i_ids], b_ids, B, lconf)
    total = total + lconf.cascade_weight * loss_cas
    has4 = gt4 != NO_MATCH
    logs["loss_cascade"] = float(loss_cas.detach())
    logs["rows4"] = float(rows.sum()) / B
    logs["acc4"] = float((j01[has4] == gt4[has4]).float().mean()) if has4.any() else float("nan")

    if "fine" in parts:
        fine_rows = _subsample(rows, fconf.fine_max_matches, gen)
        fb, fi = torch.where(fine_rows)
        fj = j01[fb, fi]
        f2_0, f2_1 = f2[:B], f2[B:]
        win0, win1 = model.fine_preprocess(f2_0, f2_1, q0, q1, fb, fi, fj, w4)
        win0, win1 = model.loftr_fine(win0, win1)
        stride_f = W // f2.shape[-1]
        Wn = round(win0.shape[1] ** 0.5)
        mk = torch.zeros(fb.numel(), 2, device=dev)
        fm = model.fine_matching(win0, win1, mk, mk, float(stride_f))
        radius = (Wn // 2) * stride_f
        target = fine_target(w01[fb, fi], fj, w4, 4, float(radius))
        loss_f = L.fine_loss(fm["expec_f"], target, fb, B, lconf)
        total = total + lconf.fine_weight * loss_f
        ok = target.abs().max(-1).values < lconf.fine_correct_thr
        logs["loss_fine"] = float(loss_f.detach())
        if ok.any():
            err = (fm["expec_f"][ok, :2].detach() - target[ok]).norm(dim=-1) * radius
            logs["epe_fine_px"] = float(err.mean())
            logs["epe_coarse_px"] = float((target[ok].norm(dim=-1) * radius).mean())
    logs["loss"] = float(total.detach())
    return total, logs
