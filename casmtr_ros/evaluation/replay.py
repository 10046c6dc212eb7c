"""Offline replay: frames from a :class:`~casmtr_ros.bags.reader.FrameSource` through the VO pipeline, then files.

Deterministic: frames are read in stamp order in one thread, and the random generators of OpenCV, NumPy and
torch are seeded before the first frame, so the same input gives the same trajectory. Writes into ``out_dir``:

- ``trajectory.tum``: estimated camera poses ``T_odom_cam`` (TUM: ``stamp_s tx ty tz qx qy qz qw``, sorted);
- ``keyframe_pairs.csv``: every verified keyframe pair (stamps, scaled ``T_1_0`` as translation + quaternion,
  metric flag, scale, matches, inliers, method, residual, translation/rotation standard deviations);
- ``timings.csv``: one row per frame (state, status, matches, inliers, read time and the pipeline's stage times);
- ``metrics.json``: counts, timing summary, and ATE/RPE when ground truth exists;
- ``trajectory.png``, ``ate_over_time.png``, ``matches_*.png`` (plots, unless disabled);
- ``ground_truth.tum`` when the source has ground truth.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from casmtr_ros.bags.reader import FrameSource
from casmtr_ros.evaluation.trajectory import Trajectory, TrajectoryMetrics, evaluate_trajectory, write_tum
from casmtr_ros.vo.pipeline import Pipeline
from casmtr_ros.vo.types import FrameResult, TrackingState


@dataclass
class ReplayOptions:
    """Options of :func:`replay`: progress bar, plots, how many match pictures, seed, GT association tolerance."""

    progress: bool = True
    plots: bool = True
    match_pictures: int = 3
    seed: int = 0
    gt_max_diff_s: float = 0.02


@dataclass
class ReplayResult:
    """What :func:`replay` produced (also written to ``out_dir``)."""

    trajectory: Trajectory
    metrics: dict[str, Any]
    out_dir: Path
    files: list[Path] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed OpenCV's, NumPy's and (if loaded) torch's random generators."""
    import sys

    cv2.setRNGSeed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def _pose_row(T: np.ndarray) -> list[float]:
    q = Rotation.from_matrix(T[:3, :3]).as_quat()
    return [*T[:3, 3].tolist(), *q.tolist()]


def _summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, np.float64)
    if a.size == 0:
        return {}
    return {"mean": float(a.mean()), "median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "max": float(a.max())}


class _MatchPictures:
    """Keeps the last keyframe image and draws a few keyframe pairs spread over the sequence."""

    def __init__(self, out_dir: Path, count: int, total_frames: int) -> None:
        self.out_dir, self.count = out_dir, count
        total = max(total_frames, 1)
        self.targets = [int(total * k / max(count, 1)) for k in range(count)]
        self.last_image: np.ndarray | None = None
        self.files: list[Path] = []

    def update(self, index: int, image: np.ndarray, result: FrameResult) -> None:
        from casmtr_ros.evaluation.viz import save_matches

        if not result.is_keyframe:
            return
        pair = result.keyframe_pair
        if pair is not None and self.last_image is not None and self.targets and index >= self.targets[0]:
            self.targets.pop(0)
            path = self.out_dir / f"matches_{index:06d}.png"
            title = f"keyframes {pair.stamp0_ns * 1e-9:.3f} s -> {pair.stamp1_ns * 1e-9:.3f} s"
            self.files.append(save_matches(path, self.last_image, image, pair.matches, pair.inlier_mask, title=title))
        self.last_image = image


def replay(source: FrameSource, pipeline: Pipeline, out_dir: str | Path, options: ReplayOptions | None = None,
           extra: dict[str, Any] | None = None) -> ReplayResult:
    """Run every frame of ``source`` through ``pipeline`` and write the outputs listed in the module docstring.

    ``extra`` is merged into ``metrics.json`` (e.g. the matcher name). Refused frames (``InputError`` from the
    pipeline) are counted and logged in ``timings.csv``, not fatal.
    """
    from casmtr_ros.types import InputError

    options = options or ReplayOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(options.seed)
    pictures = _MatchPictures(out, options.match_pictures if options.plots else 0, len(source))
    stamps: list[int] = []
    poses: list[np.ndarray] = []
    metric_flags: list[bool] = []
    kf_rows: list[list[Any]] = []
    rows: list[dict[str, Any]] = []
    states: dict[str, int] = {}
    refused = resets = keyframes = 0
    frames = iter(source)
    bar = None
    if options.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(source) or None, desc="replay", unit="frame", dynamic_ncols=True)
    t_start = time.perf_counter()
    index = 0
    try:
        while True:
            t0 = time.perf_counter()
            try:
                frame = next(frames)
            except StopIteration:
                break
            read_s = time.perf_counter() - t0
            row: dict[str, Any] = {"index": index, "stamp_ns": frame.stamp_ns, "read_s": round(read_s, 6)}
            t1 = time.perf_counter()
            try:
                result = pipeline.process(frame)
            except InputError as exc:
                refused += 1
                row.update(state="refused", status=f"refused: {exc}", wall_s=round(time.perf_counter() - t1, 6))
                rows.append(row)
                index += 1
                if bar is not None:
                    bar.update(1)
                continue
            row["wall_s"] = round(time.perf_counter() - t1, 6)
            states[result.state.value] = states.get(result.state.value, 0) + 1
            resets += int(result.reset)
            keyframes += int(result.is_keyframe)
            row.update(state=result.state.value, keyframe=int(result.is_keyframe), status=result.status,
                       matches=result.num_matches, inliers=result.num_inliers,
                       **{f"{k}_s": round(float(v), 6) for k, v in result.timings.items()})
            rows.append(row)
            if result.odometry is not None:
                stamps.append(result.odometry.stamp_ns)
                poses.append(np.asarray(result.odometry.T_odom_cam, np.float64))
                metric_flags.append(bool(result.odometry.metric))
            pair = result.keyframe_pair
            if pair is not None:
                rp = pair.relative_pose
                cov = rp.scaled_covariance()
                std = np.sqrt(np.clip(np.diag(cov), 0, None))
                kf_rows.append([pair.stamp0_ns, pair.stamp1_ns, *_pose_row(rp.matrix(scaled=True)), int(rp.metric),
                                rp.scale, len(pair.matches), rp.num_inliers, rp.method, rp.residual_rms,
                                float(np.linalg.norm(std[:3])), float(np.degrees(np.linalg.norm(std[3:])))])
            pictures.update(index, frame.image, result)
            index += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{result.state.value} kf={keyframes}", refresh=False)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t_start

    traj = Trajectory.from_lists(stamps, poses)
    files = [out / "trajectory.tum", out / "keyframe_pairs.csv", out / "timings.csv", out / "metrics.json"]
    write_tum(files[0], traj)
    with open(files[1], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["stamp0_ns", "stamp1_ns", "tx", "ty", "tz", "qx", "qy", "qz", "qw", "metric", "scale",
                    "matches", "inliers", "method", "residual_rms_px", "trans_std", "rot_std_deg"])
        w.writerows(kf_rows)
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    with open(files[2], "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)

    metric = bool(metric_flags) and all(metric_flags)
    walls = [r["wall_s"] for r in rows if "wall_s" in r]
    metrics: dict[str, Any] = {
        "source": vars(source.info) if hasattr(source, "info") else {},
        "frames": index,
        "poses": len(traj),
        "keyframes": keyframes,
        "keyframe_pairs": len(kf_rows),
        "lost_frames": states.get(TrackingState.LOST.value, 0),
        "states": states,
        "refused_frames": refused,
        "resets": resets,
        "metric": metric,
        "timing_s": {"wall_total": wall, "per_frame": _summary(walls),
                     "fps": index / wall if wall > 0 else None},
        **(extra or {}),
    }
    stage_keys = sorted({k for r in rows for k in r if k.endswith("_s") and k not in ("read_s", "wall_s")})
    metrics["timing_s"]["stages"] = {k[:-2]: _summary([r[k] for r in rows if k in r]) for k in stage_keys}

    evaluation: TrajectoryMetrics | None = None
    try:
        gt = source.ground_truth()
        gt_error = "no ground truth in the source"
    except (InputError, OSError) as exc:  # a broken ground truth must not cost the replay's outputs
        gt, gt_error = None, f"ground truth unreadable: {exc}"
    if gt is not None and len(gt):
        write_tum(out / "ground_truth.tum", gt)
        files.append(out / "ground_truth.tum")
        try:
            evaluation = evaluate_trajectory(traj, gt, metric=metric, max_diff_s=options.gt_max_diff_s)
            metrics["evaluation"] = evaluation.summary
        except Exception as exc:  # too few poses, no overlap in time...: reported, not fatal
            metrics["evaluation"] = {"error": str(exc)}
    else:
        metrics["evaluation"] = {"error": gt_error}
    files[3].write_text(json.dumps(metrics, indent=2, default=_json_default) + "\n")
    if options.plots:
        from casmtr_ros.evaluation.plots import plot_ate_over_time, plot_trajectory

        files.append(plot_trajectory(out / "trajectory.png", traj, evaluation))
        if evaluation is not None:
            files.append(plot_ate_over_time(out / "ate_over_time.png", evaluation))
    files += pictures.files
    return ReplayResult(traj, metrics, out, files)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
