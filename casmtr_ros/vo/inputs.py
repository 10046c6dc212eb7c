"""Validation of the frames entering the pipeline, and depth conversion to metres."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from casmtr_ros.matching.base import check_image
from casmtr_ros.types import Frame, InputError


@dataclass
class CheckedFrame:
    """A frame that passed validation: depth in float32 metres with invalid pixels as NaN (or None)."""

    frame: Frame
    depth: np.ndarray | None
    depth_dropped: bool  # a depth image came but had no valid pixel


def depth_to_metres(depth: np.ndarray, min_m: float, max_m: float) -> np.ndarray:
    """``16UC1`` millimetres (uint16) or ``32FC1`` metres (float) to float32 metres; invalid pixels become NaN
    (0, NaN, inf, outside ``[min_m, max_m]``)."""
    if depth.dtype == np.uint16:
        out = depth.astype(np.float32) * 1e-3
    elif np.issubdtype(depth.dtype, np.floating):
        out = depth.astype(np.float32, copy=True)
    else:
        raise InputError(f"depth: expected uint16 (mm) or float (m), got {depth.dtype}")
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(out) | (out < min_m) | (out > max_m)
    out[bad] = np.nan
    return out


def check_frame(frame: Frame, last_stamp_ns: int | None, min_depth_m: float, max_depth_m: float) -> CheckedFrame:
    """Raise :class:`InputError` with a clear message for a frame the pipeline must refuse."""
    if not isinstance(frame.stamp_ns, int | np.integer) or frame.stamp_ns < 0:
        raise InputError(f"stamp_ns must be a non-negative integer (nanoseconds), got {frame.stamp_ns!r}")
    if last_stamp_ns is not None and frame.stamp_ns <= last_stamp_ns:
        raise InputError(
            f"stamp {frame.stamp_ns} ns is not after the previous frame's {last_stamp_ns} ns "
            "(stamps going backwards or repeated; call reset() to restart on a new stream)"
        )
    if frame.image is None or getattr(frame.image, "size", 0) == 0:
        raise InputError("image is empty")
    image = check_image(frame.image, "image")
    frame.camera.validate()
    h, w = image.shape[:2]
    if (w, h) != (frame.camera.width, frame.camera.height):
        raise InputError(
            f"image size {w}x{h} does not match the camera's {frame.camera.width}x{frame.camera.height}"
        )
    depth = None
    dropped = False
    if frame.depth is not None:
        d = np.asarray(frame.depth)
        if d.ndim == 3 and d.shape[2] == 1:
            d = d[:, :, 0]
        if d.shape != (h, w):
            raise InputError(f"depth shape {d.shape} does not match the image's {(h, w)}")
        depth = depth_to_metres(d, min_depth_m, max_depth_m)
        if not np.isfinite(depth).any():
            depth, dropped = None, True
    return CheckedFrame(frame, depth, dropped)
