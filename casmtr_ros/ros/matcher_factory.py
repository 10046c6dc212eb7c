"""Build a matcher from the node's ``matcher.*`` parameters.

Each node parameter maps onto the matcher option of the same meaning when the matcher declares it (its
``default_conf``); options a matcher does not have are reported as not applicable rather than refused, so one
parameter file serves every variant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from casmtr_ros.matching.base import Matcher, available_matchers, build_matcher, declared_options

# node parameter -> candidate option names in a matcher's default_conf (first one declared wins)
OPTION_NAMES: dict[str, tuple[str, ...]] = {
    "matcher.weights": ("weights", "weights_path", "checkpoint"),
    "matcher.device": ("device",),
    "matcher.resize_max_side": ("resize_max_side", "max_side", "resize"),
    "matcher.resize_max_pixels": ("max_pixels",),
    "matcher.nms_kernel": ("nms_kernel", "nms"),
    "matcher.confidence_threshold": ("confidence_threshold", "match_thr", "match_threshold"),
    "matcher.max_keypoints": ("max_keypoints",),
    "matcher.max_matches": ("max_matches",),
    "matcher.klt_refine": ("klt_refine",),
    "matcher.klt_affine": ("klt_affine",),
    "matcher.klt_fb_px": ("klt_fb_px",),
    "matcher.fine_refine": ("fine_refine",),
    "matcher.zoom_below": ("zoom_below",),
    "matcher.zoom_merge": ("zoom_merge",),
}
# auto/on/off parameters: auto leaves the choice to the matcher (None)
AUTO_ON_OFF: dict[str, bool | None] = {"auto": None, "on": True, "off": False}
AUTO_ON_OFF_PARAMS = frozenset({"matcher.fine_refine", "matcher.klt_affine", "matcher.zoom_merge"})
# numeric parameters whose negative value means "the variant's own value" (the option is left out)
VARIANT_VALUE_IF_NEGATIVE = frozenset({"matcher.resize_max_pixels", "matcher.nms_kernel", "matcher.zoom_below"})


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when torch sees a GPU, else ``cpu``; other values pass through."""
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def check_matcher_params(values: dict[str, Any]) -> str | None:
    """Why the ``matcher.*`` values cannot build a matcher (quick checks, no model load), or None."""
    name = values["matcher.name"]
    if name not in available_matchers():
        return f"unknown matcher {name!r}; available: {available_matchers()}"
    weights = values["matcher.weights"]
    looks_like_path = "/" in weights or Path(weights).suffix in (".ckpt", ".pt", ".pth", ".safetensors")
    if weights and looks_like_path and not Path(weights).expanduser().is_file():
        return f"matcher.weights: file not found: {weights}"  # other values name weights shipped with a variant
    device = values["matcher.device"]
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        return f"matcher.device must be auto, cpu, cuda or cuda:N, got {device!r}"
    return None


def matcher_conf(values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The conf dict for the selected matcher and the node parameters that do not apply to it."""
    declared = declared_options(values["matcher.name"])
    conf: dict[str, Any] = {}
    not_applicable = []
    for param, candidates in OPTION_NAMES.items():
        key = next((c for c in candidates if c in declared), None)
        value = values[param]
        if key is None:
            not_applicable.append(param)
            continue
        if param == "matcher.weights" and not value:
            continue  # keep the variant's shipped weights
        if param == "matcher.device":
            value = resolve_device(value)
        if param == "matcher.resize_max_side" and value == 0:
            value = None  # no cap
        if param in VARIANT_VALUE_IF_NEGATIVE and value < 0:
            continue  # the variant's own value (0 passes through: off / no budget)
        if param == "matcher.max_matches" and value == 0:
            value = None  # all matches
        if param in AUTO_ON_OFF_PARAMS:
            value = AUTO_ON_OFF[value]
        if isinstance(declared[key], float) and isinstance(value, int):
            value = float(value)
        conf[key] = value
    return conf, not_applicable


def make_matcher(values: dict[str, Any]) -> tuple[Matcher, list[str]]:
    """Build the matcher the parameters select; raises ValueError (or the matcher's error) when it cannot."""
    reason = check_matcher_params(values)
    if reason:
        raise ValueError(reason)
    conf, not_applicable = matcher_conf(values)
    threads = int(values.get("matcher.torch_threads", 0))
    if threads > 0:  # process-wide, like every PyTorch thread setting
        import torch

        torch.set_num_threads(threads)
    return build_matcher(values["matcher.name"], conf=conf), not_applicable
