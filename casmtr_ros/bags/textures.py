"""Procedural textures for rendered scenes: multi-scale noise, shapes and text-like marks, all seeded.

Every function is deterministic for a given seed and returns ``HxWx3`` RGB uint8 (or ``HxW`` with
``color=False``). :func:`load_texture` reads an image file instead (any format OpenCV reads).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

_GLYPHS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789#&@%"
_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX)


def noise_texture(size: tuple[int, int], rng: np.random.Generator, octaves: int = 6) -> np.ndarray:
    """Multi-scale value noise in [0, 1], ``HxWx3`` float32: octaves from coarse blobs to fine grain."""
    h, w = size
    out = np.zeros((h, w, 3), np.float32)
    total = 0.0
    for o in range(octaves):
        cells = 2 ** (o + 2)
        small = rng.random((max(2, cells * h // max(h, w)), max(2, cells * w // max(h, w)), 3), dtype=np.float32)
        amp = 0.6**o
        out += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
    out /= total
    lo, hi = np.percentile(out, (1, 99))
    return np.clip((out - lo) / max(hi - lo, 1e-6), 0, 1)


def _random_color(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def draw_shapes(img: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Draw ``count`` random filled and outlined circles, rectangles, polygons and lines in place."""
    h, w = img.shape[:2]
    s = min(h, w, 512)
    for _ in range(count):
        kind = rng.integers(0, 4)
        color = _random_color(rng)
        thick = int(rng.choice([-1, -1, 1, 2, 3, 5]))
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        r = int(rng.integers(s // 80 + 2, s // 8 + 3))
        if kind == 0:
            cv2.circle(img, c, r, color, thick, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, c, (c[0] + int(rng.integers(-2 * r, 2 * r)), c[1] + int(rng.integers(-r, r))), color,
                          thick, cv2.LINE_AA)
        elif kind == 2:
            n = int(rng.integers(3, 7))
            pts = (np.array(c) + rng.integers(-r, r + 1, (n, 2))).astype(np.int32)
            if thick < 0:
                cv2.fillPoly(img, [pts], color, cv2.LINE_AA)
            else:
                cv2.polylines(img, [pts], True, color, thick, cv2.LINE_AA)
        else:
            end = (c[0] + int(rng.integers(-3 * r, 3 * r)), c[1] + int(rng.integers(-3 * r, 3 * r)))
            cv2.line(img, c, end, color, max(thick, 1), cv2.LINE_AA)


def draw_text(img: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Draw ``count`` random text-like strings (signs, labels) in place."""
    h, w = img.shape[:2]
    for _ in range(count):
        text = "".join(rng.choice(list(_GLYPHS), int(rng.integers(2, 9))))
        scale = float(rng.uniform(0.5, 2.5)) * min(h, w, 512) / 512
        org = (int(rng.integers(0, w - 20)), int(rng.integers(20, h)))
        cv2.putText(img, text, org, int(rng.choice(_FONTS)), scale, _random_color(rng), max(1, int(2 * scale)),
                    cv2.LINE_AA)


def procedural_texture(size: tuple[int, int] = (1024, 1024), seed: int = 0, shapes: int = 150, text: int = 40,
                       color: bool = True) -> np.ndarray:
    """A feature-rich texture: tinted multi-scale noise, then shapes, then text-like marks.

    Args:
        size: ``(height, width)`` in texels.
        seed: random seed (the same seed gives the same texture).
        shapes, text: how many shapes and strings to draw.
        color: ``HxWx3`` RGB when true, ``HxW`` grey otherwise.
    """
    rng = np.random.default_rng(seed)
    base = noise_texture(size, rng)
    tint = rng.uniform(0.4, 1.0, 3).astype(np.float32)
    img = np.ascontiguousarray((255 * (0.25 + 0.75 * base * tint)).clip(0, 255).astype(np.uint8))
    draw_shapes(img, rng, shapes)
    draw_text(img, rng, text)
    if not color:
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return img


def load_texture(path: str | Path, max_side: int = 2048) -> np.ndarray:
    """Read an image file as an RGB uint8 texture (downscaled so its longest side is at most ``max_side``)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read texture image {path}")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    scale = max_side / max(img.shape[:2])
    if scale < 1:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return img
