"""``casmtr-vo eval-homography DIR``: HPatches corner-error AUC at 3/5/10 px, side by side per matcher.

DIR is one HPatches sequence (images 1..6 and H_1_k) or a folder of sequences. Images are resized to a shorter
side of 480 px by default (the LoFTR/CasMTR protocol); the homography comes from OpenCV RANSAC for every matcher.
"""

from __future__ import annotations

import argparse

from casmtr_ros.commands.eval_pairs import add_common, table, write_json

COLUMNS = [("matcher", "matcher", "{}"), ("auc@3", "AUC@3px", "{:.1%}"), ("auc@5", "AUC@5px", "{:.1%}"),
           ("auc@10", "AUC@10px", "{:.1%}"), ("precision", "precision", "{:.1%}"),
           ("matches_mean", "matches", "{:.0f}"), ("failures", "failed", "{}"),
           ("time_per_pair_s", "ms/pair", "{:.0f}")]


def run(args: argparse.Namespace) -> int:
    from casmtr_ros.evaluation.common import make_matcher, parse_options
    from casmtr_ros.evaluation.homography import HomographyConfig, evaluate_homography

    config = HomographyConfig(short_side=args.short_side or None, ransac_threshold_px=args.ransac_px,
                              top_k=args.top_k)
    # every matcher is built first, so a missing optional package fails before any long evaluation
    matchers = {name: make_matcher(name, args.weights, parse_options(args.matcher_opt))[0] for name in args.matcher}
    results = {name: evaluate_homography(m, args.dir, config, progress=not args.no_progress)
               for name, m in matchers.items()}
    first = next(iter(results.values()))
    print(f"{first['summary']['pairs']} pairs from {args.dir} (shorter side {config.short_side or 'original'})")
    print(table(results, COLUMNS))
    write_json(args.json, {"dir": str(args.dir), "results": results})
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval-homography", help="HPatches corner-error AUC@3/5/10 px", description=__doc__)
    p.add_argument("dir", help="an HPatches sequence folder or a folder of sequences")
    p.add_argument("--short-side", type=int, default=480, help="resize shorter side to this (0 = original; 480)")
    p.add_argument("--ransac-px", type=float, default=3.0, help="homography RANSAC threshold in pixels (3)")
    p.add_argument("--top-k", type=int, default=None, help="keep the K most confident matches (LoFTR: 1000)")
    add_common(p)
    p.set_defaults(func=run)
