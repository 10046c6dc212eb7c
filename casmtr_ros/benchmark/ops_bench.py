"""Micro-benchmark of the three gathered-attention ops at the shapes CasMTR-4c (outdoor) uses for an image size,
on every available path: PyTorch on CPU, PyTorch on CUDA, the CUDA kernels (forward, and forward + backward)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from casmtr_ros.ops import backend, torch_ops
from casmtr_ros.ops.cuda_functions import CascadeScore, ScoreComputation, ValueAggregation


def op_shapes(width: int, height: int) -> dict[str, dict[str, Any]]:
    """Inputs of each op call site (batch 1, one image direction) for a ``width x height`` pair."""
    L8 = (height // 8) * (width // 8)
    L4, L16, L32 = 4 * L8, L8 // 4, L8 // 16
    return {
        "quadtree 1/16 score (K=128, H=8)": {"op": "score", "N1": L32, "N2": L16, "K": 128, "H": 8, "D": 32},
        "quadtree 1/8 score (K=64, H=8)": {"op": "score", "N1": L16, "N2": L8, "K": 64, "H": 8, "D": 32},
        "quadtree 1/8 value (K=64, H=8)": {"op": "value", "N1": L16, "N2": L8, "K": 64, "H": 8, "D": 32},
        "cascade cross score (K=100, H=4)": {"op": "score", "N1": L8, "N2": L4, "K": 100, "H": 4, "D": 32},
        "cascade cross value (K=100, H=4)": {"op": "value", "N1": L8, "N2": L4, "K": 100, "H": 4, "D": 32},
        "cascade matching (K=100, C=128)": {"op": "cascade", "N1": L4, "N2": L4, "K": 100, "C": 128},
    }


def make_inputs(spec: dict[str, Any], device: str, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    g = torch.Generator(device=device).manual_seed(0)
    n1, n2, k = spec["N1"], spec["N2"], spec["K"]
    if spec["op"] == "cascade":
        c = spec["C"]
        return (torch.randn(1, n1, c, device=device, generator=g).to(dtype),
                torch.randn(1, n2, c, device=device, generator=g).to(dtype),
                torch.randint(0, n2, (1, n1, k), device=device, generator=g))
    h, d = spec["H"], spec["D"]
    idx = torch.randint(0, n2, (1, n1, k, h), device=device, generator=g)
    keys = torch.randn(1, n2, h, d, device=device, generator=g).to(dtype)
    if spec["op"] == "score":
        return torch.randn(1, n1, 4, h, d, device=device, generator=g).to(dtype), keys, idx
    score = torch.softmax(torch.randn(1, n1, 4, k, h, device=device, generator=g), dim=3)
    return score, keys, idx[:, :, None].expand(-1, -1, 4, -1, -1).contiguous()


def _fn(op: str, path: str) -> Callable[..., torch.Tensor]:
    if path.endswith("torch"):
        return {"score": torch_ops.score_computation, "value": torch_ops.value_aggregation,
                "cascade": torch_ops.cascade_score}[op]
    ext = backend.extension()
    cls = {"score": ScoreComputation, "value": ValueAggregation, "cascade": CascadeScore}[op]
    return lambda a, b, i: cls.apply(ext, a, b, i, False)


def time_op(fn: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...], backward: bool, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up (CUDA synchronised)."""
    a, b, i = inputs
    if backward:
        a, b = a.detach().requires_grad_(True), b.detach().requires_grad_(True)
    cuda = a.is_cuda
    times = []
    for n in range(repeats + 1):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn(a, b, i)
        if backward:
            out.sum().backward()
        if cuda:
            torch.cuda.synchronize()
        if n:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def available_paths() -> list[str]:
    paths = ["cpu-torch"]
    if torch.cuda.is_available():
        paths.append("cuda-torch")
        if backend.extension() is not None:
            paths.append("cuda-kernels")
    return paths


def run(sizes: list[tuple[int, int]], repeats: int = 5, dtype: torch.dtype = torch.float32,
        paths: list[str] | None = None, backward: bool = False) -> list[dict[str, Any]]:
    rows = []
    for w, h in sizes:
        for site, spec in op_shapes(w, h).items():
            row: dict[str, Any] = {"size": f"{w}x{h}", "site": site, "dtype": str(dtype).removeprefix("torch.")}
            for path in paths or available_paths():
                device = "cpu" if path.startswith("cpu") else "cuda"
                inputs = make_inputs(spec, device, dtype if device == "cuda" else torch.float32)
                row[f"{path}_ms"] = round(1e3 * time_op(_fn(spec["op"], path), inputs, backward, repeats), 3)
            if "cuda-torch_ms" in row and "cuda-kernels_ms" in row:
                row["kernel_speedup"] = round(row["cuda-torch_ms"] / row["cuda-kernels_ms"], 2)
            rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    cols = [c for c in rows[0] if c not in ("size", "site", "dtype")] if rows else []
    lines = ["| size | op call site | dtype | " + " | ".join(cols) + " |", "|---" * (len(cols) + 3) + "|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['site']} | {r['dtype']} | " + " | ".join(str(r.get(c, "")) for c in cols)
                     + " |")
    return "\n".join(lines)
