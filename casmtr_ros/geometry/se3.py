"""Rigid transforms and first-order covariance propagation.

Covariance convention (ROS order ``x, y, z, rx, ry, rz``): for a pose ``T_a_b = [R | t]`` the perturbation is
``t' = t + dt`` and ``R' = exp([dphi]x) R`` with ``dt`` and ``dphi`` both in frame ``a`` (the parent).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def skew(v: np.ndarray) -> np.ndarray:
    x, y, z = np.asarray(v, dtype=np.float64).reshape(3)
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def exp_so3(phi: np.ndarray) -> np.ndarray:
    return Rotation.from_rotvec(np.asarray(phi, dtype=np.float64).reshape(3)).as_matrix()


def log_so3(R: np.ndarray) -> np.ndarray:
    return Rotation.from_matrix(np.asarray(R, dtype=np.float64)).as_rotvec()


def pose_matrix(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t).reshape(3)
    return T


def invert(T: np.ndarray) -> np.ndarray:
    R, t = T[:3, :3], T[:3, 3]
    return pose_matrix(R.T, -R.T @ t)


def rotation_angle_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.linalg.norm(log_so3(R))))


def invert_jacobian(T_a_b: np.ndarray) -> np.ndarray:
    """6x6 Jacobian of the perturbation of ``T_b_a = inv(T_a_b)`` w.r.t. the perturbation of ``T_a_b``."""
    R, t = T_a_b[:3, :3], T_a_b[:3, 3]
    J = np.zeros((6, 6))
    J[:3, :3] = -R.T
    J[:3, 3:] = -R.T @ skew(t)
    J[3:, 3:] = -R.T
    return J


def compose_jacobians(T_a_b: np.ndarray, T_b_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Jacobians of the perturbation of ``T_a_c = T_a_b T_b_c`` w.r.t. those of ``T_a_b`` and ``T_b_c``."""
    R_ab = T_a_b[:3, :3]
    Ja = np.eye(6)
    Ja[:3, 3:] = -skew(R_ab @ T_b_c[:3, 3])
    Jb = np.zeros((6, 6))
    Jb[:3, :3] = R_ab
    Jb[3:, 3:] = R_ab
    return Ja, Jb


def invert_with_cov(T_a_b: np.ndarray, cov_a_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    J = invert_jacobian(T_a_b)
    return invert(T_a_b), J @ cov_a_b @ J.T


def compose_with_cov(
    T_a_b: np.ndarray, cov_a_b: np.ndarray, T_b_c: np.ndarray, cov_b_c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``T_a_c`` and its covariance, assuming independent inputs."""
    Ja, Jb = compose_jacobians(T_a_b, T_b_c)
    cov = Ja @ cov_a_b @ Ja.T + Jb @ cov_b_c @ Jb.T
    return T_a_b @ T_b_c, 0.5 * (cov + cov.T)
