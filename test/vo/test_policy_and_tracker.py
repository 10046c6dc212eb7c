"""Keyframe policy thresholds and the tracking state machine."""

from casmtr_ros.vo import TrackingState, VOConfig
from casmtr_ros.vo.keyframes import KeyframePolicy, KeyframeStats
from casmtr_ros.vo.tracker import Tracker


def _stats(**kw) -> KeyframeStats:
    base = dict(num_matches=500, match_fraction=1.0, inlier_ratio=0.9, parallax_px=5.0, rotation_deg=1.0,
                translation_m=0.1, dt_s=0.1)
    return KeyframeStats(**{**base, **kw})


def test_keyframe_policy_reasons() -> None:
    c = VOConfig()
    p = KeyframePolicy(c)
    assert p.decide(_stats()) is None
    assert p.decide(_stats(num_matches=c.kf_min_matches - 1)) == "matches"
    assert p.decide(_stats(match_fraction=c.kf_min_match_fraction - 0.01)) == "overlap"
    assert p.decide(_stats(inlier_ratio=c.kf_min_inlier_ratio - 0.01)) == "inlier_ratio"
    assert p.decide(_stats(parallax_px=c.kf_max_parallax_px + 1)) == "parallax"
    assert p.decide(_stats(translation_m=c.kf_max_translation_m + 0.1)) == "translation"
    assert p.decide(_stats(translation_m=None)) is None  # monocular: no metric translation test
    assert p.decide(_stats(rotation_deg=c.kf_max_rotation_deg + 1)) == "rotation"
    assert p.decide(_stats(dt_s=c.kf_max_time_gap_s + 1)) == "time"
    # never on a frame with too few matches, whatever else says so
    assert p.decide(_stats(num_matches=c.kf_min_matches_abs - 1, parallax_px=500, dt_s=100)) is None


def test_state_machine_lost_recovery_and_reset() -> None:
    t = Tracker(VOConfig(lost_after_failures=2, reset_after_lost_frames=3))
    t.start(initialised=False)
    assert t.state == TrackingState.INITIALISING
    assert not t.on_success(initialised=False) and t.state == TrackingState.INITIALISING
    assert not t.on_success(initialised=True) and t.state == TrackingState.TRACKING
    assert not t.on_failure() and t.state == TrackingState.TRACKING
    assert not t.on_failure() and t.state == TrackingState.LOST
    assert t.on_success(initialised=True) and t.state == TrackingState.TRACKING  # recovered
    assert [t.on_failure() for _ in range(4)] == [False, False, False, True]  # lost at 2, reset 3 frames later
    t = Tracker(VOConfig(lost_after_failures=1, reset_after_lost_frames=0))  # 0 = never auto-reset
    t.start(initialised=True)
    assert not any(t.on_failure() for _ in range(20)) and t.state == TrackingState.LOST
