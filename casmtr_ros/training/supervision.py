"""Ground-truth correspondences from geometry (LoFTR / CasMTR style), on the training image grid.

Two warp sources give, for grid points of one image, their float position in the other image and a validity
flag:

* :func:`warp_depth` - back-project with depth, move with the relative pose, project, and keep only points
  that land inside the other image with a consistent depth there (the occlusion check). Sparse (LiDAR)
  depth is handled by :func:`fill_sparse_depth` before warping.
* :func:`warp_homography` - exact warp by a 3x3 homography, valid where it lands inside the other image
  (and inside an optional validity mask of that image).

:func:`grid_points` makes the sample points (top-left corners of ``stride`` cells, as in LoFTR: pixel
``(x * s, y * s)``), :func:`nearest_index` turns warped points into cell indices of the other grid, and
:func:`mutual_gt` keeps a source cell only when the reverse warp of its target cell comes back to it (the
loop check of the official supervision). All functions are batched torch code on ``[B, ...]`` tensors.
"""

from __future__ import annotations

import numpy as np
import torch

#: index value of "no ground-truth match".
NO_MATCH = -1


def grid_points(h: int, w: int, stride: int, device: torch.device | None = None) -> torch.Tensor:
    """``[h*w, 2]`` float pixel coordinates ``(x*stride, y*stride)`` of an ``h x w`` grid, row-major."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([xs, ys], -1).reshape(-1, 2).float() * stride


def fill_sparse_depth(depth: np.ndarray, radius: int = 2) -> np.ndarray:
    """Fill pixels without depth (0) by the nearest-in-depth valid value within ``radius`` pixels.

    Uses the *minimum* valid depth of the neighbourhood (the foreground), so a point seen just beside a
    LiDAR return never takes the depth of a surface behind it. Dense maps are returned unchanged where valid.
    """
    import cv2

    d = depth.astype(np.float32)
    big = np.float32(1e9)
    filled = np.where(d > 0, d, big)
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    eroded = cv2.erode(filled, kernel)
    out = np.where(d > 0, d, np.where(eroded < big, eroded, 0.0))
    return out.astype(np.float32)


def _lookup_nearest(depth: torch.Tensor, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth at the nearest pixel of ``pts`` ``[B,N,2]`` in ``depth`` ``[B,H,W]``; also the in-image mask."""
    B, H, W = depth.shape
    xi = pts[..., 0].round().long()
    yi = pts[..., 1].round().long()
    inside = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
    flat = (yi.clamp(0, H - 1) * W + xi.clamp(0, W - 1))
    d = torch.gather(depth.reshape(B, -1), 1, flat)
    return d, inside


def inv3(M: torch.Tensor) -> torch.Tensor:
    """Inverse of ``[..., 3, 3]`` matrices by the adjugate (LAPACK calls are slow for tiny batched matrices)."""
    a, b, c = M[..., 0, 0], M[..., 0, 1], M[..., 0, 2]
    d, e, f = M[..., 1, 0], M[..., 1, 1], M[..., 1, 2]
    g, h, i = M[..., 2, 0], M[..., 2, 1], M[..., 2, 2]
    adj = torch.stack([
        torch.stack([e * i - f * h, c * h - b * i, b * f - c * e], -1),
        torch.stack([f * g - d * i, a * i - c * g, c * d - a * f], -1),
        torch.stack([d * h - e * g, b * g - a * h, a * e - b * d], -1),
    ], -2)
    det = a * adj[..., 0, 0] + b * adj[..., 1, 0] + c * adj[..., 2, 0]
    return adj / det[..., None, None]


@torch.no_grad()
def warp_depth(pts0: torch.Tensor, depth0: torch.Tensor, depth1: torch.Tensor, T_0to1: torch.Tensor,
               K0: torch.Tensor, K1: torch.Tensor, rel_thresh: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp pixels of image 0 into image 1 with depth and pose.

    Args:
        pts0: ``[B, N, 2]`` pixel coordinates (x, y) in image 0 (pixel centres at integers).
        depth0, depth1: ``[B, H, W]`` depth (z) maps, 0 = unknown.
        T_0to1: ``[B, 4, 4]`` maps camera-0 points into camera 1.
        K0, K1: ``[B, 3, 3]`` intrinsics.
        rel_thresh: accepted relative depth difference ``|d1(proj) - z1| / z1`` (occlusion check).
    Returns:
        ``(valid [B, N] bool, pts1 [B, N, 2] float)``: valid = source has depth, lands in front of camera 1
        and inside image 1, and image 1's depth there agrees.
    """
    z0, inside0 = _lookup_nearest(depth0, pts0)
    has = inside0 & (z0 > 0)
    ones = torch.ones_like(pts0[..., :1])
    rays = inv3(K0) @ torch.cat([pts0, ones], -1).transpose(1, 2)  # [B, 3, N]
    X0 = rays * z0[:, None, :]
    X1 = T_0to1[:, :3, :3] @ X0 + T_0to1[:, :3, 3:]
    z1 = X1[:, 2]
    uv = K1 @ X1
    pts1 = (uv[:, :2] / uv[:, 2:].clamp(min=1e-6)).transpose(1, 2)
    d1, inside1 = _lookup_nearest(depth1, pts1)
    consistent = (d1 > 0) & ((d1 - z1).abs() < rel_thresh * z1.clamp(min=1e-6))
    valid = has & (z1 > 1e-6) & inside1 & consistent
    return valid, pts1


@torch.no_grad()
def warp_homography(pts0: torch.Tensor, H_0to1: torch.Tensor, size1: tuple[int, int],
                    mask1: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp ``pts0`` ``[B,N,2]`` by ``H_0to1`` ``[B,3,3]``; valid inside image 1 (``size1 = (h, w)``) and ``mask1``."""
    h, w = size1
    ones = torch.ones_like(pts0[..., :1])
    p = (H_0to1 @ torch.cat([pts0, ones], -1).transpose(1, 2)).transpose(1, 2)
    z = p[..., 2:]
    pts1 = p[..., :2] / torch.where(z.abs() < 1e-9, torch.full_like(z, 1e-9), z)
    valid = (z[..., 0] > 0) & (pts1[..., 0] >= -0.5) & (pts1[..., 0] <= w - 0.5)
    valid &= (pts1[..., 1] >= -0.5) & (pts1[..., 1] <= h - 0.5)
    if mask1 is not None:
        m, inside = _lookup_nearest(mask1.float(), pts1)
        valid &= inside & (m > 0.5)
    return valid, pts1


def nearest_index(pts: torch.Tensor, valid: torch.Tensor, h: int, w: int, stride: int) -> torch.Tensor:
    """Cell index ``round(y/s) * w + round(x/s)`` of ``pts`` on an ``h x w`` grid; ``NO_MATCH`` if invalid/outside."""
    x = (pts[..., 0] / stride).round().long()
    y = (pts[..., 1] / stride).round().long()
    ok = valid & (x >= 0) & (x < w) & (y >= 0) & (y < h)
    idx = y.clamp(0, h - 1) * w + x.clamp(0, w - 1)
    return torch.where(ok, idx, torch.full_like(idx, NO_MATCH))


def mutual_gt(n01: torch.Tensor, n10: torch.Tensor) -> torch.Tensor:
    """Keep ``n01[i]`` only where ``n10[n01[i]] == i`` (loop check); returns ``[B, L0]`` with ``NO_MATCH`` elsewhere."""
    L0 = n01.shape[1]
    back = torch.gather(n10, 1, n01.clamp(min=0))
    ok = (n01 >= 0) & (back == torch.arange(L0, device=n01.device)[None])
    return torch.where(ok, n01, torch.full_like(n01, NO_MATCH))


def gt_from_warps(w01: torch.Tensor, v01: torch.Tensor, w10: torch.Tensor, v10: torch.Tensor,
                  hw0: tuple[int, int], hw1: tuple[int, int], stride: int, src_stride: int) -> torch.Tensor:
    """Ground-truth target indices on the ``stride`` grid from warps sampled on a finer ``src_stride`` grid.

    ``w01 [B, h0*w0, 2]`` / ``v01`` are warps of the ``src_stride`` grid points of image 0 (``hw0`` = that grid's
    size); ``w10`` / ``v10`` the same for image 1. Grid points of the coarser ``stride`` grid are every
    ``stride // src_stride``-th of them. Returns ``[B, L0]`` indices into image 1's ``stride`` grid.
    """
    f = stride // src_stride
    if f * src_stride != stride:
        raise ValueError(f"stride {stride} is not a multiple of {src_stride}")

    def sub(w: torch.Tensor, v: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        h, ww = hw
        B = w.shape[0]
        w = w.reshape(B, h, ww, 2)[:, ::f, ::f]
        v = v.reshape(B, h, ww)[:, ::f, ::f]
        return w.reshape(B, -1, 2), v.reshape(B, -1), w.shape[1], w.shape[2]

    a, va, h0, w0 = sub(w01, v01, hw0)
    b, vb, h1, w1 = sub(w10, v10, hw1)
    n01 = nearest_index(a, va, h1, w1, stride)
    n10 = nearest_index(b, vb, h0, w0, stride)
    return mutual_gt(n01, n10)


def fine_target(w_pts0: torch.Tensor, j_ids: torch.Tensor, w1_grid: int, stride: int, radius_px: float
                ) -> torch.Tensor:
    """Normalised fine offset GT ``(w_pt0 - pt1_j) / radius_px`` for predicted matches.

    ``w_pts0 [M, 2]`` are the exact warps of the matched source points, ``j_ids [M]`` the predicted target
    cells on a grid of width ``w1_grid`` and ``stride``; ``radius_px`` is the fine window radius in image pixels
    (window half-size x fine stride: 2 x 2 = 4 for the official models). ``|offset| < 1`` lies inside the window.
    """
    pt1 = torch.stack([j_ids % w1_grid, j_ids // w1_grid], -1).float() * stride
    return (w_pts0 - pt1) / radius_px


def overlap_ratio(valid01: torch.Tensor, valid10: torch.Tensor) -> torch.Tensor:
    """Co-visibility of a pair: min over the two directions of the share of valid warps (``[B]``)."""
    return torch.minimum(valid01.float().mean(-1), valid10.float().mean(-1))
