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

A translating window is still biased where the view is not the dominant plane: off that plane the residual
deformation is a local scale and shear, which grows with the baseline. With ``affine`` set, the translation
track is a start: :func:`refine_affine` then fits each window with an affine warp (started at the guiding
homography's local linear map) and a gain and bias, in the original image 1, and the normalised cross-correlation
of the fitted window decides which matches stay.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class KltConfig:
    """Lucas-Kanade settings.

    ``window``: side of the square window in pixels; ``levels``: pyramid levels above the original image;
    ``iterations`` and ``epsilon``: stopping criteria; ``fb_px``: a match is kept only when tracking its polished
    point back to image 0 lands within this many pixels of the original point (0 = no check); ``max_shift_px``:
    a polished point may move at most this far from the matcher's estimate (larger moves mean Lucas-Kanade
    slipped to another structure); ``guided``: track through the homography pre-warp of :func:`polish_guided`;
    ``homography_px``: RANSAC threshold of that homography, in pixels of image 1; ``affine``: refine the tracked
    points with :func:`refine_affine` (``affine_window``, ``affine_iterations``) and keep a match only when its
    fitted window correlates with image 0's by at least ``min_zncc`` (and it stays within ``max_shift_px``).
    """

    window: int = 11
    levels: int = 1
    iterations: int = 20
    epsilon: float = 0.01
    fb_px: float = 1.0
    max_shift_px: float = 8.0
    guided: bool = True
    homography_px: float = 8.0
    affine: bool = False
    affine_window: int = 11
    affine_iterations: int = 10
    min_zncc: float = 0.9

    def __post_init__(self) -> None:
        if self.window < 3 or self.window % 2 == 0:
            raise ValueError(f"klt window must be an odd number >= 3, got {self.window}")
        if (self.levels < 0 or self.iterations < 1 or self.fb_px < 0 or self.max_shift_px <= 0
                or self.homography_px <= 0 or self.affine_window < 3 or self.affine_window % 2 == 0
                or self.affine_iterations < 1 or not -1 <= self.min_zncc <= 1):
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
    homography exists), then :func:`refine_affine` of the confirmed points when ``config.affine``. Same outputs:
    points of image 1 and the mask of confirmed matches."""
    k1 = np.asarray(kpts1, np.float32).reshape(-1, 2)
    H = guiding_homography(kpts0, k1, config.homography_px) if config.guided else None
    q, ok = _track(gray0, gray1, kpts0, k1, H, config)
    if not config.affine or not ok.any():
        return q, ok
    k0 = np.asarray(kpts0, np.float32).reshape(-1, 2)
    idx = np.flatnonzero(ok)
    A0 = homography_jacobian(H, k0[idx]) if H is not None else None
    r, zncc = refine_affine(gray0, gray1, k0[idx], q[idx], A0, config.affine_window, config.affine_iterations)
    good = (zncc >= config.min_zncc) & np.all(np.isfinite(r), axis=1)
    good &= np.linalg.norm(r - k1[idx], axis=1) <= config.max_shift_px
    ok[idx] = good
    q[idx[good]] = r[good]
    return np.where(ok[:, None], q, k1).astype(np.float32), ok


def _track(gray0: np.ndarray, gray1: np.ndarray, kpts0: np.ndarray, k1: np.ndarray, H: np.ndarray | None,
           config: KltConfig) -> tuple[np.ndarray, np.ndarray]:
    """:func:`polish` through the pre-warp by ``H^-1`` (plain :func:`polish` for ``H`` None)."""
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


def homography_jacobian(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """The linear part ``[N, 2, 2]`` of the homography ``H`` at each point ``pts [N, 2]`` (d(H x)/dx)."""
    x, y = np.asarray(pts, np.float64).reshape(-1, 2).T
    den = H[2, 0] * x + H[2, 1] * y + H[2, 2]
    num = (H[0, 0] * x + H[0, 1] * y + H[0, 2], H[1, 0] * x + H[1, 1] * y + H[1, 2])
    J = np.empty((len(x), 2, 2))
    for i in range(2):
        for j in range(2):
            J[:, i, j] = (H[i, j] * den - num[i] * H[2, j]) / den**2
    return J


def _sample(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image`` (float32) at ``xy [N, M, 2]`` (border reflected), shape ``[N, M]``."""
    xy = np.ascontiguousarray(xy, np.float32)
    rows = 32000  # OpenCV maps must stay below 32767 rows and columns
    return np.concatenate([cv2.remap(image, xy[k:k + rows], None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
                           for k in range(0, len(xy), rows)])


def _inverse_2x2(M: torch.Tensor) -> torch.Tensor:
    """Inverses of ``[N, 2, 2]`` matrices in closed form: a singular one gives inf / NaN, never an exception."""
    a, b, c, d = M[:, 0, 0], M[:, 0, 1], M[:, 1, 0], M[:, 1, 1]
    det = a * d - b * c
    return torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2) / det[:, None, None]


def refine_affine(gray0: np.ndarray, gray1: np.ndarray, kpts0: np.ndarray, kpts1: np.ndarray,
                  linear: np.ndarray | None = None, window: int = 11, iterations: int = 10
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Refine ``kpts1 [N, 2]`` as the partners of ``kpts0 [N, 2]`` with an affine warp and a gain and bias per window.

    Inverse-compositional Gauss-Newton (the Hessian comes from image 0's window once), Gaussian-weighted
    ``window`` x ``window`` windows, at most ``iterations`` steps; points whose step fell below 1e-3 px leave the
    iteration whenever they are the majority of those still in it.
    ``linear [N, 2, 2]`` starts the warp's linear part (e.g. :func:`homography_jacobian` of a guiding homography;
    None = identity). Returns ``(points1 [N, 2] float32, zncc [N])``: the refined points and the normalised
    cross-correlation between image 0's window and the fitted window of image 1 (-1 where it is undefined).
    """
    k0 = np.asarray(kpts0, np.float32).reshape(-1, 2)
    t0 = np.asarray(kpts1, np.float32).reshape(-1, 2)
    n = len(k0)
    if len(t0) != n:
        raise ValueError(f"refine_affine: {n} points in image 0 but {len(t0)} in image 1")
    if n == 0:
        return t0.copy(), np.zeros(0)
    I0, I1 = gray0.astype(np.float32), gray1.astype(np.float32)
    r = window // 2
    d = torch.arange(-r, r + 1, dtype=torch.float32)
    u = torch.stack(torch.meshgrid(d, d, indexing="xy"), -1).reshape(-1, 2)  # window offsets (x, y)
    weight = torch.exp(-(u**2).sum(1) / (2 * (window / 2) ** 2))
    at0 = k0[:, None, :] + u.numpy()[None]
    T = torch.from_numpy(_sample(I0, at0))
    Tx = torch.from_numpy(_sample(cv2.Scharr(I0, cv2.CV_32F, 1, 0) / 32, at0))
    Ty = torch.from_numpy(_sample(cv2.Scharr(I0, cv2.CV_32F, 0, 1) / 32, at0))
    ux, uy = u[None, :, 0], u[None, :, 1]
    # steepest-descent images of the incremental warp (a11, a12, a21, a22, tx, ty), then gain and bias
    J = torch.stack([Tx * ux, Tx * uy, Ty * ux, Ty * uy, Tx, Ty, T, torch.ones_like(T)], -1)  # [N, M, 8]
    JwT = (J * weight[None, :, None]).transpose(1, 2).contiguous()
    hessian = torch.bmm(JwT, J).double() + 1e-3 * torch.eye(8, dtype=torch.float64)
    step_matrix = torch.bmm(torch.linalg.inv(hessian).float(), JwT)  # [N, 8, M]
    A = (torch.eye(2).expand(n, 2, 2).clone() if linear is None
         else torch.as_tensor(np.asarray(linear, np.float32)).reshape(n, 2, 2).clone())
    t = torch.from_numpy(t0.copy())
    gain, bias = torch.ones(n), torch.zeros(n)
    eye = torch.eye(2)
    # the points still moving: their state, compacted when less than half of it still moves
    idx, S, Tw, tw, Aw, gw, bw = torch.arange(n), step_matrix, T, t.clone(), A.clone(), gain.clone(), bias.clone()
    for _ in range(iterations):
        warped = torch.from_numpy(_sample(I1, (tw[:, None, :] + torch.matmul(u, Aw.transpose(1, 2))).numpy()))
        delta = torch.bmm(S, (warped - gw[:, None] * Tw - bw[:, None])[..., None])[..., 0]
        delta[:, :6] /= gw[:, None]  # the geometric columns scale with the gain
        # compose with the inverse of the incremental warp: A <- A (I + dA)^-1, t <- t - A (I + dA)^-1 dt
        Aw = Aw @ _inverse_2x2(eye + delta[:, :4].reshape(-1, 2, 2))
        tw -= (Aw @ delta[:, 4:6, None])[..., 0]
        gw += delta[:, 6]
        bw += delta[:, 7]
        moving = delta[:, 4:6].abs().amax(1) >= 1e-3
        n_moving = int(moving.sum())
        if n_moving < len(idx) / 2:
            t[idx], A[idx], gain[idx], bias[idx] = tw, Aw, gw, bw
            if n_moving == 0:
                break
            idx, S, Tw, tw, Aw, gw, bw = (x[moving] for x in (idx, S, Tw, tw, Aw, gw, bw))
    t[idx], A[idx], gain[idx], bias[idx] = tw, Aw, gw, bw
    fitted = torch.from_numpy(_sample(I1, (t[:, None, :] + torch.matmul(u, A.transpose(1, 2))).numpy()))
    Tc, Fc = T - T.mean(1, keepdim=True), fitted - fitted.mean(1, keepdim=True)
    denom = torch.sqrt((Tc**2).sum(1) * (Fc**2).sum(1))
    zncc = torch.where(denom > 1e-6, (Tc * Fc).sum(1) / denom.clamp_min(1e-6), torch.full_like(denom, -1.0))
    return t.numpy(), zncc.double().numpy()
