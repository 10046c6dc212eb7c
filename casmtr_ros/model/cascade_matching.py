"""1/4 cascade matching (spec §8): softmax over the candidates, cycle check, max-pool NMS, thresholds.

Quirks kept in ``official`` mode (``quirks='corrected'`` changes them):
- the target border rule is asymmetric: target columns ``tx > w4 - b`` are rejected, so ``w4 - b`` itself is
  kept (corrected: ``tx >= w4 - b`` rejected, like the source side);
- when nothing survives in the whole batch, pixel 0 of every batch element is forced to be a match
  (corrected: no match).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from casmtr_ros import ops
from casmtr_ros.model.cascade_attention import cell_children, window_cells
from casmtr_ros.ops import torch_ops

INF = 1e9
QUIRK_MODES = ("official", "corrected")


def maxpool_nms(conf: torch.Tensor, kernel: int) -> torch.Tensor:
    """Keep-mask of a ``[B, h, w]`` map: pixel i survives iff it is the first maximum, in row-major scan order, of
    the ``kernel x kernel`` window centred on it (windows clipped at the borders).

    This is exactly what ``max_pool2d(kernel, 1, kernel // 2, return_indices=True)`` keeps (``indices == i``),
    written with shifted comparisons so that the tie rule holds on every device.
    """
    if kernel <= 1:
        return torch.ones_like(conf, dtype=torch.bool)
    if kernel % 2 == 0:
        raise ValueError(f"NMS kernel must be odd, got {kernel}")
    r = kernel // 2
    _B, h, w = conf.shape
    pad = F.pad(conf, (r, r, r, r), value=float("-inf"))
    keep = torch.ones_like(conf, dtype=torch.bool)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy == 0 and dx == 0:
                continue
            nb = pad[:, r + dy : r + dy + h, r + dx : r + dx + w]
            before = dy < 0 or (dy == 0 and dx < 0)  # scanned before the centre: must be strictly smaller
            keep &= (nb < conf) if before else (nb <= conf)
    return keep


def valid_extent(mask: torch.Tensor | None, h: int, w: int, B: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Valid height and width per batch element ``([B], [B])`` of a ``[B, h, w]`` mask (or the full size)."""
    if mask is None:
        full = torch.ones(B, dtype=torch.long, device=device)
        return full * h, full * w
    return mask.sum(1).max(-1).values, mask.sum(-1).max(-1).values


class CascadeMatching(nn.Module):
    """Match every 1/4 pixel of image 0 among its candidates; filters as in §8; runs in fp32."""

    def __init__(
        self,
        temperature: float = 1.0,
        test_thr: float = 0.2,
        pre_thr: float = 0.2,
        border_rm: int = 2,
        nms_kernel: int = 5,
        double_check: bool = True,
        quirks: str = "official",
    ) -> None:
        super().__init__()
        if quirks not in QUIRK_MODES:
            raise ValueError(f"quirks must be one of {QUIRK_MODES}, got {quirks!r}")
        self.temperature = temperature
        self.test_thr = test_thr
        self.pre_thr = pre_thr
        self.border_rm = border_rm
        self.nms_kernel = nms_kernel
        self.double_check = double_check
        self.quirks = quirks

    def _direction(self, f0, f1, idx, mask0, mask1, parents=None, hw4=None):
        if parents is not None and ops.backend_name(f0.device.type) == "torch":
            cells = window_cells(parents, hw4[1] // 2)
            if not torch.equal(cell_children(cells, hw4[1] // 2), parents):  # not whole-cell windows
                cells = None
            s = torch_ops.cascade_score_parents(f0, f1, parents, *hw4, cells)  # PyTorch path: gather once per parent
        else:
            s = ops.cascade_score(f0.contiguous(), f1.contiguous(), idx.contiguous())
        s = s / self.temperature
        if mask0 is not None and mask1 is not None:
            m1 = torch.gather(mask1, 1, idx.flatten(1)).view_as(idx)
            s = s.masked_fill(~(mask0[:, :, None] & m1), -INF)
        p = torch.softmax(s, dim=-1)
        conf, arg = p.max(dim=-1)
        j = torch.gather(idx, 2, arg[..., None])[..., 0]
        return p, conf, j

    def forward(
        self,
        feat0: torch.Tensor,
        feat1: torch.Tensor,
        idx_c01: torch.Tensor,
        idx_c10: torch.Tensor,
        hw4: tuple[int, int],
        next_conf_8c: torch.Tensor,
        mask0: torch.Tensor | None = None,
        mask1: torch.Tensor | None = None,
        scale: float = 4.0,
        scale0: torch.Tensor | None = None,
        scale1: torch.Tensor | None = None,
        parents01: torch.Tensor | None = None,
        parents10: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``feat* [B, L4, C]``, ``idx_c01/idx_c10 [B, L4, K]`` candidate flat indices, ``next_conf_8c [B, L8]``
        (1/8 row-softmax max of image 0), masks ``[B, h4, w4]`` bool (True = valid). Optional ``parents01/10
        [B, L8, K]``: the per-parent candidates ``idx_c*`` were expanded from (faster scoring on the PyTorch path).

        Returns ``conf_matrix [B, L4, K]``, ``next_idx_c01/next_conf_c01``, ``next_idx_c10/next_conf_c10 [B, L4]``,
        ``match_mask [B, L4]`` and the matches ``b_ids, i_ids, j_ids, mconf, mkpts0_c, mkpts1_c``.
        """
        h4, w4 = hw4
        _B, _L4, C = feat0.shape
        with torch.autocast(feat0.device.type, enabled=False):
            f0 = feat0.float() / C**0.5
            f1 = feat1.float() / C**0.5
            m0 = mask0.flatten(1) if mask0 is not None else None
            m1 = mask1.flatten(1) if mask1 is not None else None
            p01, conf01, j01 = self._direction(f0, f1, idx_c01, m0, m1, parents01, hw4)
            _, conf10, j10 = self._direction(f1, f0, idx_c10, m1, m0, parents10, hw4)
            keep = self._filter(conf01, j01, j10, next_conf_8c, h4, w4, mask0, mask1)
            if self.quirks == "official" and not keep.any():
                keep[:, 0] = True
            b_ids, i_ids = torch.where(keep)
            j_ids = j01[b_ids, i_ids]
            mconf = conf01[b_ids, i_ids]
            mk0 = torch.stack([i_ids % w4, torch.div(i_ids, w4, rounding_mode="floor")], 1).float() * scale
            mk1 = torch.stack([j_ids % w4, torch.div(j_ids, w4, rounding_mode="floor")], 1).float() * scale
            if scale0 is not None:
                mk0 = mk0 * scale0[b_ids]
            if scale1 is not None:
                mk1 = mk1 * scale1[b_ids]
        return {
            "conf_matrix": p01,
            "idx_c01": idx_c01,
            "idx_c10": idx_c10,
            "next_idx_c01": j01,
            "next_conf_c01": conf01,
            "next_idx_c10": j10,
            "next_conf_c10": conf10,
            "match_mask": keep,
            "b_ids": b_ids,
            "i_ids": i_ids,
            "j_ids": j_ids,
            "m_bids": b_ids,
            "mconf": mconf,
            "mkpts0_c": mk0,
            "mkpts1_c": mk1,
        }

    def _filter(self, conf01, j01, j10, next_conf_8c, h4, w4, mask0, mask1) -> torch.Tensor:
        B, L4 = conf01.shape
        dev = conf01.device
        keep = maxpool_nms(conf01.view(B, h4, w4), self.nms_kernel).view(B, L4) if self.nms_kernel > 0 else None
        keep = (conf01 > self.test_thr) if keep is None else keep & (conf01 > self.test_thr)
        pre = next_conf_8c.view(B, h4 // 2, 1, w4 // 2, 1).expand(-1, -1, 2, -1, 2).reshape(B, L4)
        keep &= pre > self.pre_thr
        b = self.border_rm
        if b > 0:
            vh0, vw0 = valid_extent(mask0, h4, w4, B, dev)
            vh1, vw1 = valid_extent(mask1, h4, w4, B, dev)
            rows = torch.arange(h4, device=dev)[:, None].expand(h4, w4).reshape(1, L4)
            cols = torch.arange(w4, device=dev)[None, :].expand(h4, w4).reshape(1, L4)
            keep &= (rows >= b) & (rows < (vh0 - b)[:, None]) & (cols >= b) & (cols < (vw0 - b)[:, None])
            ty = torch.div(j01, w4, rounding_mode="floor")
            tx = j01 % w4
            slack = 0 if self.quirks == "official" else 1  # official keeps tx == w4 - b
            keep &= (tx >= b) & (tx <= (vw1 - b)[:, None] - slack) & (ty >= b) & (ty <= (vh1 - b)[:, None] - slack)
        if self.double_check:
            keep &= torch.gather(j10, 1, j01) == torch.arange(L4, device=dev)[None]
        return keep
