import numpy as np
import pytest

from casmtr_ros.matching.base import check_image, to_gray_uint8
from casmtr_ros.types import CameraModel, InputError, Matches


def test_check_image_refuses_bad_input() -> None:
    with pytest.raises(InputError, match="too small"):
        check_image(np.zeros((2, 2), np.uint8))
    with pytest.raises(InputError, match="NaN"):
        check_image(np.full((16, 16), np.nan, np.float32))
    with pytest.raises(InputError, match="HxW"):
        check_image(np.zeros((16, 16, 5), np.uint8))


def test_gray_conversion_matches_weights() -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 1] = 200
    assert to_gray_uint8(rgb)[0, 0] == round(200 * 0.587)
    assert to_gray_uint8(np.full((8, 8), 0.5, np.float32))[0, 0] == 128


def test_camera_refuses_uncalibrated() -> None:
    with pytest.raises(InputError, match="uncalibrated"):
        CameraModel(np.zeros((3, 3)), 640, 480)
    cam = CameraModel(np.array([[500, 0, 320], [0, 500, 240], [0, 0, 1.0]]), 640, 480, "plumb_bob", np.zeros(5))
    assert not cam.has_distortion


def test_matches_consistency() -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        Matches(np.zeros((3, 2)), np.zeros((2, 2)), np.zeros(3))
    m = Matches(np.ones((3, 2)), np.ones((3, 2)), np.array([0.1, 0.9, 0.5]))
    assert len(m.subset(m.confidence > 0.3)) == 2
