"""The tracking state machine: INITIALISING -> TRACKING <-> LOST, with an automatic reset policy."""

from __future__ import annotations

from casmtr_ros.vo.config import VOConfig
from casmtr_ros.vo.types import TrackingState


class Tracker:
    """Counts consecutive verification failures and frames spent lost; says when to reset.

    - a verified frame: TRACKING (a recovery when coming from LOST), or stays INITIALISING when the pipeline
      says the monocular scale is not set up yet;
    - ``lost_after_failures`` consecutive failures: LOST;
    - ``reset_after_lost_frames`` frames in LOST: :meth:`on_failure` returns True (the caller resets).
    """

    def __init__(self, config: VOConfig) -> None:
        self.config = config
        self.state = TrackingState.INITIALISING
        self.failures = 0
        self.lost_frames = 0

    def start(self, initialised: bool) -> None:
        """A new segment starts (first frame or reset)."""
        self.state = TrackingState.TRACKING if initialised else TrackingState.INITIALISING
        self.failures = 0
        self.lost_frames = 0

    def on_success(self, initialised: bool) -> bool:
        """Record a verified frame; returns True when this recovers from LOST."""
        recovered = self.state == TrackingState.LOST
        self.failures = 0
        self.lost_frames = 0
        self.state = TrackingState.TRACKING if initialised else TrackingState.INITIALISING
        return recovered

    def on_failure(self) -> bool:
        """Record a failed frame; returns True when the pipeline should reset now."""
        self.failures += 1
        if self.state == TrackingState.LOST:
            self.lost_frames += 1
        elif self.failures >= self.config.lost_after_failures:
            self.state = TrackingState.LOST
            self.lost_frames = 1
        n = self.config.reset_after_lost_frames
        return self.state == TrackingState.LOST and n > 0 and self.lost_frames >= n
