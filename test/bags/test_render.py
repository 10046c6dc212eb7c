"""The scene renderer: exact depth, consistent geometry between views, occlusion, determinism."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from casmtr_ros.bags.render import Plane, Scene, project, render_view, unproject
from casmtr_ros.bags.scenes import (
    default_intrinsics,
    demo_trajectory,
    look_at,
    planes_scene,
    room_scene,
    street_scene,
)
from casmtr_ros.bags.textures import procedural_texture

SIZE = (320, 240)


@pytest.fixture(scope="module")
def room() -> Scene:
    return room_scene(seed=3)


def test_fronto_parallel_plane_depth_and_texture_mapping() -> None:
    tex = procedural_texture((100, 150), seed=1)
    # A 3 m x 2 m plane 4 m in front of a camera at the origin looking along +z (world = camera frame).
    plane = Plane((-1.5, -1.0, 4.0), (3.0, 0, 0), (0, 2.0, 0), tex)
    K = default_intrinsics(*SIZE, hfov_deg=60)
    image, depth = render_view(Scene([plane]), K, np.eye(4), SIZE)
    assert image.shape == (240, 320, 3) and image.dtype == np.uint8
    hit = np.isfinite(depth)
    np.testing.assert_allclose(depth[hit], 4.0, rtol=1e-5)
    # The plane's corners project where the pinhole model says; outside them is background.
    uv, _ = project(K, np.eye(4), np.array([[-1.5, -1.0, 4.0], [1.5, 1.0, 4.0]]))
    (x0, y0), (x1, y1) = uv
    assert np.isnan(depth[int(y0) - 2, int(x0) - 2]) and np.isnan(depth[int(y1) + 2, int(x1) + 2])
    assert hit[int(y0) + 2, int(x0) + 2] and hit[int(y1) - 2, int(x1) - 2]
    # Magnified (a texel covers ~1.4 pixels): the image is the texture bilinearly resampled by an affine map.
    A = cv2.getAffineTransform(np.float32([[-0.5, -0.5], [149.5, -0.5], [-0.5, 99.5]]),
                               np.float32([[x0, y0], [x1, y0], [x0, y1]]))
    expected = cv2.warpAffine(tex, A, SIZE, flags=cv2.INTER_LINEAR)
    inner = np.zeros_like(hit)
    inner[int(y0) + 3:int(y1) - 3, int(x0) + 3:int(x1) - 3] = True
    err = np.abs(image.astype(float) - expected.astype(float))[inner]
    assert np.median(err) <= 1 and np.percentile(err, 99) <= 3


def test_views_are_geometrically_consistent(room: Scene) -> None:
    """Points seen in one view, moved by the exact poses, land on the same texture in another view."""
    K = default_intrinsics(*SIZE)
    poses = demo_trajectory(20)
    img0, d0 = render_view(room, K, poses[0], SIZE)
    img1, d1 = render_view(room, K, poses[4], SIZE)
    assert np.isfinite(d0).all()  # a closed room: every pixel hits a surface
    ys, xs = np.mgrid[2:240:5, 2:320:5]
    px = np.c_[xs.ravel(), ys.ravel()].astype(float)
    uv, z = project(K, poses[4], unproject(K, poses[0], px, d0[ys.ravel(), xs.ravel()]))
    inside = (uv[:, 0] > 1) & (uv[:, 0] < 318) & (uv[:, 1] > 1) & (uv[:, 1] < 238)
    r = np.rint(uv[inside]).astype(int)
    visible = np.abs(d1[r[:, 1], r[:, 0]] - z[inside]) < 0.02 * z[inside]
    assert visible.mean() > 0.8
    g0 = cv2.cvtColor(img0, cv2.COLOR_RGB2GRAY).astype(np.float32)
    g1 = cv2.cvtColor(img1, cv2.COLOR_RGB2GRAY).astype(np.float32)
    a = g0[ys.ravel()[inside][visible], xs.ravel()[inside][visible]]
    q = uv[inside][visible].astype(np.float32)
    b = cv2.remap(g1, q[None, :, 0], q[None, :, 1], cv2.INTER_LINEAR).ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.97
    # A wrong pose breaks this consistency, so the check can fail.
    wrong = poses[4] @ look_at([0, 0, 0], [0.1, 0, 1], up=(0, -1, 0))
    uv2, _ = project(K, wrong, unproject(K, poses[0], px, d0[ys.ravel(), xs.ravel()]))
    q2 = uv2[inside][visible].astype(np.float32)
    b2 = cv2.remap(g1, q2[None, :, 0], q2[None, :, 1], cv2.INTER_LINEAR).ravel()
    assert np.corrcoef(a, b2)[0, 1] < 0.8


def test_occlusion_nearest_plane_wins() -> None:
    far = Plane((-20, -20, 10), (40, 0, 0), (0, 40, 0), np.full((64, 64), 50, np.uint8))
    near = Plane((-0.5, -0.5, 2), (1, 0, 0), (0, 1, 0), np.full((64, 64), 200, np.uint8))
    K = default_intrinsics(*SIZE)
    for planes in ([far, near], [near, far]):  # order does not matter
        image, depth = render_view(Scene(planes), K, np.eye(4), SIZE)
        assert image.ndim == 2  # all-grey textures give a grey image
        assert image[120, 160] == 200 and depth[120, 160] == pytest.approx(2.0)
        assert image[5, 5] == 50 and depth[5, 5] == pytest.approx(10.0)


def test_deterministic_and_reusable(room: Scene) -> None:
    K = default_intrinsics(*SIZE)
    pose = demo_trajectory(10)[5]
    a = render_view(room, K, pose, SIZE)
    b = render_view(room_scene(seed=3), K, pose, SIZE)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1], equal_nan=True)
    other = render_view(room_scene(seed=4), K, pose, SIZE)[0]
    assert not np.array_equal(a[0], other)


def test_planes_scene_and_camera_behind_planes() -> None:
    scene = planes_scene(seed=2, color=False)
    K = default_intrinsics(*SIZE)
    image, depth = render_view(scene, K, look_at([0, 0, 1.5], [10, 0, 1.5]), SIZE)
    assert image.ndim == 2 and image.std() > 20
    assert np.nanmax(depth) <= 12.5 / np.cos(np.radians(40)) and np.nanmin(depth) > 1.0
    # Looking away from everything shows only background.
    image, depth = render_view(scene, K, look_at([0, 0, 1.5], [-10, 0, 1.5]), SIZE)
    assert np.isnan(depth).all() and (image == scene.background[0]).all()


def test_bad_inputs() -> None:
    tex = np.zeros((8, 8), np.uint8)
    with pytest.raises(ValueError, match="perpendicular"):
        Plane((0, 0, 0), (1, 0, 0), (1, 1, 0), tex)
    with pytest.raises(ValueError, match="uint8"):
        Plane((0, 0, 0), (1, 0, 0), (0, 1, 0), tex.astype(np.float32))
    with pytest.raises(ValueError, match="size"):
        render_view(Scene([]), default_intrinsics(), np.eye(4), (0, 10))
    with pytest.raises(ValueError, match="coincide"):
        look_at([1, 1, 1], [1, 1, 1])


def test_street_scene_along_x() -> None:
    """The street: the road seen from a driver's position, facades on both sides, the far end closed; driving
    forward scales the view up (the same road point is lower in the image and nearer)."""
    scene = street_scene(seed=1, color=False, length_m=40.0)
    K = default_intrinsics(*SIZE)
    pose0 = look_at([0, 0, 1.5], [20, 0, 1.5])
    image, depth = render_view(scene, K, pose0, SIZE)
    assert image.std() > 10
    assert np.isfinite(depth[SIZE[1] // 2 + 10:]).mean() > 0.999  # below the horizon: road, pavements, facades
    assert np.nanmax(depth) < 60.0 and np.nanmin(depth) > 0.5
    pose1 = look_at([8, 0, 1.5], [28, 0, 1.5])
    _, depth1 = render_view(scene, K, pose1, SIZE)
    x, y = SIZE[0] // 2, SIZE[1] - 40  # a road pixel of view 0, 8 m further on in view 1
    world = unproject(K, pose0, np.array([[x, y]], float), np.array([depth[y, x]]))
    uv, z = project(K, pose1, world)
    assert z[0] < 0  # behind the camera after driving past it
    far = unproject(K, pose0, np.array([[x, SIZE[1] // 2 + 12]], float), np.array([depth[SIZE[1] // 2 + 12, x]]))
    uv, z = project(K, pose1, far)
    assert 0 < z[0] < depth[SIZE[1] // 2 + 12, x] and uv[0, 1] > SIZE[1] // 2 + 12
    assert np.isfinite(depth1).mean() > 0.8
