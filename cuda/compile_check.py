"""Compile-check the CUDA sources without a GPU: ``nvcc -c`` of every .cu for all target architectures (plus one
debug-macro build) and a host-compiler syntax check of the bindings against torch's headers (CPU torch is fine).

Used by ``test/ops/test_cuda_compile.py`` and runnable alone: ``python cuda/compile_check.py``. A success is
cached under ``build/cuda_check/`` keyed by the sources, flags, compiler and torch versions, so unchanged sources
are not recompiled.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

CUDA_DIR = Path(__file__).resolve().parent
CACHE_DIR = CUDA_DIR.parent / "build" / "cuda_check"


def _build_module():
    spec = importlib.util.spec_from_file_location("casmtr_cuda_build", CUDA_DIR / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Job:
    """One compiler invocation; ``cmd`` is complete except for the output path."""

    name: str
    cmd: list[str]


def _torch_includes() -> list[str]:
    from torch.utils.cpp_extension import include_paths

    return [f"-I{p}" for p in include_paths()] + [f"-I{sysconfig.get_paths()['include']}"]


def _cuda_include_dir(nvcc: str) -> Path | None:
    """The toolkit's include folder (nvcc may be a wrapper script outside the toolkit)."""
    homes = [Path(nvcc).resolve().parent.parent, *(Path(h) for h in (os.environ.get("CUDA_HOME"),) if h)]
    homes += [Path("/usr/local/cuda"), *sorted(Path("/usr/local").glob("cuda-*"), reverse=True)]
    for home in homes:
        if (home / "include" / "cuda_runtime.h").is_file():
            return home / "include"
    return None


def jobs(nvcc: str, cxx: str | None) -> list[Job]:
    """The nvcc jobs (one per .cu with every -gencode, one debug build each) and the bindings' syntax check
    (skipped when no host compiler or CUDA include folder is found)."""
    build = _build_module()
    incs = [f"-I{CUDA_DIR}", *_torch_includes()]
    base = [nvcc, "-c", "-std=c++20", "--threads", "0", "-Werror", "all-warnings", *incs]
    out = []
    for src in build.CU_SOURCES:
        out.append(Job(src, [*base, *build.nvcc_flags(debug=False), str(CUDA_DIR / src)]))
    debug_flags = [f for f in build.nvcc_flags(debug=True) if not f.startswith("-gencode")]
    for src in build.CU_SOURCES:
        out.append(Job(f"{src} (CASMTR_DEBUG, sm_80)",
                       [*base, *debug_flags, "-gencode=arch=compute_80,code=sm_80", str(CUDA_DIR / src)]))
    cuda_inc = _cuda_include_dir(nvcc)
    if cxx is not None and cuda_inc is not None:
        for src in build.CPP_SOURCES:
            out.append(Job(src, [cxx, "-fsyntax-only", "-std=c++20", "-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE",
                                 "-DTORCH_EXTENSION_NAME=_cuda_ops", "-DTORCH_API_INCLUDE_EXTENSION_H",
                                 f"-I{cuda_inc}", *incs, str(CUDA_DIR / src)]))
    return out


def cache_key(job_list: list[Job], nvcc: str) -> str:
    import torch

    build = _build_module()
    h = hashlib.sha256()
    for path in build.all_files():
        h.update(path.read_bytes())
    h.update(Path(__file__).read_bytes())
    h.update(subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.encode())
    h.update(torch.__version__.encode())
    for job in job_list:
        h.update(" ".join(job.cmd).encode())
    return h.hexdigest()[:20]


def _run(job: Job, out_dir: Path) -> tuple[Job, int, str]:
    cmd = list(job.cmd)
    if "-c" in cmd:  # nvcc job: write the object into the scratch folder
        cmd += ["-o", str(out_dir / (job.name.split()[0] + f".{abs(hash(job.name))}.o"))]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return job, proc.returncode, proc.stdout + proc.stderr


def check(workers: int = 2, use_cache: bool = True) -> list[str]:
    """Run every job; returns the failures (empty list = all compiled). Raises FileNotFoundError without nvcc."""
    nvcc = _build_module().find_nvcc()
    if nvcc is None:
        raise FileNotFoundError("nvcc not found")
    job_list = jobs(nvcc, shutil.which("c++") or shutil.which("g++"))
    stamp = CACHE_DIR / f"{cache_key(job_list, nvcc)}.ok"
    if use_cache and stamp.is_file():
        return []
    failures = []
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=workers) as pool:
        for job, rc, log in pool.map(lambda j: _run(j, Path(tmp)), job_list):
            if rc != 0:
                failures.append(f"{job.name}: exit {rc}\n$ {' '.join(job.cmd)}\n{log[-4000:]}")
    if not failures:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        stamp.write_text("\n".join(j.name for j in job_list) + "\n")
    return failures


def main() -> int:
    failures = check(use_cache="--no-cache" not in sys.argv)
    for f in failures:
        print(f, file=sys.stderr)
    print("compile check:", "FAILED" if failures else "ok")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
