"""6x6 covariances of relative poses from their inlier residuals.

Noise model (per keyframe pair). Every match's residual is ``r_i = e_i + G_i b``:

- ``e_i``: independent keypoint noise. Its variance ``s^2`` is estimated from the inlier residuals, corrected for the
  inlier threshold that truncated them (the inliers of a thresholded model are by construction the small
  residuals: a plain mean square underestimates the variance, by 23 % at a threshold of 2 sigma).
- ``b``: a 2-D offset shared by all matches of the pair (in image 1, normalised units, per-axis variance
  ``rho * s_m^2`` with ``s_m^2`` the per-axis variance of a match's displacement). It models the correlated part of
  a matcher's localisation error: measured on rendered sequences with exact ground truth, SIFT's residuals of two
  different matches correlate by ~1-2 % at any distance, which is negligible per match but, summed over hundreds of
  matches, is the dominant error of the pose (a shared offset does not average out: independent noise shrinks like
  ``1/n``, the shared part does not shrink at all). ``rho`` is ``VOConfig.cov_match_correlation``.

The covariance is the sandwich ``A J^T Sigma_r J A`` with ``A = (J^T J)^-1`` (the estimate is least squares on the
residuals), i.e. ``s^2 A + var_b A (J^T G)(J^T G)^T A``. The pose is ``T_1_0`` (``x1 = R x0 + t``) and the
perturbation follows :mod:`casmtr_ros.geometry.se3` (parent frame = camera 1). All residuals are in normalised image
coordinates.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq
from scipy.special import erf

from casmtr_ros.geometry.se3 import exp_so3, skew

MAX_TRUNCATION_FACTOR = 4.0  # the threshold correction never scales the variance by more than this


def sampson_residuals(R: np.ndarray, t: np.ndarray, x0n: np.ndarray, x1n: np.ndarray) -> np.ndarray:
    """Signed Sampson distances (normalised units) of correspondences under ``E = [t]x R``."""
    E = skew(t) @ R
    h0 = np.concatenate([x0n, np.ones((len(x0n), 1))], axis=1)
    h1 = np.concatenate([x1n, np.ones((len(x1n), 1))], axis=1)
    Ex0 = h0 @ E.T
    Etx1 = h1 @ E
    num = np.sum(h1 * Ex0, axis=1)
    den = np.sqrt(Ex0[:, 0] ** 2 + Ex0[:, 1] ** 2 + Etx1[:, 0] ** 2 + Etx1[:, 1] ** 2)
    return num / np.maximum(den, 1e-15)


def tangent_basis(t: np.ndarray) -> np.ndarray:
    """3x2 orthonormal basis of the plane orthogonal to the unit vector ``t``."""
    t = t / np.linalg.norm(t)
    a = np.array([1.0, 0.0, 0.0]) if abs(t[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    b1 = np.cross(t, a)
    b1 /= np.linalg.norm(b1)
    return np.stack([b1, np.cross(t, b1)], axis=1)


def _truncated_fraction(a: float, dim: int) -> float:
    """``E[r^2 | |r| < a sigma] / sigma^2`` per axis for a ``dim``-D isotropic Gaussian (dim 1 or 2)."""
    if dim == 1:
        p = erf(a / np.sqrt(2.0))
        return 1.0 - 2.0 * a * np.exp(-0.5 * a * a) / np.sqrt(2.0 * np.pi) / max(p, 1e-300)
    q = np.exp(-0.5 * a * a)
    return 1.0 - 0.5 * a * a * q / max(1.0 - q, 1e-300)


def residual_variance(r: np.ndarray, dof: int, threshold: float | None = None) -> float:
    """Per-axis variance of the residuals ``r`` ((N,) or (N, 2)) of a fit with ``dof`` parameters.

    With ``threshold`` (the inlier threshold on ``|r|`` that selected them) the variance is that of the Gaussian
    whose truncation at the threshold has the observed mean square (at most ``MAX_TRUNCATION_FACTOR`` times it).
    """
    r = np.asarray(r, np.float64)
    dim = 1 if r.ndim == 1 else r.shape[1]
    m = float(np.sum(r * r)) / max(r.size - dof, 1)
    if threshold is None or not np.isfinite(threshold) or m <= 0:
        return m
    c = float(threshold)

    def excess(sigma: float) -> float:
        return sigma * sigma * _truncated_fraction(c / sigma, dim) - m

    hi = np.sqrt(MAX_TRUNCATION_FACTOR * m)
    if excess(hi) < 0:  # residuals nearly uniform inside the threshold: not Gaussian-like, use the cap
        return MAX_TRUNCATION_FACTOR * m
    return brentq(excess, np.sqrt(m), hi, xtol=1e-6 * np.sqrt(m)) ** 2 if excess(np.sqrt(m)) < 0 else m


def field_basis(x1n: np.ndarray) -> np.ndarray:
    """(N, 3) basis of the shared error field over the image-1 points: 1 and the centred coordinates scaled to unit
    mean square (each basis function has unit mean square over the points)."""
    c = x1n - x1n.mean(axis=0)
    rms = np.sqrt(np.maximum(np.mean(c * c, axis=0), 1e-18))
    return np.concatenate([np.ones((len(x1n), 1)), c / rms], axis=1)


def _field_jacobian(G: np.ndarray, x1n: np.ndarray) -> np.ndarray:
    """(N*m, 6) derivative of the residuals (m per point, ``G``: (N, m, 2) = d r_i / d x1_i) w.r.t. the 6 field
    coefficients (offset, x- and y-gradient, each 2-D)."""
    Phi = field_basis(x1n)
    F = np.einsum("nmj,nk->nmkj", G, Phi)  # (N, m, 3, 2)
    return F.reshape(len(x1n) * G.shape[1], 6)


def _sandwich(J: np.ndarray, JtG: np.ndarray, s2: float, var_b: float) -> np.ndarray:
    """``s2 A + var_b A (J^T G)(J^T G)^T A`` with ``A = (J^T J)^-1``."""
    # pinv guards against an exactly rank-deficient JtJ (degenerate geometry): the caller checks the result.
    A = np.linalg.pinv(J.T @ J, rcond=1e-12)
    AJG = A @ JtG
    cov = s2 * A + var_b * AJG @ AJG.T
    return 0.5 * (cov + cov.T)


def _essential_params(R: np.ndarray, t: np.ndarray, B: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    R_p = exp_so3(p[:3]) @ R
    t_p = t + B @ p[3:]
    return R_p, t_p / np.linalg.norm(t_p)


def essential_covariance(
    R: np.ndarray, t_unit: np.ndarray, x0n: np.ndarray, x1n: np.ndarray, scale_sigma: float,
    threshold: float | None = None, match_correlation: float = 0.0, cov_scale: float = 1.0,
) -> np.ndarray:
    """Covariance of ``(R, t)`` with unit ``t`` from the Sampson residuals of the inliers.

    The five observable parameters (rotation and the direction of ``t``) come from the residuals (``threshold``:
    the inlier threshold in normalised units; ``match_correlation``: ``rho`` of the module docstring); the
    variance along ``t`` (the scale, unobservable from one monocular pair) is ``scale_sigma**2``.
    """
    B = tangent_basis(t_unit)
    r0 = sampson_residuals(R, t_unit, x0n, x1n)
    J = np.zeros((len(r0), 5))
    eps = 1e-6
    p = np.zeros(5)
    for k in range(5):
        p[k] = eps
        Rp, tp = _essential_params(R, t_unit, B, p)
        p[k] = -eps
        Rm, tm = _essential_params(R, t_unit, B, p)
        p[k] = 0.0
        J[:, k] = (sampson_residuals(Rp, tp, x0n, x1n) - sampson_residuals(Rm, tm, x0n, x1n)) / (2 * eps)
    G = np.zeros((len(r0), 1, 2))  # d r_i / d x1_i: how a shared error field in image 1 moves each residual
    for k in range(2):
        d = np.zeros(2)
        d[k] = eps
        G[:, 0, k] = (sampson_residuals(R, t_unit, x0n, x1n + d) - sampson_residuals(R, t_unit, x0n, x1n - d)) / (
            2 * eps)
    s2 = cov_scale * residual_variance(r0, 5, threshold)
    # A Sampson residual has the variance of one keypoint coordinate; a match's displacement has twice that.
    cov5 = _sandwich(J, J.T @ _field_jacobian(G, x1n), s2, match_correlation * 2.0 * s2 / 3.0)
    cov = np.zeros((6, 6))
    cov[:3, :3] = B @ cov5[3:, 3:] @ B.T + scale_sigma**2 * np.outer(t_unit, t_unit)
    cov[:3, 3:] = B @ cov5[3:, :3]
    cov[3:, :3] = cov[:3, 3:].T
    cov[3:, 3:] = cov5[:3, :3]
    return 0.5 * (cov + cov.T)


def reprojection_residuals(R: np.ndarray, t: np.ndarray, X0: np.ndarray, x1n: np.ndarray) -> np.ndarray:
    """``(N, 2)`` reprojection residuals (normalised units) of 3D points of camera 0 seen in camera 1."""
    P = X0 @ R.T + t
    return P[:, :2] / P[:, 2:3] - x1n


def _projection_jacobian(P: np.ndarray) -> np.ndarray:
    """(N, 2, 3) derivative of ``P[:2] / P[2]`` w.r.t. ``P``."""
    z = P[:, 2]
    J = np.zeros((len(P), 2, 3))
    J[:, 0, 0] = 1.0 / z
    J[:, 1, 1] = 1.0 / z
    J[:, 0, 2] = -P[:, 0] / z**2
    J[:, 1, 2] = -P[:, 1] / z**2
    return J


def pnp_covariance(
    R: np.ndarray, t: np.ndarray, X0: np.ndarray, x1n: np.ndarray, threshold: float | None = None,
    match_correlation: float = 0.0, cov_scale: float = 1.0,
) -> np.ndarray:
    """Covariance of a metric ``(R, t)`` from the reprojection residuals of its inlier 3D-2D correspondences.

    The residuals carry the noise of both keypoints and of the depths. Depth noise is not the same for every point:
    a relative depth error moves point ``i``'s projection along ``u_i = dr_i / dlog(d_i)`` (zero for a point on the
    epipole, largest for large parallax), and PnP treats the 3-D points as exact. Both parts are measured from the
    residuals: ``E|r_i|^2 = a + b |u_i|^2`` (non-negative least squares; ``b`` is the relative depth variance),
    and the per-point covariance ``a/2 I + b u_i u_i^T`` enters the sandwich of the least-squares estimate.
    ``threshold`` is the inlier threshold on the residual norm (normalised units).
    """
    RX = X0 @ R.T
    P = RX + t
    Jp = _projection_jacobian(P)
    dP = np.zeros((len(P), 3, 6))
    dP[:, :, :3] = np.eye(3)
    dP[:, :, 3:] = -np.stack([skew(v) for v in RX])
    Jn = np.einsum("nij,njk->nik", Jp, dP)
    r = reprojection_residuals(R, t, X0, x1n)
    s2 = residual_variance(r, 6, threshold)
    u = np.einsum("nij,nj->ni", Jp, RX)  # residual change per unit relative depth error
    a, b = _depth_noise_split(np.sum(r * r, axis=1), np.sum(u * u, axis=1))
    k = cov_scale * s2 / max(float(np.mean(np.sum(r * r, axis=1))) / 2.0, 1e-300)  # threshold and calibration
    J = Jn.reshape(-1, 6)
    A = np.linalg.pinv(J.T @ J, rcond=1e-12)
    Ju = np.einsum("nik,ni->nk", Jn, u)  # (N, 6): J_i^T u_i
    meat = k * (0.5 * a * (J.T @ J) + b * (Ju.T @ Ju))
    G = -np.broadcast_to(np.eye(2), (len(P), 2, 2))
    AJG = A @ (J.T @ _field_jacobian(G, x1n))
    cov = A @ meat @ A + match_correlation * cov_scale * s2 / 3.0 * AJG @ AJG.T
    return 0.5 * (cov + cov.T)


def _depth_noise_split(r2: np.ndarray, u2: np.ndarray) -> tuple[float, float]:
    """Non-negative ``(a, b)`` of ``r2 ~ a + b u2`` by least squares (``a``: 2-D image noise, ``b``: depth)."""
    M = np.stack([np.ones_like(u2), u2], axis=1)
    a, b = np.linalg.lstsq(M, r2, rcond=None)[0]
    if b <= 0 or a <= 0:  # one of the two explains everything
        return (float(np.mean(r2)), 0.0) if b <= 0 else (0.0, float(r2 @ u2 / max(u2 @ u2, 1e-300)))
    return float(a), float(b)


def rotation_covariance(
    R: np.ndarray, x0n: np.ndarray, x1n: np.ndarray, translation_sigma: float, threshold: float | None = None,
    match_correlation: float = 0.0, cov_scale: float = 1.0,
) -> np.ndarray:
    """Covariance of a rotation-only model; translation variance ``translation_sigma**2`` (an upper bound of the
    translation the data cannot resolve, given by the caller from the parallax threshold and the scene depth)."""
    b0 = np.concatenate([x0n, np.ones((len(x0n), 1))], axis=1)
    RX = b0 @ R.T
    Jp = _projection_jacobian(RX)
    dP = -np.stack([skew(v) for v in RX])
    Jn = np.einsum("nij,njk->nik", Jp, dP)
    r = RX[:, :2] / RX[:, 2:3] - x1n
    s2 = cov_scale * residual_variance(r, 3, threshold)
    cov = np.zeros((6, 6))
    cov[:3, :3] = np.eye(3) * translation_sigma**2
    G = -np.broadcast_to(np.eye(2), (len(RX), 2, 2))
    cov[3:, 3:] = _sandwich(Jn.reshape(-1, 3), Jn.reshape(-1, 3).T @ _field_jacobian(G, x1n), s2,
                            match_correlation * s2 / 3.0)
    return cov


def depth_scale_gradient(R: np.ndarray, t: np.ndarray, x0n: np.ndarray, x1n: np.ndarray, min_angle_rad: float = 0.0,
                         camera: int = 1) -> np.ndarray:
    """(6,) derivative of the mean log-depth (in camera ``camera``, 0 or 1) of points triangulated with
    ``T_1_0 = (R, t)`` w.r.t. the pose perturbation (ROS order, parent frame): how an error of the pose changes the
    scale of the depths (a rotation error changes every ray angle, so every depth, not only the length of ``t``).

    Only rays at least ``min_angle_rad`` apart count (as for the keyframe depths of the monocular pipeline).
    """
    from casmtr_ros.geometry.relative_pose import triangulate_depths

    d0, d1, ang = triangulate_depths(R, t, x0n, x1n)
    ok = np.isfinite(d1) & (d0 > 0) & (d1 > 0) & (ang >= min_angle_rad)
    if not ok.any():
        return np.zeros(6)
    x0n, x1n = x0n[ok], x1n[ok]
    grad = np.zeros(6)
    eps = 1e-6
    for k in range(6):
        out = []
        for sign in (1.0, -1.0):
            p = np.zeros(6)
            p[k] = sign * eps
            d = triangulate_depths(exp_so3(p[3:]) @ R, t + p[:3], x0n, x1n)[camera]
            out.append(np.log(np.abs(d)))
        grad[k] = float(np.mean(out[0] - out[1])) / (2 * eps)
    return grad
