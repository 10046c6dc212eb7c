"""Match drawing: canvas layout and confidence colours."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from casmtr_ros.evaluation.viz import confidence_colors, draw_matches, save_matches
from casmtr_ros.types import Matches


def test_colours_go_from_blue_to_red() -> None:
    c = confidence_colors(np.array([0.0, 1.0]))  # BGR
    assert c[0, 0] > c[0, 2] and c[1, 2] > c[1, 0]


def test_draw_and_save(tmp_path: Path) -> None:
    a = np.zeros((60, 80), np.uint8)
    b = np.zeros((50, 70, 3), np.uint8)
    m = Matches([[10, 10], [40, 30]], [[5, 5], [60, 40]], [0.1, 0.9])
    canvas = draw_matches(a, b, m, inliers=np.array([False, True]))
    assert canvas.shape == (60 + 28, 150, 3)
    # The confident inlier's line is drawn in its colour at its midpoint; the outlier in grey.
    mid = ((40 + 80 + 60) // 2, (30 + 40) // 2 + 28)
    assert np.abs(canvas[mid[1], mid[0]].astype(int) - confidence_colors(np.array([0.9]))[0]).max() < 60
    mid_out = ((10 + 80 + 5) // 2, (10 + 5) // 2 + 28)
    px = canvas[mid_out[1], mid_out[0]]
    assert px.max() - px.min() < 10 and px.max() > 40
    path = save_matches(tmp_path / "m.png", a, b, m)
    assert cv2.imread(str(path)).shape == canvas.shape
    assert draw_matches(a, b, Matches.empty()).shape == canvas.shape
