"""``casmtr-vo eval-pairs PAIRS --images DIR``: relative-pose AUC@5/10/20 on a SuperGlue/LoFTR pairs file.

Every matcher's matches go through the same essential-matrix estimator; a side-by-side table is printed and the
full results (per pair too) go to ``--json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = [("matcher", "matcher", "{}"), ("auc@5", "AUC@5", "{:.1%}"), ("auc@10", "AUC@10", "{:.1%}"),
           ("auc@20", "AUC@20", "{:.1%}"), ("precision", "precision", "{:.1%}"),
           ("matches_mean", "matches", "{:.0f}"), ("failures", "failed", "{}"),
           ("time_per_pair_s", "ms/pair", "{:.0f}")]


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--matcher", nargs="+", default=["sift"],
                   help="one or more matcher names (default: sift); the optional benchmark peers (xfeat, "
                        "xfeat-lighterglue, disk-lightglue, aliked-lightglue) too, when installed")
    p.add_argument("--weights", default=None, help="checkpoint for CasMTR matchers")
    p.add_argument("--matcher-opt", action="append", default=[], metavar="KEY=VALUE", help="matcher option")
    p.add_argument("--json", default=None, help="write the full results here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def table(results: dict[str, dict], columns: list[tuple[str, str, str]]) -> str:
    from casmtr_ros.evaluation.common import format_table

    rows = []
    for name, res in results.items():
        s = dict(res["summary"])
        if "time_per_pair_s" in s:
            s["time_per_pair_s"] = s["time_per_pair_s"] * 1000
        rows.append({"matcher": name, **s})
    return format_table(rows, columns)


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, default=float) + "\n")


def run(args: argparse.Namespace) -> int:
    from casmtr_ros.evaluation.common import make_matcher, parse_options
    from casmtr_ros.evaluation.pairs import PoseEstimatorConfig, evaluate_pairs, read_pairs

    pairs = read_pairs(args.pairs)
    if args.max_pairs:
        pairs = pairs[:args.max_pairs]
    if not Path(args.images).is_dir():
        raise FileNotFoundError(f"images folder not found: {args.images}")
    config = PoseEstimatorConfig(ransac_threshold_px=args.ransac_px, epipolar_threshold=args.epi_thr)
    # every matcher is built first, so a missing optional package fails before any long evaluation
    matchers = {name: make_matcher(name, args.weights, parse_options(args.matcher_opt))[0] for name in args.matcher}
    results = {name: evaluate_pairs(m, pairs, args.images, args.resize, config, progress=not args.no_progress)
               for name, m in matchers.items()}
    print(f"{len(pairs)} pairs from {args.pairs}" + (f", resized to {args.resize}" if args.resize else ""))
    print(table(results, COLUMNS))
    write_json(args.json, {"pairs_file": str(args.pairs), "images": str(args.images), "results": results})
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval-pairs", help="relative-pose AUC on a SuperGlue/LoFTR pairs file", description=__doc__)
    p.add_argument("pairs", help="pairs file (name0 name1 rot0 rot1 K0 K1 T_0to1 per line)")
    p.add_argument("--images", required=True, help="folder the image names are relative to")
    p.add_argument("--resize", type=int, nargs="+", default=None, metavar="N",
                   help="resize before matching: one value = longest side, two = width height")
    p.add_argument("--max-pairs", type=int, default=None, help="only the first N pairs")
    p.add_argument("--ransac-px", type=float, default=0.5, help="essential RANSAC threshold in pixels (0.5)")
    p.add_argument("--epi-thr", type=float, default=1e-4,
                   help="precision threshold: squared symmetric epipolar distance, normalised (1e-4)")
    add_common(p)
    p.set_defaults(func=run)
