"""The pure-PyTorch deformable convolution of the ALIKED peer against a literal per-sample reference of
torchvision's rule, and against plain convolution where the two coincide."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from casmtr_ros.benchmark.deform_conv import deform_conv2d, torchvision_standin


def _bilinear(img: np.ndarray, h: float, w: float) -> float:
    """torchvision's ``bilinear_interpolate``: zero outside (-1, size), corners outside the image read zero."""
    H, W = img.shape
    if h <= -1 or h >= H or w <= -1 or w >= W:
        return 0.0
    h0, w0 = int(np.floor(h)), int(np.floor(w))
    lh, lw = h - h0, w - w0
    v = 0.0
    for dy, wy in ((0, 1 - lh), (1, lh)):
        for dx, wx in ((0, 1 - lw), (1, lw)):
            y, x = h0 + dy, w0 + dx
            if 0 <= y < H and 0 <= x < W:
                v += wy * wx * img[y, x]
    return v


def _reference(x, off, w, b, stride, pad, dil, mask):
    B, C = x.shape[:2]
    n_out, _, kh, kw = w.shape
    oh, ow = off.shape[2:]
    G = off.shape[1] // (2 * kh * kw)
    out = np.zeros((B, n_out, oh, ow))
    for bi in range(B):
        for yo in range(oh):
            for xo in range(ow):
                for c in range(C):
                    g = c // (C // G)
                    for i in range(kh):
                        for j in range(kw):
                            k = i * kw + j
                            dy = off[bi, 2 * (g * kh * kw + k), yo, xo]
                            dx = off[bi, 2 * (g * kh * kw + k) + 1, yo, xo]
                            v = _bilinear(x[bi, c], yo * stride - pad + i * dil + dy, xo * stride - pad + j * dil + dx)
                            if mask is not None:
                                v *= mask[bi, g * kh * kw + k, yo, xo]
                            out[bi, :, yo, xo] += v * w[:, c, i, j]
    return out + (0 if b is None else b[None, :, None, None])


@pytest.mark.parametrize(("stride", "pad", "dil", "groups", "use_mask"),
                         [(1, 1, 1, 1, True), (2, 0, 1, 2, False), (1, 2, 2, 1, True)])
def test_matches_the_per_sample_reference(stride, pad, dil, groups, use_mask):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 7, 9, generator=g, dtype=torch.float64)
    w = torch.randn(3, 4, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    oh = (7 + 2 * pad - dil * 2 - 1) // stride + 1
    ow = (9 + 2 * pad - dil * 2 - 1) // stride + 1
    off = 2.5 * torch.randn(2, 2 * groups * 9, oh, ow, generator=g, dtype=torch.float64)  # some land outside
    mask = torch.rand(2, groups * 9, oh, ow, generator=g, dtype=torch.float64) if use_mask else None
    got = deform_conv2d(x, off, w, b, stride=stride, padding=pad, dilation=dil, mask=mask)
    ref = _reference(x.numpy(), off.numpy(), w.numpy(), b.numpy(), stride, pad, dil,
                     None if mask is None else mask.numpy())
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-9)


def test_zero_and_integer_offsets_are_plain_convolutions():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 5, 12, 10, generator=g)
    w = torch.randn(6, 5, 3, 3, generator=g)
    off = torch.zeros(1, 18, 12, 10)
    np.testing.assert_allclose(deform_conv2d(x, off, w, padding=1), F.conv2d(x, w, padding=1), atol=1e-5)
    off[:, 0::2] = 1.0  # every tap one row down: the padding moves from the top rows to the bottom
    moved = F.conv2d(F.pad(x, (1, 1, 0, 2)), w)
    np.testing.assert_allclose(deform_conv2d(x, off, w, padding=1), moved, atol=1e-5)
    with pytest.raises(ValueError, match="offset"):
        deform_conv2d(x, torch.zeros(1, 17, 12, 10), w, padding=1)
    with pytest.raises(ValueError, match="groups"):
        deform_conv2d(x, off, torch.randn(6, 1, 3, 3), padding=1)


def test_standin_is_visible_only_inside_the_context():
    real = importlib.util.find_spec("torchvision") is not None
    before = sys.modules.get("torchvision")
    with torchvision_standin():
        import torchvision
        from torchvision.models import resnet

        assert torchvision.ops.deform_conv2d is deform_conv2d
        assert resnet.conv1x1(4, 8).kernel_size == (1, 1) and resnet.conv3x3(4, 8).padding == (1, 1)
    assert sys.modules.get("torchvision") is before
    assert real or "torchvision.ops" not in sys.modules
