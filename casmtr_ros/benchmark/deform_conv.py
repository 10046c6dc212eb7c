"""Deformable convolution (v2, modulated) in plain PyTorch: the one torchvision op the ALIKED benchmark peer needs.

No CPU torchvision wheel loads against this machine's torch (the index's builds need CUDA torch), so the
``aliked-lightglue`` peer runs with this stand-in instead. Semantics follow ``torchvision.ops.deform_conv2d``:
for output pixel ``p`` and kernel tap ``k = i * kw + j`` the input is sampled at
``p * stride - padding + (i, j) * dilation + (offset[2k], offset[2k + 1])`` (``(dy, dx)`` order, per offset group)
with bilinear interpolation that reads zero outside the image, multiplied by ``mask[k]`` and by the weights.
Only weight groups = 1 (what ALIKED uses).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def deform_conv2d(input: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None = None, stride: int | tuple[int, int] = 1,
                  padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """``input [B, C, H, W]``, ``offset [B, 2 G kh kw, oh, ow]``, ``weight [O, C, kh, kw]``, optional
    ``mask [B, G kh kw, oh, ow]`` -> ``[B, O, oh, ow]`` (``G`` offset groups divide ``C``)."""
    B, C, H, W = input.shape
    n_out, Cw, kh, kw = weight.shape
    if H < 2 or W < 2:
        raise ValueError(f"deform_conv2d stand-in: input must be at least 2x2, got {H}x{W}")
    if Cw != C:
        raise ValueError(f"deform_conv2d stand-in: weight groups are not supported (weight has {Cw} input "
                         f"channels, input {C})")
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    oh = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    K = kh * kw
    G = offset.shape[1] // (2 * K)
    if offset.shape != (B, 2 * G * K, oh, ow) or G < 1 or C % G:
        raise ValueError(f"deform_conv2d stand-in: offset {tuple(offset.shape)} does not fit input {tuple(input.shape)}"
                         f" and a {kh}x{kw} kernel (expected [{B}, 2*G*{K}, {oh}, {ow}] with G dividing {C})")
    if mask is not None and mask.shape != (B, G * K, oh, ow):
        raise ValueError(f"deform_conv2d stand-in: mask {tuple(mask.shape)}, expected [{B}, {G * K}, {oh}, {ow}]")
    dev, dt = input.device, input.dtype
    oy = (torch.arange(oh, device=dev, dtype=dt) * sh - ph)[:, None]  # [oh, 1]
    ox = (torch.arange(ow, device=dev, dtype=dt) * sw - pw)[None, :]  # [1, ow]
    taps_y = (torch.arange(kh, device=dev, dtype=dt) * dh).repeat_interleave(kw)  # [K]
    taps_x = (torch.arange(kw, device=dev, dtype=dt) * dw).repeat(kh)
    off = offset.view(B, G, K, 2, oh, ow)
    y = oy + taps_y[None, None, :, None, None] + off[:, :, :, 0]  # [B, G, K, oh, ow] sample rows
    x = ox + taps_x[None, None, :, None, None] + off[:, :, :, 1]
    # bilinear with zeros outside == grid_sample(align_corners=True, padding_mode='zeros') on pixel coordinates
    grid = torch.stack((2.0 * x / (W - 1) - 1.0, 2.0 * y / (H - 1) - 1.0), dim=-1)
    grid = grid.reshape(B * G, K * oh, ow, 2)
    cols = F.grid_sample(input.reshape(B * G, C // G, H, W), grid, mode="bilinear", padding_mode="zeros",
                         align_corners=True)  # [B*G, C/G, K*oh, ow]
    cols = cols.view(B, G, C // G, K, oh, ow)
    if mask is not None:
        cols = cols * mask.view(B, G, 1, K, oh, ow)
    out = torch.einsum("bgckhw,ogck->bohw", cols, weight.reshape(n_out, G, C // G, K))
    return out if bias is None else out + bias.view(1, n_out, 1, 1)


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=dilation, groups=groups, bias=False,
                     dilation=dilation)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


@contextmanager
def torchvision_standin() -> Iterator[None]:
    """While active, ``import torchvision`` gives a minimal module with ``ops.deform_conv2d`` (above) and
    ``models.resnet.conv1x1/conv3x3`` (torchvision's definitions): enough to import and run ALIKED. The entries
    are removed afterwards, so nothing else in the process sees them."""
    names = ("torchvision", "torchvision.ops", "torchvision.models", "torchvision.models.resnet")
    saved = {n: sys.modules[n] for n in names if n in sys.modules}
    root, ops, models, resnet = (types.ModuleType(n) for n in names)
    ops.deform_conv2d = deform_conv2d  # type: ignore[attr-defined]
    resnet.conv1x1, resnet.conv3x3 = _conv1x1, _conv3x3  # type: ignore[attr-defined]
    models.resnet = resnet  # type: ignore[attr-defined]
    root.ops, root.models = ops, models  # type: ignore[attr-defined]
    root.__version__ = "stand-in (casmtr_ros.benchmark.deform_conv)"  # type: ignore[attr-defined]
    sys.modules.update(dict(zip(names, (root, ops, models, resnet), strict=True)))
    try:
        yield
    finally:
        for n in names:
            sys.modules.pop(n, None)
        sys.modules.update(saved)
