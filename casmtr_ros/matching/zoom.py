"""Zoom search: rematch a pair whose first pass found few matches with one image cropped around its matches.

A matcher trained at one scale loses most matches when the two views differ strongly in scale (driving forward
by 20 KITTI frames, ~17 m: the later frame shows the middle of the earlier one magnified). Cropping the image that
sees the scene smaller around the region its first-pass matches cover, and feeding the crop at the network's input
size, brings both views back to a similar scale. Which image sees the scene smaller is not known in advance (the
first pass's few surviving matches are the ones whose scale barely changed), so both crops are tried (image 0's
first; image 1's only while image 0's has not found enough) and the pass with the most matches wins, the first
pass included. With ``merge`` a winning crop's matches are returned together with the first pass's: the crop
covers the middle of the view magnified, the first pass the rest of it, and the pose rests on both.
Model-agnostic: ``match_fn`` is any ``(image0, image1) -> Matches`` in original pixels.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from casmtr_ros.types import Matches

MIN_POINTS_FOR_CENTRE = 8  # fewer first-pass matches: crop around the image centre


@dataclass(frozen=True)
class ZoomResult:
    """The chosen matches (original pixels of the full images) and which pass gave them."""

    matches: Matches
    chosen: str  # 'full', 'zoom0' (image 0 cropped) or 'zoom1' (image 1 cropped)
    counts: dict[str, int]  # matches per pass
    merged: bool = False  # the matches are the chosen crop's followed by the first pass's


def check_factor(factor: object) -> float:
    """``factor`` as a float when it is a number in (0, 1), else ValueError."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0.0 < factor < 1.0:
        raise ValueError(f"zoom_factor must be in (0, 1), got {factor!r}")
    return float(factor)


def crop_box(hw: tuple[int, int], centre: np.ndarray, factor: float) -> tuple[int, int, int, int]:
    """``(x0, y0, w, h)``: a crop of ``factor`` times each side of an ``hw`` image, centred on ``centre (x, y)`` as
    far as the image allows (shifted inside, never clipped smaller)."""
    h, w = hw
    cw, ch = max(1, round(w * factor)), max(1, round(h * factor))
    x0 = int(np.clip(round(centre[0] - cw / 2), 0, w - cw))
    y0 = int(np.clip(round(centre[1] - ch / 2), 0, h - ch))
    return x0, y0, cw, ch


def _centre(pts: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if len(pts) >= MIN_POINTS_FOR_CENTRE:
        return np.median(pts, axis=0)
    return np.array([hw[1] / 2.0, hw[0] / 2.0])


def zoom_search(match_fn: Callable[[np.ndarray, np.ndarray], Matches], image0: np.ndarray, image1: np.ndarray,
                first: Matches, factor: float = 0.5, min_side: int = 64, enough: int | None = None,
                merge: bool = False) -> ZoomResult:
    """Match ``image0`` cropped around the median of ``first.kpts0`` against ``image1``, then ``image0`` against
    ``image1`` cropped likewise; return whichever pass (``first`` included) has the most matches, with the crops'
    points shifted back to full-image pixels. A crop with a side under ``min_side`` is skipped; once a crop's pass
    has at least ``enough`` matches (and more than the first pass) the other crop is not tried (forward motion,
    where image 0 is the one to crop, then costs one extra pass instead of two). With ``merge`` a winning crop's
    matches come back followed by the first pass's (both sets, unfiltered: a point seen by both passes counts
    twice). The result keeps the first pass's timings and confidence map and adds ``zoom_search``: the seconds of
    the extra passes."""
    factor = check_factor(factor)
    t0 = time.perf_counter()
    best, chosen = first, "full"
    counts = {"full": len(first)}
    for k, (image, pts) in enumerate(((image0, first.kpts0), (image1, first.kpts1))):
        hw = (int(image.shape[0]), int(image.shape[1]))
        x0, y0, cw, ch = crop_box(hw, _centre(pts, hw), factor)
        if min(cw, ch) < min_side:
            continue
        crop = np.ascontiguousarray(image[y0:y0 + ch, x0:x0 + cw])
        m = match_fn(crop, image1) if k == 0 else match_fn(image0, crop)
        offset = np.array([x0, y0], dtype=np.float32)
        kp0, kp1 = (m.kpts0 + offset, m.kpts1) if k == 0 else (m.kpts0, m.kpts1 + offset)
        name = f"zoom{k}"
        counts[name] = len(m)
        if len(m) > len(best):
            best, chosen = Matches(kp0, kp1, m.confidence), name
            if enough is not None and len(m) >= enough:
                break
    merged = merge and chosen != "full" and len(first) > 0
    if merged:
        best = Matches(*(np.concatenate([a, b]) for a, b in ((best.kpts0, first.kpts0), (best.kpts1, first.kpts1),
                                                              (best.confidence, first.confidence))))
    timings = {**first.timings, "zoom_search": time.perf_counter() - t0}
    return ZoomResult(Matches(best.kpts0, best.kpts1, best.confidence, first.confidence_map, timings), chosen, counts,
                      merged)
