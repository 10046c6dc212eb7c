"""Bad inputs give clear errors (or a diagnostic counter) and leave the pipeline state unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from casmtr_ros.types import CameraModel, Frame, InputError
from casmtr_ros.vo import Pipeline, TrackingState, VOConfig
from casmtr_ros.vo.inputs import depth_to_metres


def test_uncalibrated_camera_refused() -> None:
    with pytest.raises(InputError, match="uncalibrated"):
        CameraModel(np.zeros((3, 3)), 480, 360)


def test_bad_frames_raise_clear_errors(room_sequence, sift) -> None:
    seq = room_sequence
    pipe = Pipeline(sift)
    pipe.process(seq.frame(0, depth=True))
    pipe.process(seq.frame(1, depth=True))
    before = (pipe.keyframe, pipe.state, pipe.counters["poses"])
    cam = seq.camera
    img = seq.images[2]
    bad = [
        (Frame(10**9, np.zeros((0, 0), np.uint8), cam), "empty"),
        (Frame(10**9, img[:200], cam), "does not match the camera"),
        (Frame(10**9, img, cam, depth=np.ones((10, 10), np.float32)), "depth shape"),
        (Frame(10**9, img, cam, depth=np.ones(img.shape[:2], np.int32)), "uint16"),
        (Frame(10**9, np.full(img.shape, np.nan, np.float32), cam), "NaN"),
        (Frame(seq.frame(1, True).stamp_ns, img, cam), "not after"),  # repeated stamp
        (Frame(seq.frame(0, True).stamp_ns, img, cam), "not after"),  # backwards
    ]
    for frame, message in bad:
        with pytest.raises(InputError, match=message):
            pipe.process(frame)
    assert pipe.counters["input_errors"] == len(bad)
    assert (pipe.keyframe, pipe.state, pipe.counters["poses"]) == before
    r = pipe.process(seq.frame(2, depth=True))  # the stream goes on
    assert r.odometry is not None and r.state == TrackingState.TRACKING


def test_depth_formats_and_invalid_depth(room_sequence, sift) -> None:
    mm = np.array([[0, 1500], [65535, 800]], np.uint16)
    m = depth_to_metres(mm, 0.1, 60.0)
    assert np.isnan(m[0, 0]) and m[0, 1] == pytest.approx(1.5) and np.isnan(m[1, 0]) and m[1, 1] == pytest.approx(0.8)
    f = depth_to_metres(np.array([[np.nan, np.inf], [-1.0, 2.0]], np.float32), 0.1, 60.0)
    assert np.isnan(f[:, 0]).all() and np.isnan(f[0, 1]) and f[1, 1] == 2.0
    seq = room_sequence
    # 16UC1 millimetres give the same metric result as 32FC1 metres
    pipe_mm = Pipeline(sift)
    for i in range(3):
        fr = seq.frame(i, depth=True)
        fr.depth = np.nan_to_num(fr.depth * 1000.0).astype(np.uint16)
        r_mm = pipe_mm.process(fr)
    assert r_mm.odometry.metric and np.linalg.norm(r_mm.odometry.T_odom_cam[:3, 3]) > 0.15
    # an all-NaN depth image is dropped with a counter: the frame runs monocular
    pipe = Pipeline(sift)
    fr = seq.frame(0, depth=True)
    fr.depth = np.full_like(fr.depth, np.nan)
    r = pipe.process(fr)
    assert pipe.counters["depth_all_invalid"] == 1 and r.state == TrackingState.INITIALISING
    assert r.odometry is not None and not r.odometry.metric  # the origin


def test_resolution_change_and_stamp_jump_reset(room_sequence, sift) -> None:
    seq = room_sequence
    pipe = Pipeline(sift, VOConfig(max_stamp_jump_s=2.0))
    pipe.process(seq.frame(0, depth=True))
    pipe.process(seq.frame(1, depth=True))
    small = CameraModel(seq.camera.K * np.array([[0.5], [0.5], [1.0]]), 240, 180)
    r = pipe.process(Frame(seq.frame(2, True).stamp_ns, seq.images[2][::2, ::2].copy(), small))
    assert r.reset and r.is_keyframe and pipe.counters["resets_camera_changed"] == 1 and "camera" in r.status
    r = pipe.process(seq.frame(3, depth=True, stamp_offset=10**10))
    assert r.reset and pipe.counters["resets_stamp_jump"] == 1 and "stamp jump" in r.status


def test_keyframe_depth_sampling_is_bilinear_and_drops_edges() -> None:
    from casmtr_ros.vo.keyframes import Keyframe

    yy, xx = np.mgrid[0:40, 0:60].astype(np.float32)
    depth = 2.0 + 0.01 * xx + 0.02 * yy  # a slanted plane
    depth[:, 40:] = 5.0  # a step: another surface behind
    depth[30:, :10] = np.nan  # a hole
    cam = CameraModel(np.array([[50.0, 0, 30], [0, 50.0, 20], [0, 0, 1]]), 60, 40)
    kf = Keyframe(0, 0, 0, np.zeros((40, 60), np.uint8), cam, np.eye(4), np.zeros((6, 6)), depth=depth)
    d = kf.depth_at(np.array([[10.25, 5.5], [39.4, 10.0], [5.0, 31.0], [-3.0, 2.0], [50.0, 20.0]]), 2.0)
    assert d[0] == pytest.approx(2.0 + 0.01 * 10.25 + 0.02 * 5.5, abs=1e-5)
    assert np.isnan(d[1]) and np.isnan(d[2]) and np.isnan(d[3])  # edge, hole, outside
    assert d[4] == pytest.approx(5.0)
