"""Learned relative-position bias of the indoor 1/4 cascade cross-attention (spec §7.4).

For a 1/4 query pixel with sub-position ``s_q = (x4 % 2, y4 % 2)`` in its 1/8 parent ``P``, the anchor in the
other image is ``t = 2·c8 + (sr/2 - 1)`` where ``c8`` is the *un-shifted* 1/8 arg-max of ``P`` (x, y), and a
candidate at 1/4 position ``k`` gets, per axis, ``rel = s_q - (t - k + LB) + 2·LB`` (``LB = 2·window`` when
``sr == 2``); the bias is ``w_pos_bias[rel_x] + h_pos_bias[rel_y]`` (one value per head), added to the scaled
scores of the candidates. Both cross layers share it (computed once per direction).
"""

from __future__ import annotations

import torch
from torch import nn


def relative_bias_span(window_size: int, sr_ratio: int) -> int:
    """``LB`` of the official code: ``2·window`` for ``sr_ratio == 2`` else ``6·window``."""
    return window_size * 2 if sr_ratio == 2 else window_size * 6


def cascade_relative_bias(
    h_pos_bias: nn.Embedding,
    w_pos_bias: nn.Embedding,
    centre_idx: torch.Tensor,
    cand_idx: torch.Tensor,
    src_hw4: tuple[int, int],
    tgt_w8: int,
    lb: int,
    sr_ratio: int = 2,
) -> torch.Tensor:
    """Bias of every candidate of every 1/4 query pixel.

    Args:
        h_pos_bias, w_pos_bias: ``Embedding(2·lb + sr_ratio, heads)`` tables (rows, columns).
        centre_idx: ``[B, L8_src]`` int64, the 1/8 arg-max (flattened on the target 1/8 grid) of each 1/8 cell.
        cand_idx: ``[B, L4_src, K]`` int64, the candidates of each 1/4 query pixel (flattened on the target
            1/4 grid, width ``2·tgt_w8``), in attention order.
        src_hw4: ``(h4, w4)`` of the query image's 1/4 grid.
        tgt_w8: width of the target image's 1/8 grid.
        lb: ``LB`` (see :func:`relative_bias_span`).
    Returns:
        ``[B, L4_src, K, heads]`` float32.
    """
    h4, w4 = src_hw4
    L4 = cand_idx.shape[1]
    if h4 * w4 != L4 or centre_idx.shape[1] * 4 != L4:
        raise ValueError(f"relative bias: {L4} query pixels / {centre_idx.shape[1]} parents vs a {h4}x{w4} 1/4 grid")
    dev = cand_idx.device
    ys = torch.arange(h4, device=dev)
    xs = torch.arange(w4, device=dev)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    parent = ((yy // 2) * (w4 // 2) + xx // 2).reshape(-1)  # [L4]
    sub_x, sub_y = (xx % 2).reshape(1, -1, 1), (yy % 2).reshape(1, -1, 1)
    centre = centre_idx.long()[:, parent]  # [B, L4]
    off = sr_ratio // 2 - 1
    tx = ((centre % tgt_w8) * sr_ratio + off).unsqueeze(-1)
    ty = ((centre // tgt_w8) * sr_ratio + off).unsqueeze(-1)
    w4t = tgt_w8 * 2
    kx, ky = cand_idx % w4t, cand_idx // w4t
    rel_x = sub_x - (tx - kx + lb) + 2 * lb
    rel_y = sub_y - (ty - ky + lb) + 2 * lb
    n = h_pos_bias.num_embeddings
    if bool((rel_x < 0).any() or (rel_x >= n).any() or (rel_y < 0).any() or (rel_y >= n).any()):
        raise ValueError("relative bias: candidate offsets fall outside the bias table (windows not around the centre)")
    return (w_pos_bias(rel_x) + h_pos_bias(rel_y)).float()
