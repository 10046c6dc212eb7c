"""ROS image and camera_info messages to numpy and back, without cv_bridge and without rclpy.

Works on any object with the message's field names (duck typing): rclpy messages, rosbags messages (bag replay)
and plain namespaces. Supported ``sensor_msgs/Image`` encodings are listed in :data:`ENCODINGS`; rows may be padded
(``step`` larger than ``width * bytes per pixel``) and the data may be big-endian. ``sensor_msgs/CompressedImage``
(JPEG, PNG, ...) is decoded with ``cv2.imdecode``. Every malformed input raises :class:`ImageConversionError` (an
:class:`~casmtr_ros.types.InputError`) with a message that says what is wrong.
"""

from __future__ import annotations

import array
from typing import Any, NamedTuple

import cv2
import numpy as np

from casmtr_ros.types import CameraModel, InputError


class ImageConversionError(InputError):
    """An image or camera_info message that cannot be converted; ``reason`` names the problem in one word
    (``encoding``, ``zero_size``, ``step``, ``truncated``, ``decode``, ``channels``, ``camera_info``)."""

    def __init__(self, message: str, reason: str = "image") -> None:
        super().__init__(message)
        self.reason = reason


class Encoding(NamedTuple):
    """Layout of one ROS image encoding: numpy base type, channels, and colour order (or ``kind``)."""

    dtype: str  # numpy type without byte order: "u1", "u2", "f4"
    channels: int
    kind: str  # "grey", "bgr", "rgb", "bgra", "rgba", "depth"


ENCODINGS: dict[str, Encoding] = {
    "mono8": Encoding("u1", 1, "grey"),
    "8UC1": Encoding("u1", 1, "grey"),
    "mono16": Encoding("u2", 1, "grey"),
    "bgr8": Encoding("u1", 3, "bgr"),
    "8UC3": Encoding("u1", 3, "bgr"),  # OpenCV's default channel order
    "rgb8": Encoding("u1", 3, "rgb"),
    "bgra8": Encoding("u1", 4, "bgra"),
    "8UC4": Encoding("u1", 4, "bgra"),
    "rgba8": Encoding("u1", 4, "rgba"),
    "16UC1": Encoding("u2", 1, "depth"),
    "32FC1": Encoding("f4", 1, "depth"),
}
#: Encodings accepted on the depth topic: millimetres (16-bit) or metres (32-bit float).
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


def _buffer(data: Any) -> np.ndarray:
    """The message's ``data`` field as a flat uint8 array (no copy for bytes, array.array, numpy, memoryview)."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(memoryview(data), dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def image_msg_to_array(msg: Any) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` into a native-endian ``HxW`` or ``HxWxC`` array, channels as encoded.

    Raises ``ImageConversionError`` for an unknown encoding, a zero size, a ``step`` smaller than a row, or
    data shorter than ``step * height``.
    """
    encoding = str(msg.encoding)
    if encoding not in ENCODINGS:
        raise ImageConversionError(f"unsupported image encoding {encoding!r}; supported: {sorted(ENCODINGS)}",
                                   "encoding")
    layout = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image has zero size ({width}x{height}, encoding {encoding})", "zero_size")
    dtype = np.dtype(layout.dtype).newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = width * layout.channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"image step {step} is smaller than one row ({width} px x {layout.channels} ch x {dtype.itemsize} B"
            f" = {row_bytes} B) for encoding {encoding}", "step"
        )
    buf = _buffer(msg.data)
    if buf.size < step * (height - 1) + row_bytes:
        raise ImageConversionError(
            f"image data truncated: {buf.size} B for {width}x{height} {encoding} with step {step}"
            f" (needs {step * height} B)", "truncated"
        )
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1), writeable=False)
    pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width, layout.channels)
    pixels = pixels.astype(dtype.newbyteorder("="), copy=False)
    return pixels[:, :, 0] if layout.channels == 1 else pixels


def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """An image message as the pipeline's input: ``HxW`` grey or ``HxWx3`` RGB, ``uint8``.

    16-bit grey (``mono16``) is scaled to 8 bits; depth encodings (``16UC1``, ``32FC1``) are refused here.
    """
    layout = ENCODINGS.get(str(msg.encoding))
    if layout is not None and layout.kind == "depth":
        raise ImageConversionError(
            f"encoding {msg.encoding!r} is a depth encoding; the image topic needs mono8/mono16/bgr8/rgb8/bgra8/rgba8",
            "encoding",
        )
    return _to_rgb(image_msg_to_array(msg), layout.kind if layout else "grey")


def _to_rgb(pixels: np.ndarray, kind: str) -> np.ndarray:
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    if kind == "bgr":
        return np.ascontiguousarray(pixels[:, :, ::-1])
    if kind == "bgra":
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    if kind == "rgba":
        return np.ascontiguousarray(pixels[:, :, :3])
    return np.ascontiguousarray(pixels)


def depth_msg_to_metres(msg: Any) -> np.ndarray:
    """A depth image as ``HxW`` float32 metres; invalid pixels (0, NaN, inf, negative) become NaN.

    ``16UC1`` and ``mono16`` are millimetres (REP-118), ``32FC1`` is metres.
    """
    encoding = str(msg.encoding)
    if encoding not in DEPTH_ENCODINGS:
        raise ImageConversionError(f"unsupported depth encoding {encoding!r}; supported: {list(DEPTH_ENCODINGS)}",
                                   "encoding")
    raw = image_msg_to_array(msg)
    depth = raw.astype(np.float32) * np.float32(0.001) if raw.dtype == np.uint16 else raw.astype(np.float32)
    depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
    return depth


def compressed_msg_to_rgb(msg: Any) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, ... via ``cv2.imdecode``) to grey or RGB uint8."""
    fmt = str(getattr(msg, "format", "")).lower()
    if "compresseddepth" in fmt:
        raise ImageConversionError(f"compressedDepth images are not supported on the image topic (format {fmt!r})",
                                   "encoding")
    buf = _buffer(msg.data)
    if buf.size == 0:
        raise ImageConversionError("compressed image has no data", "zero_size")
    decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise ImageConversionError(f"compressed image could not be decoded (format {fmt!r}, {buf.size} B)", "decode")
    if decoded.ndim == 2:
        return _to_rgb(decoded, "grey")
    kind = {3: "bgr", 4: "bgra"}.get(decoded.shape[2])
    if kind is None:
        raise ImageConversionError(f"compressed image decoded to an unsupported shape {decoded.shape}", "decode")
    return _to_rgb(decoded, kind)


def array_to_image_fields(image: np.ndarray, encoding: str, pad_bytes: int = 0, bigendian: bool = False) -> dict:
    """The fields of a ``sensor_msgs/Image`` for ``image`` (``HxW`` or ``HxWxC``) in ``encoding``.

    ``pad_bytes`` adds padding at the end of every row (``step`` grows accordingly). ``data`` is an
    ``array.array('B')``, which rclpy messages take without a per-element check. Channel order is not changed:
    pass a BGR array for ``bgr8``.
    """
    if encoding not in ENCODINGS:
        raise ImageConversionError(f"unsupported image encoding {encoding!r}", "encoding")
    layout = ENCODINGS[encoding]
    pixels = np.asarray(image)
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels != layout.channels:
        raise ImageConversionError(f"{encoding} needs {layout.channels} channel(s), array has {channels}", "channels")
    dtype = np.dtype(layout.dtype).newbyteorder(">" if bigendian else "<")
    rows = np.ascontiguousarray(pixels.astype(dtype)).reshape(height, -1).view(np.uint8)
    if pad_bytes:
        rows = np.concatenate([rows, np.zeros((height, pad_bytes), np.uint8)], axis=1)
    data = array.array("B")
    data.frombytes(rows.tobytes())
    return {
        "height": int(height),
        "width": int(width),
        "encoding": encoding,
        "is_bigendian": int(bigendian),
        "step": int(rows.shape[1]),
        "data": data,
    }


def fill_image_msg(msg: Any, image: np.ndarray, encoding: str, **kwargs: Any) -> Any:
    """Set the fields of an Image message ``msg`` from ``image`` (see :func:`array_to_image_fields`)."""
    for key, value in array_to_image_fields(image, encoding, **kwargs).items():
        setattr(msg, key, value)
    return msg


def _field(msg: Any, *names: str) -> Any:
    for name in names:
        if hasattr(msg, name):
            return getattr(msg, name)
    raise ImageConversionError(f"camera_info message has no field {names[0]!r}", "camera_info")


def camera_info_to_model(msg: Any) -> CameraModel:
    """A ``sensor_msgs/CameraInfo`` (ROS 2 ``k``/``d`` or ROS 1 ``K``/``D`` field names) as a CameraModel.

    A region of interest and binning are applied to K and the size, so the model describes the published image.
    A K of all zeros (an uncalibrated camera) raises ``InputError``.
    """
    K = np.asarray(_field(msg, "k", "K"), dtype=np.float64).reshape(-1)
    if K.size != 9:
        raise ImageConversionError(f"camera_info K must have 9 values, got {K.size}", "camera_info")
    K = K.reshape(3, 3).copy()
    D = np.asarray(_field(msg, "d", "D"), dtype=np.float64).reshape(-1)
    width, height = int(msg.width), int(msg.height)
    roi = getattr(msg, "roi", None)
    if roi is not None and int(roi.width) > 0 and int(roi.height) > 0:
        K[0, 2] -= float(roi.x_offset)
        K[1, 2] -= float(roi.y_offset)
        width, height = int(roi.width), int(roi.height)
    bx, by = max(int(getattr(msg, "binning_x", 0)), 1), max(int(getattr(msg, "binning_y", 0)), 1)
    if bx > 1 or by > 1:
        K[0, :] /= bx
        K[1, :] /= by
        width, height = width // bx, height // by
    model = str(getattr(msg, "distortion_model", "") or "none")
    if not np.any(D):
        model, D = "none", np.zeros(0)
    return CameraModel(K=K, width=width, height=height, distortion_model=model, D=D)
