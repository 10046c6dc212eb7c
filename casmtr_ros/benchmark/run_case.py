"""Run one benchmark case in this process and print its result as JSON (``python -m ... '<case json>'``).

Run in a fresh subprocess per case (see :mod:`casmtr_ros.benchmark.matcher_bench`) so that the peak RSS belongs
to that case alone. Per timed pair: the matcher's own stage timings (``Matches.timings``), the wall time of
``match()``, and the relative-pose estimation on its matches with the project's essential-matrix estimator.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from typing import Any

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pose(matches, K: np.ndarray) -> tuple[float, int]:
    """Seconds and inliers of the essential-matrix estimation (0 inliers when it fails)."""
    from casmtr_ros.geometry.relative_pose import VerificationError, VerifyParams, estimate_essential

    t = time.perf_counter()
    Kinv = np.linalg.inv(K)
    x0 = (np.c_[matches.kpts0, np.ones(len(matches))] @ Kinv.T)[:, :2]
    x1 = (np.c_[matches.kpts1, np.ones(len(matches))] @ Kinv.T)[:, :2]
    try:
        inliers = estimate_essential(x0, x1, VerifyParams(focal_px=float(K[0, 0]))).num_inliers
    except VerificationError:
        inliers = 0
    return time.perf_counter() - t, inliers


def run(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from casmtr_ros.benchmark.cases import PATHS, SIZES, Case, build, is_casmtr
    from casmtr_ros.benchmark.images import load_pair

    case = Case(**spec)
    device, ops_backend, _ = PATHS[case.path]
    if device == "cuda" and not torch.cuda.is_available():
        return {"case": case.to_json(), "skipped": "no CUDA device"}
    from casmtr_ros import ops

    ops.set_backend(ops_backend)
    pair = load_pair(SIZES[case.size])
    matcher, note = build(case)
    rss_idle = _rss_mb()
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for _ in range(case.warmup):
        matcher.match(pair.image0, pair.image1)
    runs: list[dict[str, float]] = []
    started = time.perf_counter()
    counts, inliers = [], []
    while len(runs) < max(1, case.repeats):
        t = time.perf_counter()
        m = matcher.match(pair.image0, pair.image1)
        if cuda:
            torch.cuda.synchronize()
        total = time.perf_counter() - t
        pose_s, n_in = _pose(m, pair.K)
        runs.append({**m.timings, "match_total": total, "pose_estimation": pose_s, "total": total + pose_s})
        counts.append(len(m))
        inliers.append(n_in)
        if time.perf_counter() - started > case.budget_s:
            break
    stages = sorted({k for r in runs for k in r})
    result: dict[str, Any] = {
        "case": case.to_json(),
        "weights": note,
        "compute_path": f"{device}/{ops.backend_name(device) if is_casmtr(case.matcher) else 'n/a'}",
        "n_timed": len(runs),
        "median_s": {k: statistics.median(r.get(k, 0.0) for r in runs) for k in stages},
        "runs": runs,
        "matches": int(statistics.median(counts)),
        "pose_inliers": int(statistics.median(inliers)),
        "rss_idle_mb": round(rss_idle, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "threads": torch.get_num_threads(),
    }
    if cuda and is_casmtr(case.matcher):
        # the timed runs above do not synchronise between stages (asynchronous launches would make their stage
        # split meaningless): a few extra runs with the model's per-stage synchronisation give the split
        matcher.conf["profile"] = True
        synced = [matcher.match(pair.image0, pair.image1).timings for _ in range(3)]
        matcher.conf["profile"] = False
        for k in {k for t in synced for k in t}:
            result["median_s"][k] = statistics.median(t.get(k, 0.0) for t in synced)
        result["stage_split"] = "CUDA-synchronised between stages, median of 3 extra runs"
    if cuda:
        result["gpu_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        result["gpu"] = torch.cuda.get_device_name()
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    print(json.dumps(run(json.loads(argv[0]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
