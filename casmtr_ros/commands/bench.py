"""``casmtr-vo bench``: matcher speed and memory per stage and size (with peers and ratios), and node latency.

``casmtr-vo bench matchers`` (default) runs every (matcher, size, compute path) case in its own subprocess and
writes ``results.json``, ``tables.md`` and ``scaling.png`` into ``--out``; ``casmtr-vo bench ops`` times the three
gathered-attention ops at CasMTR's shapes on every path (PyTorch CPU/CUDA, CUDA kernels); ``casmtr-vo bench node``
measures the ROS node over DDS on loopback (see :mod:`casmtr_ros.benchmark.node_bench`). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def default_matchers() -> list[str]:
    from casmtr_ros.benchmark.peers import available_peers
    from casmtr_ros.model import available_variants

    return [*available_variants(), "sift", "orb", *available_peers()]


def default_paths() -> list[str]:
    import torch

    from casmtr_ros import ops

    paths = ["cpu-torch"]
    if torch.cuda.is_available():
        paths += ["cuda-torch", "cuda-torch-fp16"]
        if ops.backend_name("cuda") == "cuda" or ops.backend_info()["extension"]:
            paths += ["cuda-kernels", "cuda-kernels-fp16"]
    return paths


def run_matchers(args: argparse.Namespace) -> int:
    from casmtr_ros.benchmark import report
    from casmtr_ros.benchmark.cases import PATHS, SIZES, Case, is_casmtr
    from casmtr_ros.benchmark.matcher_bench import run_all

    matchers = args.matchers or default_matchers()
    paths = args.paths or default_paths()
    for s in args.sizes:
        if s not in SIZES:
            raise ValueError(f"unknown size {s!r}; known: {sorted(SIZES)}")
    for p in paths:
        if p not in PATHS:
            raise ValueError(f"unknown compute path {p!r}; known: {sorted(PATHS)}")
    reference = args.reference or next((m for m in matchers if is_casmtr(m)), matchers[0])
    cases = []
    for size in args.sizes:
        for m in matchers:
            for p in paths if is_casmtr(m) else ["cpu-torch"]:
                heavy = is_casmtr(m) and SIZES[size][0] * SIZES[size][1] > 640 * 480
                cases.append(Case(m, size, p, warmup=0 if heavy and args.no_warmup_large else args.warmup,
                                  repeats=args.repeats, budget_s=args.budget))
    run = run_all(cases, args.timeout, reference)
    run["command"] = "casmtr-vo bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    written = report.write(run, Path(args.out))
    print(Path(written["tables"]).read_text())
    for kind, path in written.items():
        print(f"wrote {kind}: {path}")
    return 0


def run_node(args: argparse.Namespace) -> int:
    from casmtr_ros.benchmark.node_bench import main as node_main

    return node_main(args)


def run_ops(args: argparse.Namespace) -> int:
    import json

    import torch

    from casmtr_ros.benchmark import ops_bench
    from casmtr_ros.benchmark.cases import SIZES
    from casmtr_ros.benchmark.matcher_bench import machine_info

    sizes = [SIZES[s] for s in args.sizes]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine_info(), "command": "casmtr-vo bench " + " ".join(sys.argv[2:]), "tables": {}}
    for dtype in (torch.float32, torch.float16) if torch.cuda.is_available() else (torch.float32,):
        for backward in (False, True):
            paths = [p for p in args.paths if p in ("cpu-torch", "cuda-torch", "cuda-kernels")] if args.paths else None
            rows = ops_bench.run(sizes, repeats=args.repeats, dtype=dtype, paths=paths, backward=backward)
            key = f"{str(dtype).removeprefix('torch.')}-{'fwd+bwd' if backward else 'fwd'}"
            result["tables"][key] = rows
            print(f"\n{key}\n{ops_bench.table(rows)}")
    (out / "ops_bench.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {out / 'ops_bench.json'}")
    return 0


def run(args: argparse.Namespace) -> int:
    return {"node": run_node, "ops": run_ops}.get(args.what, run_matchers)(args)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark matchers (speed, memory, stages, peers) or the node latency",
                       description=__doc__)
    p.add_argument("what", nargs="?", choices=["matchers", "ops", "node"], default="matchers",
                   help="matchers (default), ops (the gathered-attention ops per path) or node (DDS latency)")
    p.add_argument("--matchers", nargs="+", default=None,
                   help="matcher names (default: every CasMTR variant, sift, orb, installed peers); NAME@KEY=VALUE,... "
                        "sets matcher options, e.g. casmtr-4c-lite@resize=480,klt_refine=true")
    p.add_argument("--sizes", nargs="+", default=["320x240", "640x480", "832x832", "1280x960"])
    p.add_argument("--paths", nargs="+", default=None,
                   help="compute paths for CasMTR: cpu-torch, cuda-torch, cuda-kernels, cuda-*-fp16 "
                        "(default: every one this machine has)")
    p.add_argument("--warmup", type=int, default=1, help="untimed pairs before timing")
    p.add_argument("--repeats", type=int, default=5, help="timed pairs per case (median reported)")
    p.add_argument("--budget", type=float, default=300.0, help="stop repeating a case after this many seconds")
    p.add_argument("--timeout", type=float, default=1800.0, help="kill a case after this many seconds")
    p.add_argument("--no-warmup-large", action="store_true",
                   help="no warm-up for CasMTR above 640x480 (slow CPUs; the table marks n)")
    p.add_argument("--reference", default=None, help="matcher the ratios are relative to (default: first CasMTR)")
    p.add_argument("--out", default="out/bench", help="output folder")
    # node benchmark options
    p.add_argument("--matcher", default="orb", help="node benchmark: matcher the node runs")
    p.add_argument("--rate", type=float, default=30.0, help="node benchmark: publish rate (Hz)")
    p.add_argument("--duration", type=float, default=60.0, help="node benchmark: seconds of streaming")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.set_defaults(func=run)
