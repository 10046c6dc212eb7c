"""``casmtr-vo make-demo-bag OUT``: render the demo room sequence into a rosbag2 with exact ground truth."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from casmtr_ros.bags.demo import DemoConfig


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError(f"size must be at least 32x32, got {text!r}")
    return w, h


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=60, help="number of frames (default 60, 10 Hz)")
    p.add_argument("--depth", action="store_true", help="also write a 32FC1 depth topic (metric replay)")
    p.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3", help="rosbag2 storage")
    p.add_argument("--size", type=parse_size, default=(640, 480), metavar="WxH", help="image size (640x480)")
    p.add_argument("--seed", type=int, default=0, help="texture and noise seed")
    p.add_argument("--noise", type=float, default=1.0, help="pixel noise std in grey levels (default 1)")


def demo_config(args: argparse.Namespace) -> DemoConfig:

    if args.frames < 2:
        raise ValueError(f"--frames must be at least 2, got {args.frames}")
    return DemoConfig(frames=args.frames, width=args.size[0], height=args.size[1], seed=args.seed,
                      noise_std=args.noise, depth=args.depth)


def run(args: argparse.Namespace) -> int:
    from casmtr_ros.bags.demo import make_demo_bag

    if Path(args.out).exists():
        raise ValueError(f"{args.out} exists already; choose a new bag path")
    t0 = time.perf_counter()
    path = make_demo_bag(args.out, demo_config(args), storage=args.storage, progress=not args.quiet)
    print(f"wrote {path} ({args.frames} frames, {args.size[0]}x{args.size[1]}, {args.storage}"
          f"{', depth' if args.depth else ''}) in {time.perf_counter() - t0:.1f} s")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-demo-bag", help="render the demo scene into a rosbag2 with ground truth",
                       description=__doc__)
    p.add_argument("out", help="bag directory to create (must not exist)")
    add_demo_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
