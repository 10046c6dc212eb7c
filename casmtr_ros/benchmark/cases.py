"""What one benchmark case is (matcher x image size x compute path) and how to build its matcher."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from casmtr_ros.matching.base import Matcher

SIZES: dict[str, tuple[int, int]] = {  # name -> (width, height)
    "320x240": (320, 240),
    "640x480": (640, 480),
    "1280x960": (1280, 960),
    "832x832": (832, 832),
}

# compute path -> (device, ops backend, mixed precision)
PATHS: dict[str, tuple[str, str, str | None]] = {
    "cpu-torch": ("cpu", "torch", None),
    "cuda-torch": ("cuda", "torch", None),
    "cuda-kernels": ("cuda", "cuda", None),
    "cuda-torch-fp16": ("cuda", "torch", "fp16"),
    "cuda-kernels-fp16": ("cuda", "cuda", "fp16"),
}


@dataclass
class Case:
    """One measurement: ``matcher`` at ``size`` on ``path`` with ``warmup`` + ``repeats`` pairs."""

    matcher: str
    size: str
    path: str = "cpu-torch"
    warmup: int = 1
    repeats: int = 3
    budget_s: float = 600.0  # stop repeating once this much time is spent (at least one timed run)
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def is_casmtr(name: str) -> bool:
    return name.startswith("casmtr")


def split_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """A benchmark matcher spec, ``NAME`` or ``NAME@KEY=VALUE,KEY=VALUE`` (values as YAML scalars), as the name
    and its options: ``casmtr-4c-lite@resize=480,klt_refine=true`` times the lite matcher on a 480-pixel network
    input with the Lucas-Kanade polish; the spec is the row's label in the report."""
    from casmtr_ros.evaluation.common import parse_options

    name, _, rest = spec.partition("@")
    try:
        return name, parse_options([item for item in rest.split(",") if item])
    except ValueError:
        raise ValueError(f"matcher spec {spec!r}: expected NAME@KEY=VALUE,KEY=VALUE") from None


def build(case: Case) -> tuple[Matcher, str]:
    """The matcher of a case and a note on its weights."""
    device, _, mixed = PATHS[case.path]
    name, spec_options = split_spec(case.matcher)
    if is_casmtr(name):
        from casmtr_ros.matching.casmtr import CasMTRMatcher
        from casmtr_ros.model import variant_config

        cfg = variant_config(name)
        weights = case.options.get("weights") or cfg.get("default_weights")
        # native resolution (no longer-side cap, no pixel budget) unless the spec says otherwise
        conf = {"variant": name, "device": device, "resize": None, "max_pixels": 0, "mixed_precision": mixed,
                **spec_options}
        if weights:
            conf["weights"] = weights
            note = f"weights {weights}"
        else:
            conf["random_init"] = True
            note = "random weights (official architecture; timings do not depend on weights)"
        return CasMTRMatcher(conf), note
    if device != "cpu":
        raise ValueError(f"{case.matcher}: only benchmarked on the CPU")
    if name in ("sift", "orb"):
        from casmtr_ros.matching import build_matcher

        return build_matcher(name, conf=spec_options), "OpenCV"
    from casmtr_ros.benchmark.peers import PEERS

    if name not in PEERS:
        raise ValueError(f"unknown benchmark matcher {name!r}")
    return PEERS[name](spec_options or None), "pretrained weights shipped in the package"
