"""Match pictures: two images side by side, each match a line coloured by its confidence (turbo colour map)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from casmtr_ros.types import Matches


def _to_bgr(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(np.round(image * 255.0 if image.max() <= 1.0 else image), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(image[:, :, 2::-1])  # RGB(A) -> BGR


def confidence_colors(confidence: np.ndarray) -> np.ndarray:
    """``(N, 3)`` BGR uint8 colours: low confidence blue, high confidence red."""
    c = np.clip(np.asarray(confidence, np.float32).reshape(-1), 0, 1)
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_TURBO)[:, 0]
    return lut[np.round(c * 255).astype(int)] if len(c) else np.zeros((0, 3), np.uint8)


def draw_matches(image0: np.ndarray, image1: np.ndarray, matches: Matches, inliers: np.ndarray | None = None,
                 max_matches: int = 200, title: str | None = None) -> np.ndarray:
    """Draw ``matches`` between ``image0`` (left) and ``image1`` (right); returns a BGR uint8 canvas.

    Lines are coloured by confidence; with ``inliers`` given, outliers are drawn thin and grey. At most
    ``max_matches`` matches are drawn (the most confident ones, so the picture stays readable).
    """
    a, b = _to_bgr(image0), _to_bgr(image1)
    h = max(a.shape[0], b.shape[0])
    canvas = np.zeros((h + 28, a.shape[1] + b.shape[1], 3), np.uint8)
    canvas[28:28 + a.shape[0], :a.shape[1]] = a
    canvas[28:28 + b.shape[0], a.shape[1]:] = b
    n = len(matches)
    order = np.argsort(-matches.confidence, kind="stable")[:max_matches]
    inl = np.ones(n, bool) if inliers is None else np.asarray(inliers, bool).reshape(-1)
    colors = confidence_colors(matches.confidence)
    for i in order[::-1]:  # most confident drawn last (on top)
        x0, y0 = np.rint(matches.kpts0[i]).astype(int).tolist()
        x1, y1 = np.rint(matches.kpts1[i]).astype(int).tolist()
        p0, p1 = (x0, y0 + 28), (x1 + a.shape[1], y1 + 28)
        if inl[i]:
            color = tuple(int(v) for v in colors[i])
            cv2.line(canvas, p0, p1, color, 1, cv2.LINE_AA)
            cv2.circle(canvas, p0, 2, color, -1, cv2.LINE_AA)
            cv2.circle(canvas, p1, 2, color, -1, cv2.LINE_AA)
        else:
            cv2.line(canvas, p0, p1, (110, 110, 110), 1, cv2.LINE_AA)
    text = f"{n} matches" + ("" if inliers is None else f", {int(inl.sum())} inliers")
    text += f" (drawn: {len(order)}, colour = confidence, blue low, red high)"
    if title:
        text = f"{title}: {text}"
    cv2.putText(canvas, text, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def save_matches(path: str | Path, image0: np.ndarray, image1: np.ndarray, matches: Matches,
                 inliers: np.ndarray | None = None, **kwargs: object) -> Path:
    """Draw with :func:`draw_matches` and write a PNG; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), draw_matches(image0, image1, matches, inliers, **kwargs)):
        raise OSError(f"cannot write {path}")
    return path
