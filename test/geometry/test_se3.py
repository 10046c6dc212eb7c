"""First-order covariance propagation Jacobians against finite differences of the actual operations."""

import numpy as np

from casmtr_ros.geometry.se3 import compose_jacobians, exp_so3, invert, invert_jacobian, log_so3, pose_matrix


def _perturb(T: np.ndarray, xi: np.ndarray) -> np.ndarray:
    return pose_matrix(exp_so3(xi[3:]) @ T[:3, :3], T[:3, 3] + xi[:3])


def _delta(T_ref: np.ndarray, T: np.ndarray) -> np.ndarray:
    return np.concatenate([T[:3, 3] - T_ref[:3, 3], log_so3(T[:3, :3] @ T_ref[:3, :3].T)])


def _numeric(f, T: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    J = np.zeros((6, 6))
    for k in range(6):
        xi = np.zeros(6)
        xi[k] = eps
        J[:, k] = (_delta(f(T), f(_perturb(T, xi))) - _delta(f(T), f(_perturb(T, -xi)))) / (2 * eps)
    return J


def test_invert_and_compose_jacobians() -> None:
    rng = np.random.default_rng(3)
    A = pose_matrix(exp_so3(rng.normal(size=3)), rng.normal(size=3) * 2)
    B = pose_matrix(exp_so3(rng.normal(size=3)), rng.normal(size=3) * 2)
    assert np.allclose(invert_jacobian(A), _numeric(invert, A), atol=1e-6)
    Ja, Jb = compose_jacobians(A, B)
    assert np.allclose(Ja, _numeric(lambda T: T @ B, A), atol=1e-6)
    assert np.allclose(Jb, _numeric(lambda T: A @ T, B), atol=1e-6)
