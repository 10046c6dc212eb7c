"""Visual odometry: keyframe policy, tracking state machine, odometry composition, the pipeline."""

from casmtr_ros.vo.config import VOConfig
from casmtr_ros.vo.pipeline import Pipeline
from casmtr_ros.vo.types import FrameResult, KeyframePair, Odometry, RelativePose, TrackingState

__all__ = ["FrameResult", "KeyframePair", "Odometry", "Pipeline", "RelativePose", "TrackingState", "VOConfig"]
