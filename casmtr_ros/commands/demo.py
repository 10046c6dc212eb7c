"""``casmtr-vo demo --out DIR``: make the demo bag in DIR, replay it with the default matcher, print the ATE."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from casmtr_ros.commands.make_demo_bag import add_demo_arguments, demo_config
from casmtr_ros.commands.replay import add_matcher_arguments, format_summary, run_replay


def run(args: argparse.Namespace) -> int:
    from casmtr_ros.bags.demo import make_demo_bag

    out = Path(args.out)
    bag = out / "demo_bag"
    if bag.exists():
        if not (bag / "metadata.yaml").is_file():
            raise ValueError(f"{bag} exists and is not a bag; choose another --out")
        shutil.rmtree(bag)  # our own previous demo bag
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    make_demo_bag(bag, demo_config(args), storage=args.storage, progress=not args.quiet)
    t1 = time.perf_counter()
    print(f"demo bag: {bag} ({args.frames} frames {args.size[0]}x{args.size[1]}, rendered in {t1 - t0:.1f} s)")
    metrics = run_replay(str(bag), str(out / "replay"), args.matcher, args.weights, args.matcher_opt,
                         progress=not args.quiet)
    t2 = time.perf_counter()
    print(format_summary(metrics))
    ev = metrics.get("evaluation", {})
    status = f"ATE {ev['ate_m']['rmse']:.4f} m" if "ate_m" in ev else "ATE unavailable"
    print(f"demo: {status} with {metrics['matcher']} | render {t1 - t0:.1f} s + replay {t2 - t1:.1f} s | "
          f"outputs in {out / 'replay'}")
    return 0 if "ate_m" in ev else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="make the demo bag, replay it and print the ATE", description=__doc__)
    p.add_argument("--out", default="out/demo", help="output directory (default out/demo)")
    add_demo_arguments(p)
    add_matcher_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
