"""Tables (Markdown), JSON and the scaling plot of a benchmark run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from casmtr_ros.benchmark.cases import SIZES
from casmtr_ros.benchmark.matcher_bench import STAGE_ORDER


def _ok(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if "median_s" in r]


def path_label(r: dict[str, Any]) -> str:
    return r["case"]["path"] if r["case"]["matcher"].startswith("casmtr") else "cpu"


def totals_table(run: dict[str, Any]) -> str:
    """One row per case: total median, matches, inliers, memory, ratio to the reference matcher."""
    ref = run["reference"]
    lines = [
        f"| matcher | path | size | total s (median) | n | matches | pose inliers | peak RSS MB | ratio to {ref} "
        "| load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in run["results"]:
        c = r["case"]
        if "median_s" not in r:
            reason = r.get("error") or r.get("skipped")
            lines.append(f"| {c['matcher']} | {path_label(r)} | {c['size']} | not measured: {reason} | | | | | | |")
            continue
        mem = f"{r['peak_rss_mb']:.0f}"
        if "gpu_max_allocated_mb" in r:
            mem += f" (GPU {r['gpu_max_allocated_mb']:.0f})"
        ratio = f"{r['ratio_to_reference']:.3g}" if "ratio_to_reference" in r else ""
        lines.append(
            f"| {c['matcher']} | {path_label(r)} | {c['size']} | {r['median_s']['total']:.3f} | {r['n_timed']} | "
            f"{r['matches']} | {r['pose_inliers']} | {mem} | {ratio} | {r.get('loadavg_1min_after', '')} |"
        )
    return "\n".join(lines)


def stages_table(run: dict[str, Any]) -> str:
    """Median seconds per stage for the CasMTR cases."""
    rows = [r for r in _ok(run["results"]) if r["case"]["matcher"].startswith("casmtr")]
    if not rows:
        return "(no CasMTR case measured)"
    stages = [s for s in STAGE_ORDER if any(s in r["median_s"] for r in rows)]
    lines = [
        "| matcher | path | size | " + " | ".join(stages) + " | total |",
        "|---" * (len(stages) + 4) + "|",
    ]
    for r in rows:
        c = r["case"]
        cells = [f"{r['median_s'].get(s, 0.0):.3f}" for s in stages]
        lines.append(f"| {c['matcher']} | {c['path']} | {c['size']} | " + " | ".join(cells) +
                     f" | {r['median_s']['total']:.3f} |")
    return "\n".join(lines)


def scaling_plot(run: dict[str, Any], path: Path, prefix: str = "casmtr") -> Path | None:
    """Time per stage and peak RSS against pixels (log-log) for every matcher named ``prefix*`` (per compute
    path) measured at >= 2 sizes; None when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in _ok(run["results"]) if r["case"]["matcher"].startswith(prefix)]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["case"]["matcher"], r["case"]["path"]), []).append(r)
    groups = {k: sorted(v, key=lambda r: _pixels(r)) for k, v in groups.items() if len(v) >= 2}
    if not groups:
        return None
    fig, axes = plt.subplots(len(groups), 2, figsize=(11, 4 * len(groups)), squeeze=False)
    for row, ((matcher, cpath), rs) in enumerate(sorted(groups.items())):
        px = [_pixels(r) / 1e6 for r in rs]
        ax = axes[row][0]
        stages = [s for s in STAGE_ORDER if any(r["median_s"].get(s, 0) > 0 for r in rs)]
        for s in [*stages, "total"]:
            ax.plot(px, [max(r["median_s"].get(s, 0.0), 1e-4) for r in rs], "o-", label=s, lw=2 if s == "total" else 1)
        _linear_guide(ax, px, [r["median_s"]["total"] for r in rs])
        ax.set(xscale="log", yscale="log", xlabel="megapixels per image", ylabel="seconds per pair (median)",
               title=f"{matcher} ({cpath}): time per stage")
        ax.legend(fontsize=7, ncol=2)
        ax = axes[row][1]
        ax.plot(px, [r["peak_rss_mb"] for r in rs], "o-", label="peak RSS")
        if all("gpu_max_allocated_mb" in r for r in rs):
            ax.plot(px, [r["gpu_max_allocated_mb"] for r in rs], "s-", label="GPU max allocated")
        ax.set(xscale="log", yscale="log", xlabel="megapixels per image", ylabel="MB",
               title=f"{matcher} ({cpath}): peak memory")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pixels(r: dict[str, Any]) -> int:
    w, h = SIZES[r["case"]["size"]]
    return w * h


def _linear_guide(ax, px: list[float], totals: list[float]) -> None:
    """A dashed line of slope 1 through the smallest size: stages steeper than it grow faster than linearly."""
    ax.plot(px, [totals[0] * p / px[0] for p in px], "k--", lw=0.8, label="linear in pixels")


def growth_exponents(run: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per CasMTR variant/path: log-log slope of each stage between the smallest and largest size measured."""
    import math

    out: dict[str, dict[str, float]] = {}
    rows = [r for r in _ok(run["results"]) if r["case"]["matcher"].startswith("casmtr")]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(f"{r['case']['matcher']} {r['case']['path']}", []).append(r)
    for key, rs in groups.items():
        rs = sorted(rs, key=_pixels)
        if len(rs) < 2:
            continue
        a, b = rs[0], rs[-1]
        dp = math.log(_pixels(b) / _pixels(a))
        out[key] = {
            s: round(math.log(b["median_s"][s] / a["median_s"][s]) / dp, 2)
            for s in a["median_s"]
            if s in b["median_s"] and a["median_s"][s] > 1e-3 and b["median_s"][s] > 1e-3
        }
    return out


def write(run: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """``results.json``, ``tables.md`` and ``scaling.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run["growth_exponents"] = growth_exponents(run)
    paths = {"json": out_dir / "results.json", "tables": out_dir / "tables.md"}
    paths["json"].write_text(json.dumps(run, indent=1))
    text = [
        f"Run {run['started']} .. {run['finished']} on {run['machine']['cpu']} ({run['machine']['cores']} cores), "
        f"torch {run['machine']['torch']}, load average at start {run['machine']['loadavg_1_5_15']}.",
        f"Command: `{run.get('command', '')}`",
        "",
        totals_table(run),
        "",
        stages_table(run),
        "",
        "Growth exponents (log-log slope of time vs pixels, smallest to largest size; 1 = linear):",
        "",
        *[f"- {k}: " + ", ".join(f"{s} {v}" for s, v in sorted(e.items())) for k, e in run["growth_exponents"].items()],
    ]
    paths["tables"].write_text("\n".join(text) + "\n")
    plot = scaling_plot(run, out_dir / "scaling.png")
    if plot is not None:
        paths["plot"] = plot
    return paths


def main(argv: list[str] | None = None) -> int:
    """Rewrite tables.md and scaling.png of an earlier run: ``python -m casmtr_ros.benchmark.report OUT_DIR``."""
    import sys

    out_dir = Path((argv or sys.argv[1:])[0])
    run = json.loads((out_dir / "results.json").read_text())
    for kind, path in write(run, out_dir).items():
        print(f"wrote {kind}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
