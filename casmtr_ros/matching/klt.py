"""Sub-pixel polishing of matches with pyramidal Lucas-Kanade, and a forward-backward check.

A dense matcher that runs on a downscaled image places its points on a grid and localises the partner to a
fraction of its fine step; on the original image that is a pixel or more. For small-baseline pairs (consecutive
keyframes of a video) Lucas-Kanade started at the matcher's estimate converges to a sub-pixel position, and
tracking the result back to image 0 tells which matches are photometrically consistent (`klt_refine` of
:class:`~casmtr_ros.matching.casmtr.CasMTRMatcher`).

Lucas-Kanade assumes that a window only translates. Under viewpoint, rotation or scale change that biases the
points, so :func:`polish_guided` first fits a homography to the matches (RANSAC) and tracks into image 1 warped
by its inverse: the warp removes the pair's dominant perspective, scale and rotation, Lucas-Kanade refines the
residual (parallax of points off the dominant plane, within ``max_shift_px``), and the points are mapped back.
For a near-identity homography (small baselines) this is plain Lucas-Kanade.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class KltConfig:
    """Lucas-Kanade settings.

    ``window``: side of the square window in pixels; ``levels``: pyramid levels above the original image;
    ``iterations`` and ``epsilon``: stopping criteria; ``fb_px``: a match is kept only when tracking its polished
    point back to image 0 lands within this many pixels of the original point (0 = no check); ``max_shift_px``:
    a polished point may move at most this far from the matcher's estimate (larger moves mean Lucas-Kanade
    slipped to another structure); ``guided``: track through the homography pre-warp of :func:`polish_guided`;
    ``homography_px``: RANSAC threshold of that homography, in pixels of image 1.
    """

    window: int = 11
    levels: int = 1
    iterations: int = 20
    epsilon: float = 0.01
    fb_px: float = 1.0
    max_shift_px: float = 8.0
    guided: bool = True
    homography_px: float = 8.0

    def __post_init__(self) -> None:
        if self.window < 3 or self.window % 2 == 0:
            raise ValueError(f"klt window must be an odd number >= 3, got {self.window}")
        if (self.levels < 0 or self.iterations < 1 or self.fb_px < 0 or self.max_shift_px <= 0
                or self.homography_px <= 0):
            raise ValueError(f"invalid klt settings: {self}")


def polish(gray0: np.ndarray, gray1: np.ndarray, kpts0: np.ndarray, kpts1: np.ndarray,
           config: KltConfig = KltConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Polish ``kpts1 [N, 2]`` (pixels of ``gray1``) as the Lucas-Kanade track of ``kpts0`` (pixels of ``gray0``;
    the two images may differ in size).

    Returns ``(points1 [N, 2] float32, ok [N] bool)``: ``ok`` marks the matches that converged, moved at most
    ``max_shift_px`` and passed the forward-backward check; ``points1`` holds the polished point where ``ok`` and
    the input point elsewhere. The points of image 0 never move.
    """
    n = len(kpts0)
    if len(kpts1) != n:
        raise ValueError(f"polish: {n} points in image 0 but {len(kpts1)} in image 1")
    k1 = np.asarray(kpts1, np.float32).reshape(-1, 2)
    if n == 0:
        return k1.copy(), np.zeros(0, bool)
    if gray0.shape != gray1.shape:  # OpenCV tracks between equal sizes: pad both (coordinates do not change)
        h, w = max(gray0.shape[0], gray1.shape[0]), max(gray0.shape[1], gray1.shape[1])
        gray0, gray1 = (cv2.copyMakeBorder(g, 0, h - g.shape[0], 0, w - g.shape[1], cv2.BORDER_REPLICATE)
                        for g in (gray0, gray1))
    p0 = np.ascontiguousarray(np.asarray(kpts0, np.float32).reshape(-1, 1, 2))
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, config.iterations, config.epsilon)
    lk = {"winSize": (config.window, config.window), "maxLevel": config.levels, "criteria": criteria,
          "flags": cv2.OPTFLOW_USE_INITIAL_FLOW}
    q1, status, _ = cv2.calcOpticalFlowPyrLK(gray0, gray1, p0, k1.reshape(-1, 1, 2).copy(), **lk)
    q1 = q1.reshape(-1, 2)
    ok = (status.ravel() == 1) & np.all(np.isfinite(q1), axis=1)
    ok &= np.linalg.norm(q1 - k1, axis=1) <= config.max_shift_px
    if config.fb_px > 0:
        back, status_b, _ = cv2.calcOpticalFlowPyrLK(gray1, gray0, q1.reshape(-1, 1, 2).copy(), p0.copy(), **lk)
        ok &= (status_b.ravel() == 1) & (np.linalg.norm(back.reshape(-1, 2) - p0.reshape(-1, 2), axis=1)
                                         <= config.fb_px)
    return np.where(ok[:, None], q1, k1).astype(np.float32), ok


def guiding_homography(kpts0: np.ndarray, kpts1: np.ndarray, threshold_px: float) -> np.ndarray | None:
    """``H`` with ``kpts1 ~ H kpts0`` fitted by RANSAC, or None when it is unusable for warping: fewer than 8
    matches or inliers, fewer than 10 % inliers, or a degenerate, mirroring or extreme local scale (the
    determinant of its linear part outside [1/16, 16])."""
    if len(kpts0) < 8:
        return None
    H, inliers = cv2.findHomography(np.asarray(kpts0, np.float32), np.asarray(kpts1, np.float32), cv2.RANSAC,
                                    threshold_px, maxIters=2000, confidence=0.999)
    if H is None or inliers is None or not np.all(np.isfinite(H)) or abs(H[2, 2]) < 1e-12:
        return None
    n_in = int(inliers.sum())
    if n_in < 8 or n_in < 0.1 * len(kpts0):
        return None
    H = H / H[2, 2]
    det = float(np.linalg.det(H[:2, :2]))
    return H if 1 / 16 <= det <= 16 else None


def polish_guided(gray0: np.ndarray, gray1: np.ndarray, kpts0: np.ndarray, kpts1: np.ndarray,
                  config: KltConfig = KltConfig()) -> tuple[np.ndarray, np.ndarray]:
    """:func:`polish` through a homography pre-warp (``config.guided``; plain :func:`polish` when no usable
    homography exists). Same outputs: points of image 1 and the mask of confirmed matches."""
    k1 = np.asarray(kpts1, np.float32).reshape(-1, 2)
    H = guiding_homography(kpts0, k1, config.homography_px) if config.guided else None
    if H is None:
        return polish(gray0, gray1, kpts0, k1, config)
    H_inv = np.linalg.inv(H)
    warped1 = cv2.warpPerspective(gray1, H_inv, (gray0.shape[1], gray0.shape[0]), flags=cv2.INTER_LINEAR)
    start = cv2.perspectiveTransform(k1.reshape(-1, 1, 2), H_inv).reshape(-1, 2)  # the matcher's points, warped
    q, ok = polish(gray0, warped1, kpts0, start, config)
    q = cv2.perspectiveTransform(q.reshape(-1, 1, 2).astype(np.float64), H).reshape(-1, 2).astype(np.float32)
    ok &= np.all(np.isfinite(q), axis=1)
    ok &= np.linalg.norm(q - k1, axis=1) <= config.max_shift_px  # the limit holds in image 1's own pixels
    return np.where(ok[:, None], q, k1).astype(np.float32), ok
