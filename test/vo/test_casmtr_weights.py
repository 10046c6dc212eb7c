"""The KITTI 06 clip with the shipped CasMTR weights (casmtr-4c-lite), through the same checks as SIFT."""

from __future__ import annotations

import pytest

from casmtr_ros.matching import available_matchers, build_matcher
from casmtr_ros.model.checkpoint import shipped_weights

VARIANT = "casmtr-4c-lite"


def _weights() -> list[str]:
    return [w for w in shipped_weights() if w.startswith(VARIANT)]


@pytest.mark.slow
@pytest.mark.skipif(not _weights(), reason=f"no shipped {VARIANT} weights in casmtr_ros/weights/ (not trained yet)")
def test_kitti06_casmtr_lite_tracks(kitti, kitti_check) -> None:
    assert VARIANT in available_matchers()
    frames, gt = kitti
    kitti_check(frames[:11], gt[:11], build_matcher(VARIANT, conf={"device": "cpu"}))
