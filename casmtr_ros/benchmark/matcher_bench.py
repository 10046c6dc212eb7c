"""Run a list of cases, each in a fresh subprocess (clean peak RSS, isolation from crashes and OOM)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from casmtr_ros.benchmark.cases import Case

STAGE_ORDER = (
    "preprocess", "backbone", "coarse_attention", "coarse_matching", "cascade_attention", "cascade_matching",
    "refinement", "postprocess", "detect", "extract", "match", "pose_estimation",
)


def run_case_subprocess(case: Case, timeout_s: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """One case in ``python -m casmtr_ros.benchmark.run_case``; failures become ``{"error": ...}``."""
    cmd = [sys.executable, "-m", "casmtr_ros.benchmark.run_case", json.dumps(case.to_json())]
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return {"case": case.to_json(), "error": f"timed out after {timeout_s:.0f} s"}
    wall = time.perf_counter() - t
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"case": case.to_json(), "error": f"exit {proc.returncode}: {' | '.join(tail)}"}
    result = json.loads(lines[-1])
    result["subprocess_wall_s"] = round(wall, 1)
    return result


def machine_info() -> dict[str, Any]:
    """What the figures were measured on (CPU model, cores, load, torch, GPU)."""
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1_5_15": list(os.getloadavg()),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def ratios(results: list[dict[str, Any]], reference: str) -> None:
    """Add ``ratio_to_reference`` (total time / reference matcher's total at the same size, same run)."""
    ref = {
        r["case"]["size"]: r["median_s"]["total"]
        for r in results
        if "median_s" in r and r["case"]["matcher"] == reference and r["case"]["path"] == "cpu-torch"
    }
    for r in results:
        if "median_s" in r and r["case"]["size"] in ref:
            r["ratio_to_reference"] = round(r["median_s"]["total"] / ref[r["case"]["size"]], 4)


def run_all(
    cases: list[Case], timeout_s: float, reference: str, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run every case; returns ``{"machine", "reference", "results", "started", "finished"}``."""
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine = machine_info()
    results = []
    for i, case in enumerate(cases, 1):
        log(f"[{i}/{len(cases)}] {case.matcher} {case.size} {case.path} ...")
        r = run_case_subprocess(case, timeout_s)
        r["loadavg_1min_after"] = round(os.getloadavg()[0], 2)
        log(f"    {summary_line(r)}")
        results.append(r)
    ratios(results, reference)
    machine["loadavg_1_5_15_end"] = list(os.getloadavg())
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"machine": machine, "reference": reference, "results": results, "started": started, "finished": finished}


def summary_line(r: dict[str, Any]) -> str:
    if "error" in r or "skipped" in r:
        return r.get("error") or f"skipped: {r['skipped']}"
    return (
        f"total {r['median_s']['total']:.3f} s (n={r['n_timed']}), {r['matches']} matches, "
        f"{r['pose_inliers']} inliers, peak RSS {r['peak_rss_mb']:.0f} MB"
    )
