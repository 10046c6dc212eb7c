"""The zoom-search study of docs/model_card.md on the KITTI 06 development pairs (figures only; nothing trains).

``crops``: AUC of the gap-20 pairs with frame i cropped around its centre to fixed fractions (the first pass only).
``hypotheses``: per pair of every second pair of gaps 5, 10 and 20, matches / pose error of the first pass and of
the crops of either image around the median of its first-pass matches (what ``zoom_search`` chooses between).

    python tools/zoom_study.py crops [--shared ../shared]
    python tools/zoom_study.py hypotheses --json out/zoom_hypotheses.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from casmtr_ros.evaluation.common import error_auc, load_image
from casmtr_ros.evaluation.pairs import PosePair, estimate_pose, pose_errors, read_pairs
from casmtr_ros.matching import build_matcher
from casmtr_ros.matching.zoom import crop_box


def pose_error(k0: np.ndarray, k1: np.ndarray, pair: PosePair) -> float:
    est = estimate_pose(k0.astype(np.float64), k1.astype(np.float64), pair.K0, pair.K1)
    return max(pose_errors(pair.T_0to1, est[0], est[1])) if est is not None else float("inf")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", choices=("crops", "hypotheses"))
    p.add_argument("--shared", default=os.environ.get("CASMTR_SHARED", "../shared"))
    p.add_argument("--json", help="write the per-pair rows here")
    p.add_argument("--max-pairs", type=int, default=None, help="only the first N selected pairs")
    a = p.parse_args()
    root = Path(a.shared) / "data" / "kitti06_seq"
    pairs = read_pairs(root / "kitti06_pairs_with_gt.txt")

    def gap(pair: PosePair) -> int:
        return int(Path(pair.name1).stem) - int(Path(pair.name0).stem)

    # single passes (the study does the search), with the polish as it was when the study was made (no affine
    # refinement): the figures of the model card's "Zoom search" section
    matcher = build_matcher("casmtr-4c-lite", zoom_below=0, klt_affine=False)
    rows = []
    if a.study == "crops":
        sel = [q for q in pairs if gap(q) == 20][: a.max_pairs]
        for factor in (1.0, 0.8, 0.65, 0.5):
            errs = []
            for q in sel:
                im0, im1 = load_image(root / q.name0), load_image(root / q.name1)
                x0, y0, w, h = crop_box(im0.shape[:2], np.array([im0.shape[1] / 2, im0.shape[0] / 2]), factor)
                m = matcher.match(im0[y0:y0 + h, x0:x0 + w], im1)
                errs.append(pose_error(m.kpts0 + np.array([x0, y0]), m.kpts1, q))
            auc = {k: round(100 * v, 1) for k, v in error_auc(errs, [5, 10, 20]).items()}
            rows.append({"factor": factor, **auc})
            print(f"crop {factor}: {auc}", flush=True)
    else:
        sel = [q for q in pairs if gap(q) in (5, 10, 20)][::2][: a.max_pairs]
        for q in sel:
            im0, im1 = load_image(root / q.name0), load_image(root / q.name1)
            first = matcher.match(im0, im1)
            row = {"pair": f"{q.name0} {q.name1}", "gap": gap(q),
                   "full": (len(first), pose_error(first.kpts0, first.kpts1, q))}
            for k, im in enumerate((im0, im1)):
                pts = (first.kpts0, first.kpts1)[k]
                centre = np.median(pts, 0) if len(pts) >= 8 else np.array([im.shape[1] / 2, im.shape[0] / 2])
                x0, y0, w, h = crop_box(im.shape[:2], centre, 0.5)
                crop = im[y0:y0 + h, x0:x0 + w]
                m = matcher.match(crop, im1) if k == 0 else matcher.match(im0, crop)
                off = np.array([x0, y0], np.float32)
                k0, k1 = (m.kpts0 + off, m.kpts1) if k == 0 else (m.kpts0, m.kpts1 + off)
                row[f"zoom{k}"] = (len(m), pose_error(k0, k1, q))
            rows.append(row)
            print(json.dumps(row), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
