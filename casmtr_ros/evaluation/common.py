"""Helpers shared by the pair and homography evaluations: AUC of an error curve, image loading, resized matching,
and a plain-text side-by-side table."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from casmtr_ros.matching.base import Matcher
from casmtr_ros.types import Matches


def error_auc(errors: Sequence[float], thresholds: Sequence[float]) -> dict[str, float]:
    """Area under the cumulative error curve up to each threshold, normalised to [0, 1] (LoFTR/SuperGlue
    convention; failures count as infinite error). Keys are ``"auc@<threshold>"``."""
    errs = np.sort(np.asarray(errors, np.float64))
    n = len(errs)
    out = {}
    for thr in thresholds:
        if n == 0:
            out[f"auc@{thr:g}"] = 0.0
            continue
        recall = np.arange(1, n + 1) / n
        x = np.r_[0.0, errs]
        y = np.r_[0.0, recall]
        last = int(np.searchsorted(x, thr))
        xs = np.r_[x[:last], thr]
        ys = np.r_[y[:last], y[last - 1]]
        out[f"auc@{thr:g}"] = float(np.trapezoid(ys, xs) / thr)
    return out


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as grey ``HxW`` or ``HxWx3`` RGB uint8; clear error when unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def resize_scale(shape: tuple[int, ...], resize: Sequence[int] | None, short_side: int | None = None
                 ) -> tuple[float, float]:
    """``(sx, sy)`` factors for ``resize`` = ``[longest side]`` or ``[width, height]``, or ``short_side``."""
    h, w = shape[:2]
    if short_side:
        s = short_side / min(h, w)
        return s, s
    if not resize:
        return 1.0, 1.0
    if len(resize) == 1:
        s = resize[0] / max(h, w)
        return s, s
    return resize[0] / w, resize[1] / h


def apply_scale(image: np.ndarray, sx: float, sy: float) -> np.ndarray:
    if sx == 1.0 and sy == 1.0:
        return image
    size = (max(8, round(image.shape[1] * sx)), max(8, round(image.shape[0] * sy)))
    interp = cv2.INTER_AREA if sx < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interp)


def timed_match(matcher: Matcher, image0: np.ndarray, image1: np.ndarray) -> tuple[Matches, float]:
    """Matches and the wall time of ``matcher.match`` in seconds (synchronising CUDA when torch uses it)."""
    import sys

    torch = sys.modules.get("torch")
    sync = torch is not None and torch.cuda.is_available()
    if sync:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    matches = matcher.match(image0, image1)
    if sync:
        torch.cuda.synchronize()
    return matches, time.perf_counter() - t0


def format_table(rows: list[dict[str, object]], columns: list[tuple[str, str, str]]) -> str:
    """A text table; ``columns`` are ``(key, header, format)`` such as ``("auc@5", "AUC@5", "{:.1%}")``."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        line = []
        for key, _, fmt in columns:
            v = r.get(key)
            line.append("-" if v is None else fmt.format(v))
        cells.append(line)
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


DEFAULT_MATCHER = "casmtr-4c-lite"
FALLBACK_MATCHER = "sift"
# Options the VO front ends (the node's parameter defaults, `replay`, `demo`) give a matcher that declares them
# unless the user sets them: consecutive keyframes are small-baseline pairs, where the Lucas-Kanade polish pays.
# The matcher benchmarks (`eval-pairs`, `eval-homography`, `bench`) use the matchers' own defaults.
VO_MATCHER_DEFAULTS: dict[str, object] = {"klt_refine": True}


def parse_options(items: Sequence[str] | None) -> dict[str, object]:
    """``["key=value", ...]`` to a dict, values parsed as YAML scalars (``640`` -> int, ``null`` -> None)."""
    import yaml

    out: dict[str, object] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def vo_matcher_options(name: str | None, options: dict[str, object] | None = None) -> dict[str, object]:
    """``options`` plus the :data:`VO_MATCHER_DEFAULTS` that matcher ``name`` (``None`` = the default) declares."""
    from casmtr_ros.matching import available_matchers
    from casmtr_ros.matching.base import declared_options

    name = name or DEFAULT_MATCHER
    declared = declared_options(name) if name in available_matchers() else {}
    return {**{k: v for k, v in VO_MATCHER_DEFAULTS.items() if k in declared}, **(options or {})}


def make_matcher(name: str | None, weights: str | None = None, options: dict[str, object] | None = None
                 ) -> tuple[Matcher, str]:
    """Build a matcher by name; ``None`` = :data:`DEFAULT_MATCHER` when its shipped weights load, else SIFT.

    Names of the optional benchmark peers (``xfeat``, ``xfeat-lighterglue``, ``disk-lightglue``,
    ``aliked-lightglue``; :mod:`casmtr_ros.benchmark.peers`) are accepted too, so they go through the same
    estimator in the same run; they raise ImportError with the install hint when their package is missing.

    Returns the matcher and a note (empty unless the default fell back). ``weights`` and ``options`` go into the
    matcher's configuration (a matcher without a ``weights`` option refuses it with a clear error).
    """
    from casmtr_ros.matching import available_matchers, build_matcher

    conf = dict(options or {})
    if weights is not None:
        conf["weights"] = weights
    if name is not None:
        from casmtr_ros.benchmark.peers import PEERS

        if name in PEERS and name not in available_matchers():  # an optional learned peer, for comparisons
            if weights is not None:
                raise ValueError(f"{name} uses the weights inside its package; --weights is for CasMTR matchers")
            return PEERS[name](conf or None), ""
        return build_matcher(name, conf=conf), ""
    if DEFAULT_MATCHER in available_matchers():
        try:
            return build_matcher(DEFAULT_MATCHER, conf=conf), ""
        except (ValueError, FileNotFoundError, OSError, RuntimeError) as exc:
            note = f"note: {DEFAULT_MATCHER} unavailable ({str(exc).splitlines()[0]}); using {FALLBACK_MATCHER}"
    else:
        note = f"note: {DEFAULT_MATCHER} is not registered in this installation; using {FALLBACK_MATCHER}"
    return build_matcher(FALLBACK_MATCHER), note
