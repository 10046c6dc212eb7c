"""Keypoint undistortion and normalisation for the ROS distortion models (through OpenCV).

Normalised coordinates are ``K^-1 [x, y, 1]`` of the undistorted pixel: the ray through the point is
``(xn, yn, 1)`` in the REP-103 optical frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from casmtr_ros.types import CameraModel, InputError

_ITER_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-10)
# Fewest coefficients OpenCV needs for each model (ROS CameraInfo gives 5 / 8 / 4).
_MIN_COEFFS = {"plumb_bob": 4, "rational_polynomial": 8, "equidistant": 4}


def _coeffs(camera: CameraModel) -> np.ndarray:
    lo = _MIN_COEFFS[camera.distortion_model]
    D = camera.D
    if len(D) < lo:
        raise InputError(
            f"distortion model {camera.distortion_model!r} needs at least {lo} coefficients, got {len(D)}"
        )
    if camera.distortion_model == "plumb_bob":
        D = D[:5]
    elif camera.distortion_model == "rational_polynomial":
        # OpenCV accepts 8 (k1 k2 p1 p2 k3 k4 k5 k6); extra trailing zeros from some drivers are dropped.
        D = D[:8]
    else:
        D = D[:4]
    return np.ascontiguousarray(D, dtype=np.float64)


def normalize_points(camera: CameraModel, pts: np.ndarray) -> np.ndarray:
    """Undistorted normalised coordinates ``(N, 2)`` float64 of pixel keypoints ``(N, 2)``."""
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return np.zeros((0, 2))
    K = camera.K
    if not camera.has_distortion:
        return np.stack([(pts[:, 0] - K[0, 2]) / K[0, 0], (pts[:, 1] - K[1, 2]) / K[1, 1]], axis=1)
    src = pts.reshape(-1, 1, 2)
    D = _coeffs(camera)
    if camera.distortion_model == "equidistant":
        out = cv2.fisheye.undistortPoints(src, K, D, criteria=_ITER_CRITERIA)
    else:
        out = cv2.undistortPointsIter(src, K, D, None, None, _ITER_CRITERIA)
    return out.reshape(-1, 2).astype(np.float64)


def undistort_pixels(camera: CameraModel, pts: np.ndarray) -> np.ndarray:
    """Pixel keypoints of the ideal pinhole camera with the same ``K`` (distortion removed)."""
    xn = normalize_points(camera, pts)
    K = camera.K
    return np.stack([xn[:, 0] * K[0, 0] + xn[:, 1] * K[0, 1] + K[0, 2], xn[:, 1] * K[1, 1] + K[1, 2]], axis=1)


def distort_normalized(camera: CameraModel, xn: np.ndarray) -> np.ndarray:
    """Pixels of normalised points under the camera's distortion model (the inverse of :func:`normalize_points`)."""
    xn = np.asarray(xn, dtype=np.float64).reshape(-1, 2)
    if len(xn) == 0:
        return np.zeros((0, 2))
    if not camera.has_distortion:
        K = camera.K
        return np.stack([xn[:, 0] * K[0, 0] + xn[:, 1] * K[0, 1] + K[0, 2], xn[:, 1] * K[1, 1] + K[1, 2]], axis=1)
    obj = np.concatenate([xn, np.ones((len(xn), 1))], axis=1).reshape(-1, 1, 3)
    zero = np.zeros(3)
    if camera.distortion_model == "equidistant":
        out, _ = cv2.fisheye.projectPoints(obj, zero, zero, camera.K, _coeffs(camera))
    else:
        out, _ = cv2.projectPoints(obj, zero, zero, camera.K, _coeffs(camera))
    return out.reshape(-1, 2)


def focal_px(camera: CameraModel) -> float:
    """Mean focal length in pixels: converts a pixel threshold to normalised coordinates (``px / f``)."""
    return float(0.5 * (camera.K[0, 0] + camera.K[1, 1]))


def px_to_normalized(camera: CameraModel, threshold_px: float) -> float:
    """A pixel distance expressed in normalised image coordinates."""
    return float(threshold_px) / focal_px(camera)
