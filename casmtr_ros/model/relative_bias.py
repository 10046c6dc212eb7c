"""Learned relative-position bias of the indoor 1/4 cascade cross-attention (spec §7.4).

For a 1/4 query pixel with sub-position ``s_q = (x4 % 2, y4 % 2)`` in its 1/8 parent ``P``, the anchor in the
other image is ``t = sr·c8 + (sr/2 - 1)`` where ``c8`` is the *un-shifted* 1/8 arg-max of ``P`` (x, y), and a
candidate at 1/4 position ``k`` gets, per axis, ``rel = s_q - (t - k + LB) + 2·LB`` (``LB = 2·window`` when
``sr == 2``); the bias is ``w_pos_bias[rel_x] + h_pos_bias[rel_y]`` (one value per head), added to the scaled
scores of the candidates. Both cross layers share it (computed once per direction).
"""

from __future__ import annotations

import torch
from torch import nn

from casmtr_ros.model.cascade_attention import CascadeFeatureTransformer
from casmtr_ros.model.pola import pola_self_block  # noqa: F401  (importing registers the 'POLA' self block)


def relative_bias_span(window_size: int, sr_ratio: int) -> int:
    """``LB`` of the official code: ``2·window`` for ``sr_ratio == 2`` else ``6·window``."""
    return window_size * 2 if sr_ratio == 2 else window_size * 6


def cascade_relative_bias(
    h_pos_bias: nn.Embedding,
    w_pos_bias: nn.Embedding,
    centre: torch.Tensor,
    cand: torch.Tensor,
    tgt_w8: int,
    lb: int,
    sr_ratio: int = 2,
) -> torch.Tensor:
    """Bias of every candidate of the 4 children of every 1/8 cell.

    Args:
        h_pos_bias, w_pos_bias: ``Embedding(2·lb + sr_ratio, heads)`` tables (rows, columns).
        centre: ``[B, L8]`` int64, the 1/8 arg-max (flattened on the target 1/8 grid) of each query 1/8 cell.
        cand: ``[B, L8, K]`` int64, the candidates shared by the cell's 4 children (flattened on the target 1/4
            grid of width ``2·tgt_w8``), in attention order.
        tgt_w8: width of the target image's 1/8 grid.
        lb: ``LB`` (see :func:`relative_bias_span`).
    Returns:
        ``[B, L8, 4, K, heads]`` float32; children row-major within the 2x2 block.
    """
    off = sr_ratio // 2 - 1
    centre = centre.long()
    tx = ((centre % tgt_w8) * sr_ratio + off)[:, :, None, None]  # [B, L8, 1, 1]
    ty = (torch.div(centre, tgt_w8, rounding_mode="floor") * sr_ratio + off)[:, :, None, None]
    w4t = 2 * tgt_w8
    kx = (cand % w4t)[:, :, None, :]  # [B, L8, 1, K]
    ky = torch.div(cand, w4t, rounding_mode="floor")[:, :, None, :]
    child = torch.arange(4, device=cand.device)
    sub_x = (child % 2).view(1, 1, 4, 1)
    sub_y = (child // 2).view(1, 1, 4, 1)
    rel_x = sub_x - (tx - kx + lb) + 2 * lb  # [B, L8, 4, K]
    rel_y = sub_y - (ty - ky + lb) + 2 * lb
    n = h_pos_bias.num_embeddings
    if bool((rel_x.min() < 0) | (rel_y.min() < 0) | (rel_x.max() >= n) | (rel_y.max() >= n)):
        raise ValueError("relative bias: candidate offsets fall outside the bias table (windows not around the centre)")
    return (w_pos_bias(rel_x) + h_pos_bias(rel_y)).float()


class BiasedCascadeTransformer(CascadeFeatureTransformer):
    """The indoor 1/4 transformer: adds ``h_pos_bias`` / ``w_pos_bias`` (``Embedding(2·LB + sr, heads)``) and the
    relative-position bias of every cross layer (official ``RELATIVE_PE = True``)."""

    def __init__(self, d_model: int, nhead: int, layer_names: list[str], self_attn_type: str = "POLA",
                 window_size: int = 5, attn_window: int = 7, sr_ratio: int = 2, mask_mode: str = "official") -> None:
        super().__init__(d_model, nhead, layer_names, self_attn_type, window_size, attn_window, mask_mode)
        self.sr_ratio = sr_ratio
        self.lb = relative_bias_span(window_size, sr_ratio)
        self.h_pos_bias = nn.Embedding(2 * self.lb + sr_ratio, nhead)
        self.w_pos_bias = nn.Embedding(2 * self.lb + sr_ratio, nhead)

    def cross_bias(self, centre: torch.Tensor, cand: torch.Tensor, h8: int, w8: int) -> torch.Tensor:
        return cascade_relative_bias(self.h_pos_bias, self.w_pos_bias, centre, cand, w8, self.lb, self.sr_ratio)
