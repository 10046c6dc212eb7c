"""6x6 covariances of relative poses from their inlier residuals (Gauss-Newton: ``sigma^2 (J^T J)^-1``).

``sigma^2`` is the residual variance of the inliers (sum of squares over the degrees of freedom), so the
covariance follows the data: more inliers and smaller residuals give a smaller covariance. The pose is ``T_1_0``
(``x1 = R x0 + t``) and the perturbation follows :mod:`casmtr_ros.geometry.se3` (parent frame = camera 1).
All residuals are in normalised image coordinates.
"""

from __future__ import annotations

import numpy as np

from casmtr_ros.geometry.se3 import exp_so3, skew


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


def _essential_params(R: np.ndarray, t: np.ndarray, B: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    R_p = exp_so3(p[:3]) @ R
    t_p = t + B @ p[3:]
    return R_p, t_p / np.linalg.norm(t_p)


def _gauss_newton_cov(J: np.ndarray, r: np.ndarray, dof: int) -> np.ndarray:
    sigma2 = float(r @ r) / max(len(r) - dof, 1)
    JtJ = J.T @ J
    # pinv guards against an exactly rank-deficient JtJ (degenerate geometry): the caller checks the result.
    return sigma2 * np.linalg.pinv(JtJ, rcond=1e-12)


def essential_covariance(
    R: np.ndarray, t_unit: np.ndarray, x0n: np.ndarray, x1n: np.ndarray, scale_sigma: float
) -> np.ndarray:
    """Covariance of ``(R, t)`` with unit ``t`` from the Sampson residuals of the inliers.

    The five observable parameters (rotation and the direction of ``t``) come from the residuals; the variance
    along ``t`` (the unobservable monocular scale) is ``scale_sigma**2``.
    """
    B = tangent_basis(t_unit)
    p0 = np.zeros(5)
    r0 = sampson_residuals(R, t_unit, x0n, x1n)
    J = np.zeros((len(r0), 5))
    eps = 1e-6
    for k in range(5):
        dp = p0.copy()
        dp[k] = eps
        Rp, tp = _essential_params(R, t_unit, B, dp)
        dp[k] = -eps
        Rm, tm = _essential_params(R, t_unit, B, dp)
        J[:, k] = (sampson_residuals(Rp, tp, x0n, x1n) - sampson_residuals(Rm, tm, x0n, x1n)) / (2 * eps)
    cov5 = _gauss_newton_cov(J, r0, 5)
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


def pnp_covariance(R: np.ndarray, t: np.ndarray, X0: np.ndarray, x1n: np.ndarray) -> np.ndarray:
    """Covariance of a metric ``(R, t)`` from the reprojection residuals of its inlier 3D-2D correspondences."""
    RX = X0 @ R.T
    P = RX + t
    Jp = _projection_jacobian(P)
    dP = np.zeros((len(P), 3, 6))
    dP[:, :, :3] = np.eye(3)
    dP[:, :, 3:] = -np.stack([skew(v) for v in RX])
    J = np.einsum("nij,njk->nik", Jp, dP).reshape(-1, 6)
    r = reprojection_residuals(R, t, X0, x1n).reshape(-1)
    return _gauss_newton_cov(J, r, 6)


def rotation_covariance(R: np.ndarray, x0n: np.ndarray, x1n: np.ndarray, translation_sigma: float) -> np.ndarray:
    """Covariance of a rotation-only model; translation variance ``translation_sigma**2`` (an upper bound of the
    translation the data cannot resolve, given by the caller from the parallax threshold and the scene depth)."""
    b0 = np.concatenate([x0n, np.ones((len(x0n), 1))], axis=1)
    RX = b0 @ R.T
    Jp = _projection_jacobian(RX)
    dP = -np.stack([skew(v) for v in RX])
    J = np.einsum("nij,njk->nik", Jp, dP).reshape(-1, 3)
    r = (RX[:, :2] / RX[:, 2:3] - x1n).reshape(-1)
    cov = np.zeros((6, 6))
    cov[:3, :3] = np.eye(3) * translation_sigma**2
    cov[3:, 3:] = _gauss_newton_cov(J, r, 3)
    return cov
