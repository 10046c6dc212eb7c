"""Ground truth from depth and pose agrees with a direct projection and rejects occluded points; homography GT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from casmtr_ros.training.supervision import (
    NO_MATCH,
    fill_sparse_depth,
    fine_target,
    grid_points,
    gt_from_warps,
    mutual_gt,
    nearest_index,
    warp_depth,
    warp_homography,
)

H, W = 96, 128
K = torch.tensor([[100.0, 0, 63.5], [0, 100.0, 47.5], [0, 0, 1]])


def _scene_depth(T_cam_world: torch.Tensor) -> torch.Tensor:
    """Depth map of a wall at z=10 (world) with a square occluder at z=4 covering x, y in [-0.6, 0.6]."""
    ys, xs = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    rays = torch.linalg.solve(K, torch.stack([xs, ys, torch.ones_like(xs)]).reshape(3, -1))  # camera rays (z=1)
    R, t = T_cam_world[:3, :3], T_cam_world[:3, 3]
    origin = -R.T @ t  # camera centre in the world
    dirs = R.T @ rays  # world directions
    depth = torch.full((H * W,), float("inf"))
    for z_plane, half in ((10.0, None), (4.0, 0.6)):
        s = (z_plane - origin[2]) / dirs[2]  # ray parameter (= camera z since rays have z=1 in camera frame)
        hit = origin[:, None] + s * dirs
        ok = s > 0
        if half is not None:
            ok &= (hit[0].abs() <= half) & (hit[1].abs() <= half)
        depth = torch.where(ok & (s < depth), s, depth)
    return depth.reshape(H, W)


def _pose(tx: float) -> torch.Tensor:
    T = torch.eye(4)
    T[0, 3] = -tx  # camera centre at x = tx, looking along +z
    return T


def test_warp_depth_matches_projection_and_rejects_occlusion() -> None:
    T0, T1 = _pose(0.0), _pose(1.0)
    d0, d1 = _scene_depth(T0), _scene_depth(T1)
    pts = grid_points(H // 4, W // 4, 4)
    T01 = T1 @ torch.linalg.inv(T0)
    valid, w = warp_depth(pts[None], d0[None], d1[None], T01[None], K[None], K[None], 0.05)
    valid, w = valid[0], w[0]
    # direct projection of the same 3D points
    z = d0[pts[:, 1].long(), pts[:, 0].long()]
    X = torch.linalg.solve(K, torch.cat([pts, torch.ones(len(pts), 1)], 1).T) * z
    X1 = T01[:3, :3] @ X + T01[:3, 3:]
    uv = (K @ X1)[:2] / X1[2]
    assert torch.allclose(w, uv.T, atol=1e-3)
    # points of the wall that the occluder hides from camera 1 are rejected; visible ones are kept
    inside = (uv[0] >= 0) & (uv[0] <= W - 1) & (uv[1] >= 0) & (uv[1] <= H - 1)
    d1_at = d1[uv[1].round().long().clamp(0, H - 1), uv[0].round().long().clamp(0, W - 1)]
    occluded = inside & (d1_at < X1[2] * 0.9)
    assert occluded.sum() > 10
    assert not valid[occluded].any()
    visible = inside & ((d1_at - X1[2]).abs() < 0.01 * X1[2])
    assert visible.sum() > 50
    assert valid[visible].float().mean() > 0.98
    # points projecting outside image 1 are invalid
    assert not valid[~inside].any()


def test_gt_indices_loop_check() -> None:
    n01 = torch.tensor([[2, 0, NO_MATCH, 1]])
    n10 = torch.tensor([[1, 3, 0, NO_MATCH]])
    assert mutual_gt(n01, n10).tolist() == [[2, 0, NO_MATCH, 1]]
    n10_bad = torch.tensor([[1, 2, 3, NO_MATCH]])  # targets 2 and 1 map back to 3 and 2, not to 0 and 3
    assert mutual_gt(n01, n10_bad).tolist() == [[NO_MATCH, 0, NO_MATCH, NO_MATCH]]
    assert nearest_index(torch.tensor([[[7.9, 4.2], [100.0, 0.0]]]), torch.tensor([[True, True]]), 4, 4, 4).tolist() \
        == [[1 * 4 + 2, NO_MATCH]]


def test_homography_gt_exact() -> None:
    cv2 = pytest.importorskip("cv2")
    Hm = np.array([[0.9, 0.1, 5.0], [-0.05, 1.1, -3.0], [1e-4, 2e-4, 1.0]])
    pts = grid_points(H // 4, W // 4, 4)
    valid, w = warp_homography(pts[None], torch.from_numpy(Hm).float()[None], (H, W))
    ref = cv2.perspectiveTransform(pts.numpy()[None].astype(np.float64), Hm)[0]
    assert np.allclose(w[0].numpy(), ref, atol=1e-3)
    inside = (ref[:, 0] >= -0.5) & (ref[:, 0] <= W - 0.5) & (ref[:, 1] >= -0.5) & (ref[:, 1] <= H - 0.5)
    assert (valid[0].numpy() == inside).all()
    # the 1/8 GT of an exact homography pair is loop-consistent and agrees with rounding the warp
    v10, w10 = warp_homography(pts[None], torch.from_numpy(np.linalg.inv(Hm)).float()[None], (H, W))
    gt = gt_from_warps(w[None][0], valid, w10, v10, (H // 4, W // 4), (H // 4, W // 4), 8, 4)[0]
    assert (gt != NO_MATCH).float().mean() > 0.5
    p8 = grid_points(H // 8, W // 8, 8)
    w8 = cv2.perspectiveTransform(p8.numpy()[None].astype(np.float64), Hm)[0] / 8
    idx = np.round(w8[:, 1]) * (W // 8) + np.round(w8[:, 0])
    ok = gt.numpy() != NO_MATCH
    assert (gt.numpy()[ok] == idx[ok]).all()


def test_fill_sparse_depth_prefers_foreground() -> None:
    d = np.zeros((9, 9), np.float32)
    d[4, 3], d[4, 5] = 2.0, 8.0
    f = fill_sparse_depth(d, radius=2)
    assert f[4, 4] == 2.0 and f[4, 3] == 2.0 and f[4, 5] == 8.0
    assert f[0, 0] == 0.0


def test_fine_target_normalisation() -> None:
    w = torch.tensor([[10.0, 6.0], [3.0, 3.0]])
    j = torch.tensor([1 * 4 + 2, 0])  # cells (x=2, y=1) -> pixel (8, 4); (0, 0)
    t = fine_target(w, j, 4, 4, 4.0)
    assert torch.allclose(t, torch.tensor([[0.5, 0.5], [0.75, 0.75]]))
