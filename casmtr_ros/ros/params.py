"""Every parameter of casmtr_vo_node as data: name, default, description, range or choices, and what a change needs.

``apply`` says what happens when a parameter changes at run time:

- ``"model"``: the matcher is rebuilt on the worker thread between two frames; the old matcher keeps running until
  the new one is built, and stays when the build fails (reported in /diagnostics).
- ``"pipeline"``: the VO configuration (``vo.*``, every field of :class:`~casmtr_ros.vo.config.VOConfig`) is
  replaced on the worker thread between two frames.
- ``"live"``: read on every frame (frame ids, publish switches).
- ``"startup"``: topics, QoS and synchronisation; read-only after start (change them in the YAML file).

``config/casmtr_vo.yaml`` lists every parameter with its default; a test keeps it equal to this table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from casmtr_ros.vo.config import VOConfig

APPLY_KINDS = ("model", "pipeline", "live", "startup")


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter. ``low``/``high`` bound numbers (inclusive); ``choices`` bound strings."""

    name: str
    default: Any
    description: str
    apply: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.apply not in APPLY_KINDS:
            raise ValueError(f"{self.name}: apply must be one of {APPLY_KINDS}")
        if isinstance(self.default, float):
            for bound in ("low", "high"):
                if getattr(self, bound) is not None:
                    object.__setattr__(self, bound, float(getattr(self, bound)))

    def check(self, value: Any) -> str | None:
        """Why ``value`` is refused, or None (type, range and choices; rclpy also checks type and range)."""
        if type(value) is not type(self.default):
            return f"{self.name} must be {type(self.default).__name__}, got {type(value).__name__}"
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {list(self.choices)}, got {value!r}"
        if self.low is not None and value < self.low:
            return f"{self.name} must be >= {self.low}, got {value}"
        if self.high is not None and value > self.high:
            return f"{self.name} must be <= {self.high}, got {value}"
        return None


def _p(name: str, default: Any, description: str, apply: str, low: float | None = None, high: float | None = None,
       choices: tuple[str, ...] = ()) -> ParamSpec:
    return ParamSpec(name, default, description, apply, low, high, choices)


NODE_PARAMS: tuple[ParamSpec, ...] = (
    # --- matcher (model reload) ---
    _p("matcher.name", "casmtr-4c-lite", "matcher variant (casmtr-4c-lite with its shipped weights, casmtr-4c-outdoor"
       " / casmtr-4c-indoor with official weights in `matcher.weights`, sift, orb ...; `casmtr-vo matchers` lists"
       " them)", "model"),
    _p("matcher.weights", "", "CasMTR weights: a checkpoint file (pl_checkpoint.ckpt or a state dict) or the name of"
       " shipped weights; empty = the variant's default weights", "model"),
    _p("matcher.device", "auto", "where the matcher runs: auto (CUDA when available), cpu, cuda, cuda:N", "model"),
    _p("matcher.resize_max_side", 640, "resize policy: the longer image side is scaled to at most this many pixels"
       " before matching (0 = original size); matches are returned in original pixels", "model", 0, 4096),
    _p("matcher.resize_max_pixels", -1, "pixel budget of the CasMTR network input: the image is scaled so that"
       " width x height is at most this; with matcher.resize_max_side the smaller scale wins. -1 = the variant's"
       " budget (480x360 = 172800 for casmtr-4c-lite, none for the official), 0 = none. 307200 with resize_max_side"
       " 0 gives wide cameras the pixels of a 640x480 frame (model card)", "model", -1, 16777216),
    _p("matcher.nms_kernel", -1, "non-maximum suppression kernel on the cascade confidence map (CasMTR only);"
       " -1 = the variant's value, 0 = off", "model", -1, 15),
    _p("matcher.confidence_threshold", 0.0, "final filter: matches with confidence not above this are dropped"
       " (CasMTR only; 0 keeps everything the model returns)", "model", 0.0, 1.0),
    _p("matcher.max_keypoints", 4000, "keypoint budget of the OpenCV baselines (sift, orb)", "model", 16, 100000),
    _p("matcher.max_matches", 0, "refine and return at most this many matches, the most confident (CasMTR only;"
       " 0 = all): faster on CPU, lower accuracy (model card)", "model", 0, 100000),
    _p("matcher.klt_refine", True, "polish every match with homography-guided Lucas-Kanade on the original images"
       " and keep those that pass a forward-backward check (CasMTR only): sub-pixel points, fewer outliers (model"
       " card)", "model"),
    _p("matcher.fine_refine", "auto", "the 1/2 sub-pixel refinement stage (CasMTR only): auto = on unless"
       " `matcher.klt_refine` replaces it for these weights (casmtr-4c-lite), on, off", "model",
       choices=("auto", "on", "off")),
    _p("matcher.klt_affine", "auto", "refine each match of `matcher.klt_refine` with an affine and brightness fit of"
       " its window and keep it when the fit correlates (CasMTR only; more accurate under viewpoint change, ~10-40"
       " ms): auto = the variant's (on for casmtr-4c-lite, off for the official), on, off", "model",
       choices=("auto", "on", "off")),
    _p("matcher.klt_fb_px", 1.0, "forward-backward tolerance of `matcher.klt_refine` in pixels (0 = no check)",
       "model", 0.0, 20.0),
    _p("matcher.zoom_below", -1.0, "zoom search (CasMTR only): when a keyframe pair keeps fewer than this many"
       " matches per 1/8 cell of the network input, match again with each image cropped to half its sides around"
       " its matches and keep the pass with the most (strong scale change, e.g. fast forward motion; up to 3x the"
       " time on those pairs); -1 = the variant's value (0.1 for casmtr-4c-lite, off for the official), 0 = off",
       "model", -1.0, 100.0),
    _p("matcher.zoom_merge", "auto", "when a crop wins the zoom search, keep the first pass's matches as well (CasMTR"
       " only; the crop covers the middle of the view, the first pass the rest): auto = the variant's (on for"
       " casmtr-4c-lite, off for the official), on, off", "model", choices=("auto", "on", "off")),
    _p("matcher.torch_threads", 0, "CPU threads PyTorch may use for matching (0 = PyTorch's default, one per core);"
       " fewer leaves cores to DDS and to other processes", "model", 0, 256),
    # --- inputs (startup) ---
    _p("image_transport", "raw", "image topic type: raw (sensor_msgs/Image on `image`) or compressed"
       " (sensor_msgs/CompressedImage on `image/compressed`)", "startup", choices=("raw", "compressed")),
    _p("use_depth", False, "also subscribe to `depth` (16UC1 mm or 32FC1 m, aligned to the image) and pair it",
       "startup"),
    _p("qos.reliability", "best_effort", "reliability of the input subscriptions (best_effort matches both kinds"
       " of publishers)", "startup", choices=("best_effort", "reliable")),
    _p("qos.depth", 5, "history depth of the input subscriptions (0 = keep all)", "startup", 0, 1000),
    _p("sync.queue_size", 10, "messages kept per input while waiting for a partner with a close stamp", "startup",
       1, 1000),
    _p("sync.slop", 0.01, "seconds: image, camera_info and depth pair when their stamps span less than this",
       "startup", 1e-6, 10.0),
    _p("diagnostics.period", 1.0, "seconds between periodic /diagnostics messages", "startup", 0.05, 60.0),
    # --- frames and outputs (live) ---
    _p("frames.odom", "odom", "odometry frame id (REP-105); the first keyframe's camera_link pose is its origin",
       "live"),
    _p("frames.base", "camera_link", "child frame of `odom`: the camera body frame in REP-103 axes (x forward,"
       " y left, z up), rigidly attached to the optical frame", "live"),
    _p("frames.camera", "", "optical frame id (x right, y down, z forward) written on matches and relative poses;"
       " empty = the image header's frame_id", "live"),
    _p("publish.matches", True, "publish ~/matches (PointCloud2)", "live"),
    _p("publish.relative_pose", True, "publish ~/relative_pose (PoseWithCovarianceStamped)", "live"),
    _p("publish.odometry", True, "publish odom (nav_msgs/Odometry)", "live"),
    _p("publish.path", True, "publish ~/path (nav_msgs/Path)", "live"),
    _p("publish.debug_image", True, "publish ~/debug_image (drawn only while someone subscribes)", "live"),
    _p("path.max_length", 10000, "poses kept in ~/path (oldest dropped first)", "live", 1, 1000000),
    _p("debug_image.max_matches", 300, "matches drawn in ~/debug_image", "live", 1, 100000),
    _p("log_throttle", 5.0, "seconds between repeated log lines about bad input", "live", 0.0, 3600.0),
)

# Descriptions and ranges of the VO pipeline parameters (``vo.<field>``, one per VOConfig field).
_VO_DOC: dict[str, tuple[str, float | None, float | None, tuple[str, ...]]] = {
    "estimator": ("essential-matrix robust estimator: magsac (USAC_MAGSAC) or ransac", None, None,
                  ("magsac", "ransac")),
    "ransac_threshold_px": ("RANSAC inlier threshold in pixels (converted to normalised coordinates)", 0.01, 50.0, ()),
    "ransac_confidence": ("RANSAC confidence", 0.5, 0.999999, ()),
    "ransac_max_iters": ("RANSAC iteration cap", 10, 1000000, ()),
    "pnp_threshold_px": ("PnP-RANSAC reprojection threshold in pixels (with depth)", 0.01, 50.0, ()),
    "refine": ("refine the verified model on its inliers", None, None, ()),
    "min_inliers": ("fewer inliers = verification failure", 8, 100000, ()),
    "min_inlier_ratio": ("lower inlier ratio = verification failure", 0.0, 1.0, ()),
    "min_parallax_px": ("below this rotation-compensated median parallax the motion counts as rotation only",
                        0.0, 1000.0, ()),
    "max_residual_rms_px": ("larger inlier residual RMS (pixels) = verification failure", 0.01, 100.0, ()),
    "use_depth": ("use the depth image when a frame has one (metric PnP)", None, None, ()),
    "min_depth_m": ("depths below this are invalid (metres)", 1e-4, 1000.0, ()),
    "max_depth_m": ("depths above this are invalid (metres)", 1e-3, 100000.0, ()),
    "min_depth_points": ("fewer matches with valid depth = fall back to essential + depth scale", 4, 100000, ()),
    "mono_scale_sigma": ("monocular: relative std of the scale (variance along the unit translation)", 1e-6, 10.0,
                         ()),
    "cov_match_correlation": ("covariance model: share of a match's error that is an error field shared by all matches"
                              " of a keyframe pair (0 = independent matches; default estimated for SIFT on rendered"
                              " scenes, README Covariance)", 0.0, 0.99, ()),
    "cov_scale": ("covariance model: variance factor on the residual-derived pose covariances (residual"
                  " calibration; default estimated for SIFT on rendered scenes, README Covariance)", 0.01, 100.0, ()),
    "scale_assoc_radius_px": ("monocular: keypoint association radius for carrying triangulated depth", 0.1, 50.0,
                              ()),
    "min_triangulation_deg": ("monocular: minimum ray angle of triangulated points kept as keyframe depth",
                              0.0, 45.0, ()),
    "init_min_parallax_px": ("monocular initialisation needs this median parallax (pixels)", 0.0, 1000.0, ()),
    "kf_min_matches": ("keyframe policy: new keyframe when matches against the last keyframe drop below this",
                       0, 100000, ()),
    "kf_min_match_fraction": ("keyframe policy: ... or below this fraction of the first frame's matches against the"
                              " keyframe", 0.0, 1.0, ()),
    "kf_min_inlier_ratio": ("keyframe policy: ... or the inlier ratio drops below this", 0.0, 1.0, ()),
    "kf_max_parallax_px": ("keyframe policy: ... or the median parallax exceeds this (pixels)", 0.0, 10000.0, ()),
    "kf_max_translation_m": ("keyframe policy: ... or the metric translation exceeds this (depth only)", 0.0,
                             1000.0, ()),
    "kf_max_rotation_deg": ("keyframe policy: ... or the rotation exceeds this (degrees)", 0.0, 180.0, ()),
    "kf_max_time_gap_s": ("keyframe policy: ... or this much time passed since the last keyframe", 0.0, 3600.0, ()),
    "kf_min_matches_abs": ("keyframe policy: never a keyframe with fewer matches than this", 0, 100000, ()),
    "lost_after_failures": ("consecutive verification failures before the state becomes LOST", 1, 1000, ()),
    "reset_after_lost_frames": ("frames in LOST before an automatic reset (0 = never)", 0, 100000, ()),
    "lost_position_sigma": ("position std added to the pose covariance at a reset (odometry units)", 0.0, 1e6, ()),
    "lost_rotation_sigma_deg": ("rotation std added at a reset (degrees)", 0.0, 180.0, ()),
    "max_stamp_jump_s": ("a larger forward stamp gap resets the pipeline (seconds)", 0.0, 1e6, ()),
}


def _vo_params() -> tuple[ParamSpec, ...]:
    specs = []
    for f in dataclasses.fields(VOConfig):
        default = f.default
        doc = _VO_DOC.get(f.name)
        if doc is None:  # a field added to VOConfig without a description here: still exposed, flagged
            doc = (f"VOConfig.{f.name} (undocumented)", None, None, ())
        description, low, high, choices = doc
        specs.append(ParamSpec(f"vo.{f.name}", default, description, "pipeline", low, high, choices))
    return tuple(specs)


def all_params() -> tuple[ParamSpec, ...]:
    """Node parameters followed by the VO parameters."""
    return NODE_PARAMS + _vo_params()


def undocumented_vo_fields() -> list[str]:
    """VOConfig fields without an entry in the description table (a test keeps this empty)."""
    return [f.name for f in dataclasses.fields(VOConfig) if f.name not in _VO_DOC]


def spec_by_name() -> dict[str, ParamSpec]:
    return {s.name: s for s in all_params()}


def vo_config_from(values: dict[str, Any]) -> VOConfig:
    """A VOConfig from ``{"vo.<field>": value}`` entries (others ignored); raises ValueError when invalid."""
    return VOConfig.from_dict({k[3:]: v for k, v in values.items() if k.startswith("vo.")})


def descriptor(spec: ParamSpec) -> Any:
    """The rclpy ``ParameterDescriptor`` of ``spec`` (description, range, read-only for startup parameters)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    desc = ParameterDescriptor(
        name=spec.name,
        description=spec.description,
        read_only=spec.apply == "startup",
    )
    notes = []
    if spec.choices:
        notes.append(f"one of: {', '.join(spec.choices)}")
    notes.append({"model": "change rebuilds the matcher", "pipeline": "change replaces the VO configuration",
                  "live": "applies at the next frame", "startup": "read-only after start"}[spec.apply])
    desc.additional_constraints = "; ".join(notes)
    if spec.low is not None and isinstance(spec.default, bool):
        raise ValueError(f"{spec.name}: a bool has no range")
    if spec.low is not None and isinstance(spec.default, int):
        desc.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=0)]
    elif spec.low is not None and isinstance(spec.default, float):
        desc.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                        step=0.0)]
    return desc


def declare_all(node: Any) -> dict[str, Any]:
    """Declare every parameter on ``node`` (overrides from the params file apply) and return their values.

    Raises ValueError when a value given at start-up is refused (wrong choice, invalid VO configuration).
    """
    values = {}
    for spec in all_params():
        value = node.declare_parameter(spec.name, spec.default, descriptor(spec)).value
        reason = spec.check(value)
        if reason:
            raise ValueError(f"parameter {reason}")
        values[spec.name] = value
    vo_config_from(values)  # raises with VOConfig's message when the combination is invalid
    return values


def yaml_defaults(node_name: str = "casmtr_vo_node") -> dict[str, Any]:
    """The content of ``config/casmtr_vo.yaml``: every parameter with its default, nested by dots."""
    params: dict[str, Any] = {}
    for spec in all_params():
        parts = spec.name.split(".")
        cursor = params
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = spec.default
    return {node_name: {"ros__parameters": params}}


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_yaml(node_name: str = "casmtr_vo_node") -> str:
    """``config/casmtr_vo.yaml``: every parameter with its default, its description as a comment."""
    lines = [
        "# casmtr_vo_node parameters: every parameter with its default (generated from casmtr_ros/ros/params.py;",
        "# regenerate with `python -m casmtr_ros.ros.params > config/casmtr_vo.yaml`).",
        "# apply: model = the matcher is rebuilt between frames, pipeline = the VO configuration is replaced between",
        "# frames, live = next frame, startup = read-only after start.",
        f"{node_name}:",
        "  ros__parameters:",
    ]
    opened: list[str] = []
    for spec in all_params():
        parts = spec.name.split(".")
        common = 0
        while common < min(len(opened), len(parts) - 1) and opened[common] == parts[common]:
            common += 1
        opened = opened[:common]
        for part in parts[common:-1]:
            lines.append("    " + "  " * len(opened) + f"{part}:")
            opened.append(part)
        indent = "    " + "  " * len(opened)
        bounds = ""
        if spec.choices:
            bounds = f" [{' | '.join(spec.choices)}]"
        elif spec.low is not None:
            bounds = f" [{spec.low} .. {spec.high}]"
        lines.append(f"{indent}# {spec.description}{bounds} (apply: {spec.apply})")
        lines.append(f"{indent}{parts[-1]}: {_yaml_scalar(spec.default)}")
    return "\n".join(lines) + "\n"


def render_markdown() -> str:
    """The README's parameter table: name, default, range or choices, when a change applies, description."""
    rows = ["| parameter | default | range | applies | description |", "|---|---|---|---|---|"]
    for spec in all_params():
        if spec.choices:
            bounds = " \\| ".join(spec.choices)
        elif spec.low is not None:
            bounds = " .. ".join(str(v) if isinstance(v, int) else f"{v:g}" for v in (spec.low, spec.high))
        else:
            bounds = ""
        default = _yaml_scalar(spec.default) if spec.default == "" else _yaml_scalar(spec.default).strip('"')
        description = spec.description.replace("|", "\\|")
        rows.append(f"| `{spec.name}` | `{default}` | {bounds} | {spec.apply} | {description} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    import sys

    print(render_markdown() if "--markdown" in sys.argv else render_yaml(), end="")
