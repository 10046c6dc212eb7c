"""The numpy converter for ROS image encodings, on rclpy messages, rosbags messages and plain namespaces.

rosbags-image (an independent implementation) is the reference for the raw pixel layout.
"""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from rosbags.image import message_to_cvimage
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from casmtr_ros.ros.image_conversion import (
    ENCODINGS,
    ImageConversionError,
    array_to_image_fields,
    camera_info_to_model,
    compressed_msg_to_rgb,
    depth_msg_to_metres,
    fill_image_msg,
    image_msg_to_array,
    image_msg_to_rgb,
)
from casmtr_ros.types import InputError

TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
RB_IMAGE = TYPESTORE.types["sensor_msgs/msg/Image"]
RB_HEADER = TYPESTORE.types["std_msgs/msg/Header"]
RB_TIME = TYPESTORE.types["builtin_interfaces/msg/Time"]


def _sample(encoding: str, h: int = 7, w: int = 11) -> np.ndarray:
    layout = ENCODINGS[encoding]
    rng = np.random.default_rng(hash(encoding) % 2**32)
    shape = (h, w) if layout.channels == 1 else (h, w, layout.channels)
    if layout.dtype == "f4":
        return rng.uniform(0.1, 20.0, shape).astype(np.float32)
    hi = 256 if layout.dtype == "u1" else 65536
    return rng.integers(0, hi, shape).astype(np.dtype(layout.dtype))


def _rosbags_msg(fields: dict) -> object:
    header = RB_HEADER(stamp=RB_TIME(sec=1, nanosec=2), frame_id="cam")
    data = np.frombuffer(fields["data"].tobytes(), np.uint8)
    return RB_IMAGE(header=header, height=fields["height"], width=fields["width"], encoding=fields["encoding"],
                    is_bigendian=fields["is_bigendian"], step=fields["step"], data=data)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize(("pad", "big"), [(0, False), (5, False), (0, True), (3, True)])
def test_round_trip_every_encoding(encoding: str, pad: int, big: bool) -> None:
    pixels = _sample(encoding)
    fields = array_to_image_fields(pixels, encoding, pad_bytes=pad, bigendian=big)
    assert fields["step"] == pixels[0].nbytes + pad
    for msg in (fill_image_msg(Image(), pixels, encoding, pad_bytes=pad, bigendian=big), _rosbags_msg(fields),
                SimpleNamespace(**fields)):
        out = image_msg_to_array(msg)
        assert out.dtype == pixels.dtype.newbyteorder("=") and out.dtype.isnative
        np.testing.assert_array_equal(out, pixels)


@pytest.mark.parametrize("encoding", ["mono8", "mono16", "bgr8", "rgb8", "bgra8", "rgba8", "16UC1", "32FC1"])
@pytest.mark.parametrize("big", [False, True])
def test_raw_layout_agrees_with_rosbags_image(encoding: str, big: bool) -> None:
    # rosbags-image 0.10.4 ignores `step` (padded rows come out shifted), so the reference runs unpadded.
    pixels = _sample(encoding, 9, 13)
    fields = array_to_image_fields(pixels, encoding, bigendian=big)
    reference = message_to_cvimage(_rosbags_msg(fields))
    np.testing.assert_array_equal(image_msg_to_array(SimpleNamespace(**fields)), reference)


def test_rgb_output_per_encoding() -> None:
    rgb = _sample("rgb8")
    bgr = rgb[:, :, ::-1]
    alpha = np.full((*rgb.shape[:2], 1), 255, np.uint8)
    cases = {
        "rgb8": rgb, "bgr8": bgr, "8UC3": bgr,
        "rgba8": np.concatenate([rgb, alpha], 2), "bgra8": np.concatenate([bgr, alpha], 2),
    }
    for encoding, pixels in cases.items():
        out = image_msg_to_rgb(SimpleNamespace(**array_to_image_fields(pixels, encoding)))
        assert out.dtype == np.uint8 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, rgb, err_msg=encoding)
    grey16 = _sample("mono16")
    out = image_msg_to_rgb(SimpleNamespace(**array_to_image_fields(grey16, "mono16", bigendian=True)))
    np.testing.assert_array_equal(out, (grey16 >> 8).astype(np.uint8))


def test_depth_units_and_invalid_pixels() -> None:
    mm = np.array([[0, 1000, 2500], [65535, 1, 300]], np.uint16)
    out = depth_msg_to_metres(SimpleNamespace(**array_to_image_fields(mm, "16UC1")))
    assert out.dtype == np.float32
    assert np.isnan(out[0, 0])
    np.testing.assert_allclose(out[0, 1:], [1.0, 2.5])
    np.testing.assert_allclose(out[1], [65.535, 0.001, 0.3], rtol=1e-6)
    metres = np.array([[np.nan, np.inf, -1.0], [0.0, 2.0, 3.5]], np.float32)
    out = depth_msg_to_metres(SimpleNamespace(**array_to_image_fields(metres, "32FC1", bigendian=True)))
    assert np.isnan(out[0]).all() and np.isnan(out[1, 0])
    np.testing.assert_allclose(out[1, 1:], [2.0, 3.5])
    with pytest.raises(ImageConversionError, match="depth encoding"):
        depth_msg_to_metres(SimpleNamespace(**array_to_image_fields(_sample("bgr8"), "bgr8")))


def test_bad_images_give_clear_errors() -> None:
    good = array_to_image_fields(_sample("bgr8"), "bgr8")
    cases = {
        "unsupported image encoding 'yuv422'": ("encoding", dict(good, encoding="yuv422")),
        "zero size": ("zero_size", dict(good, width=0, height=0, step=0, data=b"")),
        "step 20 is smaller than one row": ("step", dict(good, step=20)),
        "data truncated": ("truncated", dict(good, data=good["data"][:-10])),
        "depth encoding": ("encoding", array_to_image_fields(_sample("32FC1"), "32FC1")),
    }
    for message, (reason, fields) in cases.items():
        with pytest.raises(ImageConversionError, match=message) as info:
            image_msg_to_rgb(SimpleNamespace(**fields))
        assert info.value.reason == reason
    assert issubclass(ImageConversionError, InputError)


def test_compressed_images() -> None:
    rgb = cv2.GaussianBlur(_sample("rgb8", 48, 64), (5, 5), 0)
    ok, png = cv2.imencode(".png", rgb[:, :, ::-1])
    assert ok
    msg = CompressedImage(format="png")
    msg.data = png.tobytes()
    np.testing.assert_array_equal(compressed_msg_to_rgb(msg), rgb)
    ok, jpg = cv2.imencode(".jpg", rgb[:, :, 0], [cv2.IMWRITE_JPEG_QUALITY, 98])
    grey = compressed_msg_to_rgb(SimpleNamespace(format="jpeg", data=jpg.tobytes()))
    assert grey.shape == (48, 64) and np.abs(grey.astype(int) - rgb[:, :, 0]).mean() < 3
    with pytest.raises(ImageConversionError, match="could not be decoded"):
        compressed_msg_to_rgb(SimpleNamespace(format="jpeg", data=jpg.tobytes()[:40]))
    with pytest.raises(ImageConversionError, match="no data"):
        compressed_msg_to_rgb(SimpleNamespace(format="jpeg", data=b""))


def _info(K: list[float], width: int = 640, height: int = 480, **kw: object) -> CameraInfo:
    msg = CameraInfo(width=width, height=height, distortion_model=kw.pop("model", "plumb_bob"))
    msg.k = np.asarray(K, np.float64)
    msg.d = kw.pop("d", [0.0] * 5)
    for key, value in kw.items():
        setattr(msg, key, value)
    return msg


def test_camera_info_to_model() -> None:
    K = [500.0, 0.0, 320.0, 0.0, 505.0, 240.0, 0.0, 0.0, 1.0]
    cam = camera_info_to_model(_info(K, d=[0.1, -0.05, 0.0, 0.0, 0.01]))
    np.testing.assert_allclose(cam.K, np.reshape(K, (3, 3)))
    assert (cam.width, cam.height, cam.distortion_model) == (640, 480, "plumb_bob") and cam.has_distortion
    assert camera_info_to_model(_info(K)).distortion_model == "none"  # all-zero D: no distortion
    binned = camera_info_to_model(_info(K, binning_x=2, binning_y=2))
    assert (binned.width, binned.height) == (320, 240)
    np.testing.assert_allclose(binned.K[:2], [[250, 0, 160], [0, 252.5, 120]])
    roi_msg = _info(K)
    roi_msg.roi.x_offset, roi_msg.roi.y_offset, roi_msg.roi.width, roi_msg.roi.height = 100, 50, 200, 100
    roi = camera_info_to_model(roi_msg)
    assert (roi.width, roi.height) == (200, 100) and roi.K[0, 2] == 220 and roi.K[1, 2] == 190
    ros1 = SimpleNamespace(K=K, D=[], width=640, height=480, distortion_model="")
    assert camera_info_to_model(ros1).width == 640


def test_camera_info_refused() -> None:
    with pytest.raises(InputError, match="all zero"):
        camera_info_to_model(_info([0.0] * 9))
    with pytest.raises(InputError, match="unsupported distortion model"):
        camera_info_to_model(_info([500.0, 0, 320, 0, 500, 240, 0, 0, 1], model="fisheye9", d=[0.1]))
    with pytest.raises(InputError, match="9 values"):
        camera_info_to_model(SimpleNamespace(k=[1.0, 2.0], d=[], width=4, height=4))
