"""The 1/4 cascade transformer (spec §7): candidate windows, cascade cross-attention, self blocks.

Candidate windows (§7.1): for every 1/8 cell of the query image, the 5x5 window of 1/8 cells of the other
image centred on its 1/8 arg-max (shifted, not clipped, to stay inside the map), expanded to the 2x2 children
of each cell on the 1/4 grid: 100 candidates, window-cell major (dy outer, dx inner), child minor.

Extension points for other variants:
- ``SELF_BLOCKS``: name -> factory ``(d_model, nhead, attn_window, mask_mode) -> nn.Module`` taking
  ``(x [B, L, C], h, w)``; 'local' is the outdoor Twins block.
- ``CascadeFeatureTransformer.cross_bias``: override in a subclass to add a relative-position bias
  ``[B, L8, 4, K, H]`` to the scaled cross-attention scores (indoor-4c).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from casmtr_ros import ops
from casmtr_ros.model.local_attention import LocalBlock
from casmtr_ros.model.quadtree import DWConvMlp, group_children, pointwise, ungroup_children
from casmtr_ros.ops import torch_ops

SELF_BLOCKS: dict[str, Callable[..., nn.Module]] = {"local": LocalBlock}


def window_offsets(window_size: int = 5) -> torch.Tensor:
    """``[ws*ws, 2]`` int64 (dy, dx) offsets, dy outer."""
    r = torch.arange(window_size) - window_size // 2
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([dy.reshape(-1), dx.reshape(-1)], -1)


def shifted_windows(centre: torch.Tensor, window: torch.Tensor, h8: int, w8: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows and columns ``[B, L8, K8]`` of the windows around flat 1/8 centres, shifted inside ``h8 x w8``."""
    r = torch.div(centre, w8, rounding_mode="floor")[..., None] + window[:, 0]
    c = (centre % w8)[..., None] + window[:, 1]
    r = r - r.min(-1, keepdim=True).values.clamp(max=0)
    r = r - (r.max(-1, keepdim=True).values - (h8 - 1)).clamp(min=0)
    c = c - c.min(-1, keepdim=True).values.clamp(max=0)
    c = c - (c.max(-1, keepdim=True).values - (w8 - 1)).clamp(min=0)
    return r, c


def candidate_windows(centre: torch.Tensor, window: torch.Tensor, h8: int, w8: int) -> torch.Tensor:
    """Flat 1/4 indices ``[B, L8, 4*K8]`` of the candidates of each 1/8 cell (see the module docstring).

    ``centre [B, L8]``: flat index of the arg-max 1/8 cell in the other image (grid ``h8 x w8``).
    """
    if h8 < 5 or w8 < 5:
        raise ValueError(f"the 1/8 map must be at least 5x5 for the candidate windows, got {h8}x{w8}")
    r, c = shifted_windows(centre, window.to(centre.device), h8, w8)
    w4 = 2 * w8
    kids = [(2 * r + a) * w4 + (2 * c + b) for a in (0, 1) for b in (0, 1)]
    idx = torch.stack(kids, -1).flatten(-2)
    return idx.clamp(0, 4 * h8 * w8 - 1)


def window_cells(cand: torch.Tensor, w8: int) -> torch.Tensor:
    """``[B, L8, 4*K8]`` candidates of :func:`candidate_windows` -> ``[B, L8, K8]`` flat 1/8 cells they cover."""
    first = cand[..., ::4]  # child (0, 0) of each cell: (2r) * w4 + 2c
    w4 = 2 * w8
    return torch.div(first, 2 * w4, rounding_mode="floor") * w8 + torch.div(first % w4, 2, rounding_mode="floor")


def cell_children(cells: torch.Tensor, w8: int) -> torch.Tensor:
    """Inverse of :func:`window_cells`: ``[B, L8, K8]`` 1/8 cells -> ``[B, L8, 4*K8]`` 1/4 children (cell-major)."""
    r, c = torch.div(cells, w8, rounding_mode="floor"), cells % w8
    w4 = 2 * w8
    return torch.stack([(2 * r + a) * w4 + (2 * c + b) for a in (0, 1) for b in (0, 1)], -1).flatten(-2)


class CascadeQTAttB(nn.Module):
    """Each 2x2 block of 1/4 queries attends to the candidates of its 1/8 parent (§7.2)."""

    def __init__(self, dim: int, nhead: int) -> None:
        super().__init__()
        self.nhead = nhead
        self.q_proj = nn.Conv2d(dim, dim, 1, bias=False)
        self.k_proj = nn.Conv2d(dim, dim, 1, bias=False)
        self.v_proj = nn.Conv2d(dim, dim, 1, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        source: torch.Tensor,
        h: int,
        w: int,
        cand: torch.Tensor,
        bias: torch.Tensor | None = None,
        cells: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x, source [B, h*w, C]``; ``cand [B, L8, K]`` flat 1/4 indices of ``source``; optional ``cells
        [B, L8, K/4]``: the 1/8 cells whose 2x2 children ``cand`` lists (cell-major, child row-major), which lets
        the PyTorch path gather whole cells. Returns ``[B, h*w, C]``."""
        B, L, C = x.shape
        H = self.nhead
        D = C // H
        q = pointwise(self.q_proj, x).float()
        k = pointwise(self.k_proj, source).float()
        v = pointwise(self.v_proj, source).float()
        qg = group_children(q.reshape(B, L, H, D), h, w)  # [B, L8, 4, H, D]
        kf = k.reshape(B, L, H, D)
        vf = v.reshape(B, L, H, D)
        if cells is not None and ops.backend_name(x.device.type) == "torch":
            # PyTorch path: whole cells gathered, scores kept heads-major [B, L8, H, 4, K] (softmax over contiguous
            # rows, no per-child index); the same values as the kernels' layout below
            score = torch_ops.window_score_heads(qg, group_children(kf, h, w), cells) * D**-0.5
            if bias is not None:
                score = score + bias.permute(0, 1, 4, 2, 3)
            msg = torch_ops.window_value(torch.softmax(score, dim=-1), group_children(vf, h, w), cells)
        else:
            index = cand[..., None].expand(-1, -1, -1, H).contiguous()  # [B, L8, K, H]
            score = ops.score_computation(qg.contiguous(), kf.contiguous(), index) * D**-0.5  # [B, L8, 4, K, H]
            if bias is not None:
                score = score + bias
            A = torch.softmax(score, dim=3)
            msg = ops.value_aggregation(
                A.contiguous(), vf.contiguous(), index[:, :, None].expand(-1, -1, 4, -1, -1).contiguous()
            )
        msg = ungroup_children(msg, h, w).reshape(B, L, C)
        return self.proj(msg)


class CascadeQuadtreeBlock(nn.Module):
    """Pre-norm cross block: ``x + attn(LN1 x, LN1 src)``, ``x + MLP(LN2 x)`` (MLP with depth-wise conv)."""

    def __init__(self, dim: int, nhead: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CascadeQTAttB(dim, nhead)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = DWConvMlp(dim, dim * mlp_ratio)

    def forward(
        self,
        x: torch.Tensor,
        source: torch.Tensor,
        h: int,
        w: int,
        cand: torch.Tensor,
        bias: torch.Tensor | None = None,
        cells: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), self.norm1(source), h, w, cand, bias, cells)
        return x + self.mlp(self.norm2(x), h, w)


class CascadeFeatureTransformer(nn.Module):
    """The 1/4 transformer: cross blocks over candidate windows, interleaved with self blocks.

    Owns the int64 parameter ``window`` ``[ws*ws, 2]`` (the window offsets, loaded from checkpoints).
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        layer_names: list[str],
        self_attn_type: str = "local",
        window_size: int = 5,
        attn_window: int = 7,
        mask_mode: str = "official",
    ) -> None:
        super().__init__()
        if self_attn_type not in SELF_BLOCKS:
            raise ValueError(f"unknown self-attention type {self_attn_type!r}; known: {sorted(SELF_BLOCKS)}")
        self.layer_names = list(layer_names)
        self.window = nn.Parameter(window_offsets(window_size), requires_grad=False)
        layers = []
        for name in layer_names:
            if name == "cross":
                layers.append(CascadeQuadtreeBlock(d_model, nhead))
            elif name == "self":
                layers.append(SELF_BLOCKS[self_attn_type](d_model, nhead, attn_window, mask_mode))
            else:
                raise ValueError(f"unknown layer name {name!r}")
        self.layers = nn.ModuleList(layers)

    def cross_bias(self, centre: torch.Tensor, cand: torch.Tensor, h8: int, w8: int) -> torch.Tensor | None:
        """Optional bias ``[B, L8, 4, K, H]`` for one direction (none for outdoor)."""
        return None

    @staticmethod
    def per_pixel(cand: torch.Tensor, h4: int, w4: int) -> torch.Tensor:
        """``[B, L8, K]`` parent candidates -> ``[B, L4, K]`` candidates of every 1/4 pixel."""
        return ungroup_children(cand[:, :, None].expand(-1, -1, 4, -1), h4, w4)

    def forward(
        self,
        feat0: torch.Tensor,
        feat1: torch.Tensor,
        h4: int,
        w4: int,
        next_idx_c01: torch.Tensor,
        next_idx_c10: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``feat* [B, h4*w4, C]``, ``next_idx_* [B, L8]`` (1/8 arg-max per cell).

        Returns the updated features and the parent candidates ``cand01, cand10 [B, L8, 100]``.
        """
        h8, w8 = h4 // 2, w4 // 2
        cand01 = candidate_windows(next_idx_c01, self.window, h8, w8)
        cand10 = candidate_windows(next_idx_c10, self.window, h8, w8)
        bias01 = self.cross_bias(next_idx_c01, cand01, h8, w8)
        bias10 = self.cross_bias(next_idx_c10, cand10, h8, w8)
        cells01, cells10 = (window_cells(c, w8) for c in (cand01, cand10))
        for layer, name in zip(self.layers, self.layer_names, strict=True):
            if name == "self":
                feat0 = layer(feat0, h4, w4)
                feat1 = layer(feat1, h4, w4)
            else:
                feat0, feat1 = (
                    layer(feat0, feat1, h4, w4, cand01, bias01, cells01),
                    layer(feat1, feat0, h4, w4, cand10, bias10, cells10),
                )
        return feat0, feat1, cand01, cand10
