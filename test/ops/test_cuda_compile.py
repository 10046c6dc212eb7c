"""CI compile check of the CUDA sources with the installed nvcc for sm_80/86/87/89/90 (no GPU needed).

Any compiler error or warning in cuda/*.cu, and any error in the bindings against torch's headers, fails here.
Successful checks are cached under build/cuda_check/ by a hash of sources, flags and compiler versions.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

CUDA_DIR = Path(__file__).resolve().parents[2] / "cuda"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"casmtr_cuda_{name}", CUDA_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


build = _load("build")
compile_check = _load("compile_check")


@pytest.fixture(scope="module")
def nvcc() -> str:
    path = build.find_nvcc()
    if path is None:
        pytest.skip("nvcc not found: the CUDA sources cannot be compile-checked here")
    return path


def test_jobs_cover_every_source_and_architecture(nvcc):
    jobs = compile_check.jobs(nvcc, shutil.which("c++") or shutil.which("g++"))
    cu_sources = sorted(p.name for p in CUDA_DIR.glob("*.cu"))
    assert sorted(build.CU_SOURCES) == cu_sources, "a .cu file is missing from cuda/build.py"
    release = [j for j in jobs if j.name in cu_sources]
    assert len(release) == len(cu_sources)
    for job in release:
        for arch in ("80", "86", "87", "89", "90"):
            assert f"-gencode=arch=compute_{arch},code=sm_{arch}" in job.cmd


@pytest.mark.slow
def test_cuda_sources_compile(nvcc):
    failures = compile_check.check()
    assert not failures, "\n\n".join(failures)


def test_a_broken_kernel_fails_the_check(nvcc, tmp_path):
    """The check really reports compiler errors (a template error in a copy of a kernel)."""
    src = (CUDA_DIR / "cascade_score.cu").read_text().replace("acc = warp_sum(acc);", "acc = warp_sum<int*>(acc);")
    broken = tmp_path / "broken.cu"
    broken.write_text(src)
    job = compile_check.Job("broken.cu", [nvcc, "-c", "-std=c++20", f"-I{CUDA_DIR}",
                                          "-gencode=arch=compute_80,code=sm_80", str(broken)])
    _, rc, log = compile_check._run(job, tmp_path)
    assert rc != 0 and "error" in log
