"""``casmtr-vo replay INPUT --out DIR``: replay a bag or dataset folder through the VO pipeline and evaluate it.

INPUT is a rosbag2 directory (sqlite3 or mcap), a ROS 1 ``.bag``, a TUM RGB-D folder or a KITTI odometry folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from casmtr_ros.vo.config import VOConfig


def add_matcher_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--matcher", default=None,
                   help="matcher name (`casmtr-vo matchers`); default casmtr-4c-lite with its shipped weights, "
                        "else sift")
    p.add_argument("--weights", default=None, help="checkpoint for CasMTR matchers")
    p.add_argument("--matcher-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="matcher option, repeatable (e.g. resize=640, device=cuda)")


def load_vo_config(path: str | None, items: list[str]) -> VOConfig:
    """VOConfig from an optional YAML file (flat keys, or the node's ``vo:`` section) and KEY=VALUE overrides."""
    import yaml

    from casmtr_ros.evaluation.common import parse_options

    values: dict = {}
    if path:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of VO parameters")
        values.update(data.get("vo", data))
    values.update(parse_options(items))
    return VOConfig.from_dict(values)


def format_summary(metrics: dict) -> str:
    lines = [f"frames {metrics['frames']}, poses {metrics['poses']}, keyframes {metrics['keyframes']}, "
             f"lost {metrics['lost_frames']}, refused {metrics['refused_frames']}, resets {metrics['resets']}"]
    per = metrics["timing_s"]["per_frame"]
    if per:
        lines.append(f"time per frame: mean {per['mean'] * 1000:.0f} ms, median {per['median'] * 1000:.0f} ms")
    ev = metrics.get("evaluation", {})
    if "ate_m" in ev:
        lines.append(f"ATE RMSE {ev['ate_m']['rmse']:.4f} m ({ev['alignment']} alignment, "
                     f"{ev['associated_poses']} poses, {ev['gt_path_length_m']:.2f} m path)")
        rpe = ev["rpe_per_frame"].get("trans_m")
        if rpe:
            lines.append(f"RPE per frame RMSE {rpe['rmse']:.4f} m, {ev['rpe_per_frame']['rot_deg']['rmse']:.3f} deg")
    else:
        lines.append(f"no ATE: {ev.get('error', 'no ground truth')}")
    return "\n".join(lines)


def run_replay(input_path: str, out: str, matcher_name: str | None, weights: str | None, matcher_opts: list[str],
               vo_config: str | None = None, vo_set: list[str] | None = None, progress: bool = True,
               plots: bool = True, **source_kwargs: Any) -> dict:
    from casmtr_ros.bags.reader import open_source
    from casmtr_ros.evaluation.common import make_matcher, parse_options, vo_matcher_options
    from casmtr_ros.evaluation.replay import ReplayOptions, replay
    from casmtr_ros.vo.pipeline import Pipeline

    source = open_source(input_path, **source_kwargs)
    config = load_vo_config(vo_config, vo_set or [])
    matcher, note = make_matcher(matcher_name, weights, vo_matcher_options(matcher_name, parse_options(matcher_opts)))
    if note:
        print(note, file=sys.stderr)
    name = getattr(matcher, "name", matcher_name or "?")
    print(f"replaying {source.info.path} ({source.info.kind}, {len(source)} frames"
          f"{', image ' + source.info.image_topic if source.info.image_topic else ''}"
          f"{', depth ' + source.info.depth_topic if source.info.depth_topic else ''}) with {name}", file=sys.stderr)
    result = replay(source, Pipeline(matcher, config), out, ReplayOptions(progress=progress, plots=plots),
                    extra={"matcher": name, "matcher_note": note, "vo_config": config.to_dict()})
    return result.metrics


def run(args: argparse.Namespace) -> int:
    metrics = run_replay(args.input, args.out, args.matcher, args.weights, args.matcher_opt, args.config, args.set,
                         progress=not args.no_progress, plots=not args.no_plots, image_topic=args.image_topic,
                         info_topic=args.info_topic, depth_topic=args.depth_topic, gt=args.gt,
                         use_depth=not args.no_depth, max_frames=args.max_frames)
    print(format_summary(metrics))
    print(f"outputs in {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="replay a bag / TUM / KITTI folder through the VO pipeline and evaluate",
                       description=__doc__)
    p.add_argument("input", help="rosbag2 directory, ROS 1 .bag, TUM RGB-D folder or KITTI odometry folder")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--image-topic", default=None, help="image topic (auto-detected by default)")
    p.add_argument("--info-topic", default=None, help="camera_info topic (auto-detected by default)")
    p.add_argument("--depth-topic", default=None, help="depth topic (auto-detected when one exists)")
    p.add_argument("--no-depth", action="store_true", help="ignore depth: monocular replay")
    p.add_argument("--gt", default=None, help="ground truth: a pose topic or a TUM file (auto-detected topic)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    add_matcher_arguments(p)
    p.add_argument("--config", default=None, help="YAML file with VO parameters (casmtr_ros.vo.config.VOConfig)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="VO parameter override")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots and match pictures")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
