"""The visual-odometry pipeline: frames in, keyframe pairs and odometry out (plain Python, no ROS)."""

from __future__ import annotations

from casmtr_ros.matching.base import Matcher
from casmtr_ros.types import Frame
from casmtr_ros.vo.config import VOConfig
from casmtr_ros.vo.types import FrameResult


class Pipeline:
    """Feed frames in stamp order with :meth:`process`; :meth:`reset` starts a new segment.

    ``matcher`` is any :class:`~casmtr_ros.matching.base.Matcher` (built once, outside the per-frame path).
    ``process`` raises :class:`~casmtr_ros.types.InputError` for frames it refuses (bad image or depth, size
    mismatch with the camera, stamps going backwards); the pipeline state is unchanged by a refused frame.
    """

    def __init__(self, matcher: Matcher, config: VOConfig | None = None) -> None:
        self.matcher = matcher
        self.config = config or VOConfig()

    def process(self, frame: Frame) -> FrameResult:
        """Process one frame (interface committed first; implementation follows in the next commit)."""
        raise NotImplementedError("Pipeline.process: implementation in progress")

    def reset(self) -> None:
        """Drop the keyframe and start a new segment at the last emitted pose."""
        raise NotImplementedError("Pipeline.reset: implementation in progress")
