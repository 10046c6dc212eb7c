"""Photometric augmentation, random homographies and resize-and-crop with intrinsics bookkeeping (numpy/cv2)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PhotometricConf:
    """Ranges of the photometric changes applied independently to each image of a pair."""

    brightness: float = 0.25  # additive, fraction of 255
    contrast: tuple[float, float] = (0.6, 1.5)
    gamma: tuple[float, float] = (0.7, 1.4)
    saturation: tuple[float, float] = (0.5, 1.5)
    noise_std: float = 6.0  # grey levels
    blur_prob: float = 0.25
    shade_prob: float = 0.3  # smooth multiplicative illumination gradient


def photometric(img: np.ndarray, rng: np.random.Generator, conf: PhotometricConf = PhotometricConf()) -> np.ndarray:
    """Random brightness, contrast, gamma, saturation, shading, blur and noise on an ``HxWx3`` uint8 image."""
    x = img.astype(np.float32) / 255.0
    grey = x.mean(-1, keepdims=True)
    x = grey + (x - grey) * rng.uniform(*conf.saturation)
    x = (x - 0.5) * rng.uniform(*conf.contrast) + 0.5 + rng.uniform(-conf.brightness, conf.brightness)
    if rng.random() < conf.shade_prob:
        h, w = x.shape[:2]
        gx, gy = rng.uniform(-0.5, 0.5, 2)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        x = x * (1.0 + gx * (xx / w - 0.5) + gy * (yy / h - 0.5))[..., None]
    x = np.clip(x, 0.0, 1.0) ** rng.uniform(*conf.gamma)
    if rng.random() < conf.blur_prob:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.5))
    x = x * 255.0 + rng.normal(0.0, rng.uniform(0, conf.noise_std), x.shape).astype(np.float32)
    return np.clip(x, 0, 255).astype(np.uint8)


def random_homography(w: int, h: int, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """A random 3x3 homography mapping an ``w x h`` image onto itself with rotation, scale, shear and perspective.

    ``strength`` in [0, 1] scales every component; 1 gives up to ~35 deg rotation, 0.5-1.6x scale and strong
    perspective (corner moves up to ~25 % of the size).
    """
    cx, cy = w / 2.0, h / 2.0
    ang = np.deg2rad(rng.uniform(-35, 35) * strength)
    s = np.exp(rng.uniform(np.log(0.55), np.log(1.6)) * strength)
    sh = rng.uniform(-0.15, 0.15) * strength
    A = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]) @ np.array([[1, sh], [0, 1]]) * s
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = (src - [cx, cy]) @ A.T + [cx, cy]
    dst += rng.uniform(-0.25, 0.25, (4, 2)) * [w, h] * strength
    dst += rng.uniform(-0.15, 0.15, 2) * [w, h] * strength
    return cv2.getPerspectiveTransform(src, dst.astype(np.float32)).astype(np.float64)


def resize_crop_params(hw: tuple[int, int], out_hw: tuple[int, int], rng: np.random.Generator | None,
                       zoom: tuple[float, float] = (1.0, 1.0)) -> tuple[float, int, int]:
    """Scale ``s`` and crop offset ``(x0, y0)`` so that a ``hw`` image, scaled by ``s``, covers ``out_hw``.

    ``s`` = cover scale x a random zoom from ``zoom``; the crop is random (centred when ``rng`` is None).
    """
    h, w = hw
    oh, ow = out_hw
    s = max(oh / h, ow / w) * (rng.uniform(*zoom) if rng is not None else 1.0)
    sh, sw = max(oh, round(h * s)), max(ow, round(w * s))
    if rng is None:
        return s, (sw - ow) // 2, (sh - oh) // 2
    return s, int(rng.integers(0, sw - ow + 1)), int(rng.integers(0, sh - oh + 1))


def scale_crop_matrix(s: float, x0: int, y0: int) -> np.ndarray:
    """3x3 pixel map of 'scale by s (pixel centres at integers) then crop at (x0, y0)'."""
    return np.array([[s, 0, (s - 1) / 2 - x0], [0, s, (s - 1) / 2 - y0], [0, 0, 1]], np.float64)


def apply_affine(img: np.ndarray, M: np.ndarray, out_hw: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Warp ``img`` with the 3x3 pixel map ``M`` (source -> output) into an ``out_hw`` image (zeros outside)."""
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    if not nearest and M[0, 0] < 0.8:
        flags = cv2.INTER_AREA if np.allclose(M[[1, 0], [0, 1]], 0) else cv2.INTER_LINEAR
    return cv2.warpPerspective(img, M, (out_hw[1], out_hw[0]), flags=flags, borderMode=cv2.BORDER_CONSTANT)


def resize_depth_nearest(depth: np.ndarray, M: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Depth resampled through ``M`` with nearest lookup (never blends depths across discontinuities)."""
    return cv2.warpPerspective(depth.astype(np.float32), M, (out_hw[1], out_hw[0]), flags=cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_CONSTANT)
