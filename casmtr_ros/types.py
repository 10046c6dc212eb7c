"""Plain data passed between the parts of the pipeline (no ROS, no torch).

Conventions used everywhere in the project:
- images are numpy arrays, ``HxW`` (grey) or ``HxWx3`` (RGB order), ``uint8``;
- pixel coordinates are ``(x, y)`` in the original image, float32, pixel centres at integer values;
- stamps are integer nanoseconds;
- poses ``T_a_b`` are 4x4 float64 matrices mapping points from frame ``b`` into frame ``a``;
- camera frames follow REP-103's optical convention (x right, y down, z forward).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DISTORTION_MODELS = ("none", "plumb_bob", "rational_polynomial", "equidistant")


class InputError(ValueError):
    """Raised for input the pipeline refuses (bad image, uncalibrated camera, mismatched sizes...)."""


@dataclass
class CameraModel:
    """Pinhole intrinsics with an optional distortion model.

    Attributes:
        K: 3x3 intrinsic matrix (float64).
        width, height: image size in pixels.
        distortion_model: one of ``DISTORTION_MODELS`` (ROS CameraInfo names).
        D: distortion coefficients in the ROS/OpenCV order for that model (may be empty).
    """

    K: np.ndarray
    width: int
    height: int
    distortion_model: str = "none"
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        self.D = np.asarray(self.D, dtype=np.float64).reshape(-1)
        self.validate()

    def validate(self) -> None:
        """Raise ``InputError`` when the camera is uncalibrated or malformed."""
        K = self.K
        if not np.all(np.isfinite(K)):
            raise InputError("camera K contains NaN or inf")
        if not np.any(K):
            raise InputError("camera K is all zero: the camera is uncalibrated (refusing it)")
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise InputError(f"camera focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}")
        if K[2, 2] != 1.0 or K[2, 0] != 0 or K[2, 1] != 0:
            raise InputError(f"camera K last row must be [0, 0, 1], got {K[2].tolist()}")
        if self.width <= 0 or self.height <= 0:
            raise InputError(f"camera size must be positive, got {self.width}x{self.height}")
        model = self.distortion_model or "none"
        if model not in DISTORTION_MODELS:
            raise InputError(f"unsupported distortion model {model!r}; supported: {DISTORTION_MODELS}")
        self.distortion_model = model
        if not np.all(np.isfinite(self.D)):
            raise InputError("distortion coefficients contain NaN or inf")

    @property
    def has_distortion(self) -> bool:
        return self.distortion_model != "none" and bool(np.any(self.D))


@dataclass
class Frame:
    """One camera frame entering the pipeline.

    Attributes:
        stamp_ns: acquisition time in nanoseconds.
        image: ``HxW`` or ``HxWx3`` (RGB) uint8 image.
        camera: intrinsics matching the image size.
        depth: optional ``HxW`` float32 depth in metres aligned to ``image``; NaN, inf or <= 0 = invalid.
        frame_id: the optical frame of the camera.
    """

    stamp_ns: int
    image: np.ndarray
    camera: CameraModel
    depth: np.ndarray | None = None
    frame_id: str = "camera_optical_frame"


@dataclass
class Matches:
    """Correspondences between two images, in each image's original pixel coordinates.

    Attributes:
        kpts0, kpts1: ``(N, 2)`` float32 ``(x, y)``.
        confidence: ``(N,)`` float32 in [0, 1].
        confidence_map: optional dense confidence (e.g. the 1/4 map of image 0), float32.
        timings: seconds per stage, for benchmarks and diagnostics.
    """

    kpts0: np.ndarray
    kpts1: np.ndarray
    confidence: np.ndarray
    confidence_map: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kpts0 = np.asarray(self.kpts0, dtype=np.float32).reshape(-1, 2)
        self.kpts1 = np.asarray(self.kpts1, dtype=np.float32).reshape(-1, 2)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        if not (len(self.kpts0) == len(self.kpts1) == len(self.confidence)):
            raise ValueError(
                f"inconsistent match arrays: {len(self.kpts0)}, {len(self.kpts1)}, {len(self.confidence)}"
            )

    def __len__(self) -> int:
        return len(self.kpts0)

    def subset(self, mask: np.ndarray) -> Matches:
        """Matches where ``mask`` (bool or index array) selects."""
        return Matches(
            self.kpts0[mask], self.kpts1[mask], self.confidence[mask], self.confidence_map, dict(self.timings)
        )

    @staticmethod
    def empty() -> Matches:
        return Matches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))
