"""cuda/build.py and the JIT loader behave on machines without a CUDA build of torch or without nvcc."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from casmtr_ros.ops import jit

CUDA_DIR = Path(__file__).resolve().parents[2] / "cuda"


@pytest.fixture
def build():
    spec = importlib.util.spec_from_file_location("casmtr_cuda_build_t", CUDA_DIR / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_default_architectures_and_ptx(build, monkeypatch):
    monkeypatch.delenv("CASMTR_CUDA_ARCHS", raising=False)
    flags = build.gencode_flags()
    assert flags == [f"-gencode=arch=compute_{a},code=sm_{a}" for a in ("80", "86", "87", "89", "90")] + [
        "-gencode=arch=compute_90,code=compute_90"
    ]
    monkeypatch.setenv("CASMTR_CUDA_ARCHS", "8.7;12.0")
    assert build.gencode_flags()[-1] == "-gencode=arch=compute_120,code=compute_120"
    monkeypatch.setenv("CASMTR_CUDA_ARCHS", "sm87")
    with pytest.raises(ValueError, match="compute capability"):
        build.archs()


def test_debug_flag_adds_device_index_checks(build, monkeypatch):
    monkeypatch.setenv("CASMTR_CUDA_DEBUG", "1")
    assert "-DCASMTR_DEBUG" in build.nvcc_flags() and "-DCASMTR_DEBUG" in build.cxx_flags()
    monkeypatch.setenv("CASMTR_CUDA_DEBUG", "0")
    assert "-DCASMTR_DEBUG" not in build.nvcc_flags()


def test_every_source_exists(build):
    for path in build.all_files():
        assert path.is_file(), path


@pytest.mark.skipif(torch.version.cuda is not None, reason="torch here is a CUDA build")
def test_cpu_torch_builds_nothing(build):
    assert build.unavailable_reason().endswith("is a CPU build (install a CUDA build of torch)")
    assert build.extension_modules() == ([], {})
    with pytest.raises(RuntimeError, match="CPU build"):
        jit.load()
    assert not jit.cached_build_exists()


def test_missing_nvcc_builds_nothing(build, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setattr(build, "DEFAULT_CUDA_HOMES", (str(tmp_path),))
    assert build.find_nvcc() is None
    assert build.extension_modules() == ([], {})


def test_jit_cache_location_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CASMTR_CUDA_CACHE", str(tmp_path / "c"))
    assert jit.cache_root() == tmp_path / "c"
    monkeypatch.setenv("CASMTR_CUDA_SRC", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="CASMTR_CUDA_SRC"):
        jit.build_description()
