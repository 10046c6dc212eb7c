"""``casmtr-vo train CONFIG [--resume] [--out DIR]``: train a CasMTR variant from a YAML config.

CONFIG is a YAML path or the name of a packaged config (``casmtr_ros/configs/NAME.yaml``, e.g.
``train_lite_cpu``). Scale out with ``torchrun --nproc_per_node N -m casmtr_ros.cli train CONFIG ...``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from casmtr_ros.training.config import load_config
    from casmtr_ros.training.trainer import Trainer

    cfg = load_config(args.config)
    if args.init:
        cfg.init = args.init
    if args.steps is not None:
        cfg.stages[-1].steps = max(0, args.steps - sum(s.steps for s in cfg.stages[:-1]))
    out = Path(args.out or Path("runs") / cfg.name)
    if args.export_only:
        return _export(out, args.export)
    trainer = Trainer(cfg, out, resume=args.resume, device=args.device, progress=not args.no_progress)
    try:
        logs = trainer.train(time_budget_s=None if args.minutes is None else args.minutes * 60)
    finally:
        trainer.close()
    if trainer.is_main and args.export:
        _export(out, args.export)
    if trainer.is_main:
        print(f"step {trainer.step}: " + ", ".join(f"{k}={v:.4g}" for k, v in logs.items()
                                                   if isinstance(v, float) and k.startswith(("loss", "acc", "epe"))))
        print(f"checkpoint: {out / 'last.pt'}; log: {out / 'metrics.csv'}; curves: {out / 'curves.png'}")
    return 0


def _export(out: Path, dest: str | None) -> int:
    from casmtr_ros.training.export import export_weights

    if not dest:
        raise ValueError("--export-only needs --export PATH")
    meta = export_weights(out / "last.pt", dest)
    print(f"exported step {meta['step']} of {meta['variant']} to {dest} ({meta['bytes'] / 1e6:.1f} MB)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a CasMTR variant from a YAML config (CPU, GPU or torchrun DDP)")
    p.add_argument("config", help="YAML file or packaged config name (e.g. train_lite_cpu)")
    p.add_argument("--out", help="run folder (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue exactly from <out>/last.pt")
    p.add_argument("--init", help="initial weights: 'xfeat', 'none', a checkpoint path or shipped weights name")
    p.add_argument("--steps", type=int, help="total steps (changes the last stage's length)")
    p.add_argument("--minutes", type=float,
                   help="time budget: fit the last stage's schedule to it after a few steps, stop and save in time")
    p.add_argument("--device", help="cpu, cuda (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--export", metavar="PATH", help="after training, write the weights (fp16) and PATH.json")
    p.add_argument("--export-only", action="store_true", help="only export <out>/last.pt to --export")
    p.set_defaults(func=run)
