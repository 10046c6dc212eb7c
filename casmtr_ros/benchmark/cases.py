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


def build(case: Case) -> tuple[Matcher, str]:
    """The matcher of a case and a note on its weights."""
    device, _, mixed = PATHS[case.path]
    if is_casmtr(case.matcher):
        from casmtr_ros.matching.casmtr import CasMTRMatcher
        from casmtr_ros.model import variant_config

        cfg = variant_config(case.matcher)
        weights = case.options.get("weights") or cfg.get("default_weights")
        conf = {"variant": case.matcher, "device": device, "resize": None, "mixed_precision": mixed}
        if weights:
            conf["weights"] = weights
            note = f"weights {weights}"
        else:
            conf["random_init"] = True
            note = "random weights (official architecture; timings do not depend on weights)"
        return CasMTRMatcher(conf), note
    if device != "cpu":
        raise ValueError(f"{case.matcher}: only benchmarked on the CPU")
    if case.matcher in ("sift", "orb"):
        from casmtr_ros.matching import build_matcher

        return build_matcher(case.matcher), "OpenCV"
    from casmtr_ros.benchmark.peers import PEERS

    if case.matcher not in PEERS:
        raise ValueError(f"unknown benchmark matcher {case.matcher!r}")
    return PEERS[case.matcher](), "pretrained weights shipped in the package"
