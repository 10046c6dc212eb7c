"""The trainer: progressive stages, exact resume, CSV/PNG logs, checkpoints, and torchrun DDP.

One command trains on one CPU, one GPU or many: launched by ``torchrun`` (``WORLD_SIZE > 1``) it joins the
process group (NCCL on GPUs, gloo on CPU), wraps the model in DistributedDataParallel, and each rank reads its
own shard of every global batch; only rank 0 writes logs and checkpoints.

Determinism and exact resume: the samples of global step ``t`` are the keys ``t*G .. t*G+G-1`` (``G`` = global
batch), rank ``r`` taking its contiguous share (:class:`StepShardSampler`); every sample's augmentation is
seeded by its key, the training step's random choices by ``(seed, step, rank)``, and the LR is a function of
the step. A checkpoint stores model, optimiser, step and RNG states, so a resumed run continues exactly.
"""

from __future__ import annotations

import csv
import gc
import math
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils.data import DataLoader, Sampler

from casmtr_ros.training import datasets as D
from casmtr_ros.training.config import SourceConf, TrainConfig, shared_data_dir
from casmtr_ros.training.forward import ForwardConf, training_step

CKPT_NAME = "last.pt"


# ----------------------------------------------------------------------------------------------- data


class StepShardSampler(Sampler[list[int]]):
    """Batch sampler: for global steps ``start..stop-1`` yields rank ``rank``'s keys of each global batch."""

    def __init__(self, start: int, stop: int, batch_size: int, rank: int = 0, world: int = 1) -> None:
        self.start, self.stop, self.bs, self.rank, self.world = start, stop, batch_size, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        G = self.bs * self.world
        for t in range(self.start, self.stop):
            base = t * G + self.rank * self.bs
            yield list(range(base, base + self.bs))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def _collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def build_source(sc: SourceConf, size: tuple[int, int], seed: int) -> D.PairSource:
    """Instantiate one entry of the data mix (roots relative to the shared data folder unless absolute)."""
    base = shared_data_dir()

    def root(default: str) -> Path:
        r = Path(sc.root or default)
        return r if r.is_absolute() else base / r

    opts = dict(sc.options)
    if sc.kind == "homography":
        return D.HomographyImages(root("train_images"), size, seed, **opts)
    if sc.kind == "rgbd":
        return D.RGBDSequences(root("train_rgbd"), size, seed, **opts)
    if sc.kind == "mvs":
        return D.MVSSets(root("train_mvs"), size, seed, **opts)
    if sc.kind == "render":
        return D.RenderedScenes(root("train_images"), size, seed, **opts)
    if sc.kind == "megadepth":
        return D.MegaDepthIndex(root("megadepth"), opts.pop("index_dir"), size, seed, **opts)
    if sc.kind == "scannet":
        return D.ScanNetIndex(root("scannet"), opts.pop("index_dir"), opts.pop("intrinsics"), size, seed, **opts)
    raise ValueError(f"unknown data source kind {sc.kind!r}")


def build_dataset(cfg: TrainConfig) -> D.Mixture:
    return D.Mixture([(build_source(s, cfg.image_size, cfg.seed), s.weight) for s in cfg.data], cfg.epoch_len,
                     cfg.seed)


# ---------------------------------------------------------------------------------------------- model


def build_training_model(cfg: TrainConfig) -> nn.Module:
    """Model of ``cfg.variant`` initialised per ``cfg.init``: 'xfeat', 'none', a checkpoint path or shipped name."""
    from casmtr_ros.model import build_model

    if cfg.variant == "casmtr-4c-lite":
        from casmtr_ros.model.lite import CASMTR_4C_LITE, init_lite

        model = build_model(CASMTR_4C_LITE)
    else:
        init_lite = None
        model = build_model(cfg.variant)
    if cfg.init == "xfeat":
        if init_lite is None:
            raise ValueError(f"init 'xfeat' is only defined for casmtr-4c-lite, not {cfg.variant}")
        init_lite(model)
    elif cfg.init not in ("none", ""):
        state = load_state_dict_any(cfg.init)
        model.load_state_dict(state, strict=True)
    return model


def load_state_dict_any(source: str) -> dict[str, torch.Tensor]:
    """State dict from a trainer checkpoint, a shipped weights file (path or name) or a plain state dict."""
    p = Path(source)
    if not p.is_file():
        shipped = Path(__file__).resolve().parents[1] / "weights" / f"{source}.pt"
        if not shipped.is_file():
            raise FileNotFoundError(f"initial weights not found: {source}")
        p = shipped
    obj = torch.load(p, map_location="cpu", weights_only=False)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    return {k.removeprefix("matcher."): (v.float() if v.is_floating_point() else v) for k, v in obj.items()}


def set_bn_eval(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


# ------------------------------------------------------------------------------------- optimisation


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate at a global step: per-stage linear warm-up from ``warmup_ratio``, then step decay."""
    _, st, k = cfg.stage_at(step)
    lr = st.lr
    if k < st.warmup_steps:
        a = k / max(1, st.warmup_steps)
        lr *= st.warmup_ratio + (1 - st.warmup_ratio) * a
    lr *= st.gamma ** sum(k >= m for m in st.milestones)
    return lr


def param_groups(model: nn.Module, cfg: TrainConfig, frozen: list[str]) -> list[dict[str, Any]]:
    """AdamW groups: backbone at ``backbone_lr_scale``; no weight decay on norms/biases; ``frozen`` excluded."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    bname = getattr(model, "names", {}).get("backbone", "backbone")
    for name, p in model.named_parameters():
        if not p.requires_grad or not p.is_floating_point() or any(name.startswith(f) for f in frozen):
            continue
        scale = cfg.backbone_lr_scale if name.startswith(bname) else 1.0
        wd = 0.0 if p.ndim <= 1 else cfg.weight_decay
        groups.setdefault((scale, wd), []).append(p)
    return [{"params": ps, "lr_scale": s, "weight_decay": wd} for (s, wd), ps in groups.items()]


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])


# ------------------------------------------------------------------------------------------ logging


def plot_log(csv_path: Path, png_path: Path) -> None:
    """Loss and metric curves of ``metrics.csv`` into one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    keys = [k for k in rows[0] if k not in ("step", "stage", "time_s")]
    step = np.array([float(r["step"]) for r in rows])
    n = len(keys)
    cols = 3
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(4 * cols, 2.6 * math.ceil(n / cols)), squeeze=False)
    for ax, k in zip(axes.flat, keys, strict=False):
        y = np.array([float(r[k]) if r.get(k) not in (None, "", "nan") else np.nan for r in rows])
        ax.plot(step, y, lw=0.6, alpha=0.5)
        if np.isfinite(y).sum() > 10:
            w = max(1, len(y) // 30)
            yy = np.convolve(np.nan_to_num(y), np.ones(w) / w, mode="valid")
            ax.plot(step[w - 1:], yy, lw=1.2)
        ax.set_title(k, fontsize=9)
        if k.startswith("loss"):
            ax.set_yscale("log")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)


LOG_KEYS = ["step", "stage", "lr", "loss", "loss_coarse", "loss_cascade", "loss_fine", "acc8", "acc4",
            "epe_fine_px", "epe_coarse_px", "n_gt8", "rows4", "sec_per_step", "time_s"]


# ------------------------------------------------------------------------------------------ trainer


class Trainer:
    """Runs a :class:`TrainConfig` into ``out_dir`` (``last.pt``, ``metrics.csv``, ``curves.png``, ``config.yaml``)."""

    def __init__(self, cfg: TrainConfig, out_dir: str | Path, resume: bool = False, device: str | None = None,
                 progress: bool = True) -> None:
        self.cfg = cfg
        self.out = Path(out_dir)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._owns_group = self.world > 1 and not dist.is_initialized()
        if self._owns_group:
            dist.init_process_group("nccl" if dev == "cuda" else "gloo")
        if dev == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            dev = f"cuda:{local}"
        self.device = torch.device(dev)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.is_main = self.rank == 0
        self.progress = progress and self.is_main
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.model = build_training_model(cfg).to(self.device)
        self.step = 0
        self.stage_idx = -1
        self.optimizer: torch.optim.Optimizer | None = None
        self.opt_state: dict[str, Any] | None = None
        if resume:
            self._load(self.out / CKPT_NAME)
        self.dataset = build_dataset(cfg)
        cuda = self.device.type == "cuda"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp, torch.bfloat16 if (
            cfg.amp == "auto" and cuda) else None)
        if not cuda and cfg.amp in ("fp16",):
            self.amp_dtype = None
        self.fconf = ForwardConf(cfg.cascade_conf_thr, cfg.cascade_border, cfg.cascade_max_rows,
                                 cfg.fine_max_matches, cfg.grad_checkpoint == "on" or (cfg.grad_checkpoint == "auto"
                                                                                        and cuda))
        self.scaler = torch.amp.GradScaler("cuda", enabled=cuda and self.amp_dtype == torch.float16)
        self._stop = False

    # -- checkpoints

    def _unwrapped(self) -> nn.Module:
        return self.model.module if hasattr(self.model, "module") else self.model

    def _load(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {path}")
        ck = torch.load(path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(ck["model"], strict=True)
        self.step = int(ck["step"])
        self.opt_state = ck.get("optimizer")
        self.stage_idx_ckpt = int(ck.get("stage_idx", -1))
        _set_rng_state(ck["rng"])

    def save(self) -> Path | None:
        if not self.is_main:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        ck = {
            "model": self._unwrapped().state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "step": self.step, "stage_idx": self.stage_idx, "rng": _rng_state(), "config": self.cfg.to_dict(),
            "variant": self.cfg.variant, "world_size": self.world,
        }
        tmp = self.out / (CKPT_NAME + ".tmp")
        torch.save(ck, tmp)
        os.replace(tmp, self.out / CKPT_NAME)
        if (self.out / "metrics.csv").is_file():
            try:
                plot_log(self.out / "metrics.csv", self.out / "curves.png")
            except Exception as exc:  # plotting must never stop training
                print(f"warning: plot failed: {exc}")
        return self.out / CKPT_NAME

    # -- stages

    def _enter_stage(self, idx: int) -> None:
        st = self.cfg.stages[idx]
        model = self._unwrapped()
        for name, p in model.named_parameters():
            if p.is_floating_point():
                trunk_frozen = ".trunk." in f".{name}" and getattr(model.part("backbone"), "freeze_trunk", False)
                p.requires_grad_(not trunk_frozen and not any(name.startswith(f) for f in st.frozen))
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
        groups = param_groups(model, self.cfg, st.frozen)
        self.optimizer = torch.optim.AdamW(groups, lr=st.lr, weight_decay=self.cfg.weight_decay)
        resumed = getattr(self, "stage_idx_ckpt", -1)
        if self.opt_state is not None and resumed == idx:
            self.optimizer.load_state_dict(self.opt_state)
        self.opt_state = None
        self.stage_idx = idx

    # -- loop

    def _signal(self, *_: Any) -> None:
        self._stop = True

    def fit_schedule(self, stop: int, sec_per_step: float, seconds_left: float) -> int:
        """Shrink the last stage so training ends within ``seconds_left`` at ``sec_per_step``; returns the new stop.

        The last stage's length and milestones are scaled together, so a run given a time budget (a short lease
        of a GPU) still completes its learning-rate decay. Never lengthens the schedule. The fitted config is what
        the checkpoint stores, so ``--resume`` continues the same schedule.
        """
        fit = self.step + max(1, int(seconds_left / max(sec_per_step, 1e-6)))
        if fit >= stop:
            return stop
        last = self.cfg.stages[-1]
        start = self.cfg.total_steps - last.steps
        new_len = max(1, fit - start)
        ratio = new_len / max(1, last.steps)
        last.milestones = [max(1, round(m * ratio)) for m in last.milestones]
        last.steps = new_len
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
            print(f"time budget: {sec_per_step:.3f} s/step, schedule fitted to {self.cfg.total_steps} steps "
                  f"(last stage {new_len}, milestones {last.milestones})", flush=True)
        return self.cfg.total_steps

    def train(self, max_steps: int | None = None, time_budget_s: float | None = None,
              fit_after: int = 40) -> dict[str, float]:
        """Train until the schedule's end, ``max_steps`` or ``time_budget_s`` seconds (then save and return).

        With a time budget the last stage is fitted to it (:meth:`fit_schedule`) after ``fit_after`` steps, and
        refitted after 2x, 4x, ... as many on the latest rate.
        """
        cfg = self.cfg
        stop = cfg.total_steps if max_steps is None else min(cfg.total_steps, max_steps)
        if self.step >= stop:
            return {}
        first_step = self.step
        t_fit0: float | None = None
        fit_step0 = next_fit = -1
        old = signal.signal(signal.SIGTERM, self._signal) if self.is_main else None
        sampler = StepShardSampler(self.step, stop, cfg.batch_size, self.rank, self.world)
        loader = DataLoader(self.dataset, batch_sampler=sampler, collate_fn=_collate, num_workers=cfg.num_workers,
                            persistent_workers=False, prefetch_factor=2 if cfg.num_workers else None)
        csv_path = self.out / "metrics.csv"
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=stop, initial=self.step, dynamic_ncols=True, desc=cfg.name)
        last_ckpt = time.time()
        t_start = time.time()
        last: dict[str, float] = {}
        acc: dict[str, list[float]] = {}
        self.model.train()
        if cfg.bn_eval:
            set_bn_eval(self.model)
        try:
            for batch in loader:
                idx, st, _ = cfg.stage_at(self.step)
                if idx != self.stage_idx:
                    self._enter_stage(idx)
                    self.model.train()
                    if cfg.bn_eval:
                        set_bn_eval(self.model)
                lr = lr_at(cfg, self.step)
                for g in self.optimizer.param_groups:
                    g["lr"] = lr * g["lr_scale"]
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                gen = torch.Generator().manual_seed(hash((cfg.seed, self.step, self.rank)) & 0x7FFFFFFF)
                t0 = time.time()
                with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                    enabled=self.amp_dtype is not None):
                    if self.world == 1:
                        loss, logs = training_step(self.model, batch, st.parts, self.fconf, cfg.loss, gen)
                    else:
                        loss, logs = self._ddp_step(batch, st.parts, gen)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(
                        [p for g in self.optimizer.param_groups for p in g["params"]], cfg.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.step += 1
                logs.update(step=self.step, stage=idx, lr=lr, sec_per_step=time.time() - t0,
                            time_s=time.time() - t_start)
                last = logs
                for k, v in logs.items():  # metrics are averaged over the logging interval
                    if isinstance(v, float) and math.isfinite(v):
                        acc.setdefault(k, []).append(v)
                if self.is_main and (self.step % cfg.log_every == 0 or self.step == stop):
                    new = not csv_path.is_file()
                    row = {k: (float(np.mean(acc[k])) if k in acc else "") for k in LOG_KEYS}
                    row.update(step=self.step, stage=idx, lr=lr, time_s=logs["time_s"])
                    with open(csv_path, "a", newline="") as f:
                        w = csv.DictWriter(f, LOG_KEYS, extrasaction="ignore")
                        if new:
                            w.writeheader()
                        w.writerow(row)
                    acc = {}
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{logs['loss']:.3f}", acc8=f"{logs.get('acc8', float('nan')):.2f}",
                                    acc4=f"{logs.get('acc4', float('nan')):.2f}")
                stop_now = self._stop
                if time_budget_s is not None:
                    done = self.step - first_step
                    if done == 5:  # skip the first steps (allocator, cudnn autotune, workers starting)
                        t_fit0, fit_step0, next_fit = time.time(), self.step, 5 + fit_after
                    elif done == next_fit and t_fit0 is not None and self.world == 1:
                        # refit after 40, 80, 160, ... more steps on the latest window's rate (steps slow down as
                        # more 1/4 rows pass the threshold); fitting only ever shortens the schedule
                        rate = (time.time() - t_fit0) / (self.step - fit_step0)
                        stop = self.fit_schedule(stop, rate, time_budget_s - (time.time() - t_start) - 5 * rate)
                        t_fit0, fit_step0, next_fit = time.time(), self.step, 5 + 2 * (next_fit - 5)
                    stop_now = stop_now or time.time() - t_start > time_budget_s or self.step >= stop
                if self.world > 1:
                    flag = torch.tensor([int(stop_now)], device=self.device)
                    dist.all_reduce(flag)
                    stop_now = bool(flag.item())
                if time.time() - last_ckpt > cfg.checkpoint_minutes * 60 or stop_now:
                    self.save()
                    last_ckpt = time.time()
                if stop_now:
                    break
        finally:
            if bar is not None:
                bar.close()
            if old is not None:
                signal.signal(signal.SIGTERM, old)
        self.save()
        return last

    def close(self) -> None:
        """End the process group this trainer started (all ranks wait for each other first).

        Without it the gloo/NCCL threads are torn down by static destructors at interpreter exit, which aborted
        a rank now and then ("terminate called without an active exception"). The DDP wrapper (its reducer holds
        the group) and the optimizer go first and are collected while the interpreter is fully alive, so that
        nothing of the group outlives :func:`torch.distributed.destroy_process_group`.
        """
        if getattr(self, "_owns_group", False) and dist.is_initialized():
            self.model = self._unwrapped()
            self.optimizer = None
            gc.collect()
            dist.barrier()
            dist.destroy_process_group()
            gc.collect()
            self._owns_group = False

    def _ddp_step(self, batch: dict[str, torch.Tensor], parts: list[str], gen: torch.Generator
                  ) -> tuple[torch.Tensor, dict[str, float]]:
        """DDP forward: run the training step on the wrapped module's forward hooks via a closure module."""
        return _DDPStep.run(self.model, batch, parts, self.fconf, self.cfg.loss, gen)


class _DDPStep:
    """Runs :func:`training_step` through DDP's ``forward`` so gradient synchronisation hooks are armed."""

    @staticmethod
    def run(ddp: nn.Module, batch, parts, fconf, lconf, gen):
        module = ddp.module
        original = module.forward

        def fwd(b):
            return training_step(module, b, parts, fconf, lconf, gen)

        module.forward = fwd
        try:
            return ddp(batch)
        finally:
            module.forward = original
