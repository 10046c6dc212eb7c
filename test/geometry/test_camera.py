"""Undistortion against the distortion models' own formulas (written out here, independent of OpenCV)."""

import numpy as np
import pytest

from casmtr_ros.geometry.camera import distort_normalized, normalize_points, px_to_normalized, undistort_pixels
from casmtr_ros.types import CameraModel, InputError

K = np.array([[458.654, 0, 367.215], [0, 457.296, 248.375], [0, 0, 1.0]])


def _grid(n: int = 15, extent: float = 0.6) -> np.ndarray:
    g = np.linspace(-extent, extent, n)
    return np.stack(np.meshgrid(g, g * 0.7), -1).reshape(-1, 2)


def _to_px(xd: np.ndarray) -> np.ndarray:
    return np.stack([xd[:, 0] * K[0, 0] + K[0, 2], xd[:, 1] * K[1, 1] + K[1, 2]], 1)


def test_plumb_bob_inverts_the_radtan_formula() -> None:
    D = np.array([-0.28340811, 0.07395907, 0.00019359, 1.76187114e-05, 0.0])  # EuRoC cam0
    k1, k2, p1, p2, k3 = D
    xn = _grid()
    x, y = xn[:, 0], xn[:, 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = np.stack([x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                   y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y], 1)
    cam = CameraModel(K, 752, 480, "plumb_bob", D)
    assert np.abs(normalize_points(cam, _to_px(xd)) - xn).max() < 1e-7
    assert np.abs(distort_normalized(cam, xn) - _to_px(xd)).max() < 1e-6
    # undistorted pixels of the ideal pinhole camera with the same K
    assert np.abs(undistort_pixels(cam, _to_px(xd)) - _to_px(xn)).max() < 1e-4


def test_rational_polynomial_round_trip() -> None:
    D = np.array([0.3, -0.1, 1e-3, -5e-4, 0.01, 0.6, -0.05, 0.02])
    k1, k2, p1, p2, k3, k4, k5, k6 = D
    xn = _grid(extent=0.5)
    x, y = xn[:, 0], xn[:, 1]
    r2 = x * x + y * y
    radial = (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
    xd = np.stack([x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                   y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y], 1)
    cam = CameraModel(K, 752, 480, "rational_polynomial", D)
    assert np.abs(normalize_points(cam, _to_px(xd)) - xn).max() < 1e-7


def test_equidistant_inverts_the_fisheye_formula() -> None:
    D = np.array([-0.013, 0.02, -0.011, 0.002])
    xn = _grid(extent=1.2)
    r = np.linalg.norm(xn, axis=1)
    th = np.arctan(r)
    thd = th * (1 + D[0] * th**2 + D[1] * th**4 + D[2] * th**6 + D[3] * th**8)
    xd = xn * (thd / np.where(r > 0, r, 1))[:, None]
    cam = CameraModel(K, 752, 480, "equidistant", D)
    assert np.abs(normalize_points(cam, _to_px(xd)) - xn).max() < 1e-7


def test_no_distortion_is_k_inverse() -> None:
    cam = CameraModel(K, 752, 480)
    pts = np.array([[367.215, 248.375], [825.869, 705.671]])
    assert np.allclose(normalize_points(cam, pts), [[0, 0], [1, 1]])
    assert px_to_normalized(cam, 1.0) == pytest.approx(2 / (K[0, 0] + K[1, 1]))


def test_too_few_coefficients_refused() -> None:
    cam = CameraModel(K, 752, 480, "rational_polynomial", np.array([0.1, 0.01, 0, 0, 0]))
    with pytest.raises(InputError, match="at least 8"):
        normalize_points(cam, np.zeros((3, 2)))
