"""Build the kernels as plain C++ on the CPU (``cuda/host_emulation.h``) and call them through ctypes.

For tests without a GPU: the kernels' indexing, launch configuration, shared memory, barriers, warp shuffles and
atomics run for real (each CUDA thread a std::thread), so their results can be compared with the PyTorch path.
Builds are cached under ``build/cuda_emu/`` by a hash of the sources and flags.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
from pathlib import Path

CUDA_DIR = Path(__file__).resolve().parent
CACHE_DIR = CUDA_DIR.parent / "build" / "cuda_emu"
SOURCES = ("score_computation.cu", "value_aggregation.cu", "cascade_score.cu", "host_emulation_api.cpp")
HEADERS = ("kernels.h", "common.cuh", "host_emulation.h")
DTYPE_CODES = {"float32": 0, "float16": 1, "bfloat16": 2, "float64": 3}


def cuda_include_dir() -> Path | None:
    """A CUDA toolkit include folder (for cuda_fp16.h / cuda_bf16.h / vector types; no GPU needed)."""
    import os

    homes = [Path(h) for h in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")) if h]
    nvcc = shutil.which("nvcc")
    if nvcc:
        homes.append(Path(nvcc).resolve().parent.parent)
    homes += [Path("/usr/local/cuda"), *sorted(Path("/usr/local").glob("cuda-*"), reverse=True)]
    for home in homes:
        if (home / "include" / "cuda_fp16.h").is_file():
            return home / "include"
    return None


def build(max_blocks: int | None = None, debug: bool = True) -> Path:
    """Compile (or reuse) the emulation library; ``max_blocks`` caps the grid to force grid-stride loops."""
    cxx = shutil.which("g++") or shutil.which("c++")
    inc = cuda_include_dir()
    if cxx is None or inc is None:
        raise FileNotFoundError("host emulation needs g++ and the CUDA headers (cuda_fp16.h)")
    flags = ["-std=c++20", "-O1", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-pthread",
             "-DCASMTR_HOST_EMULATION", f"-I{CUDA_DIR}", f"-I{inc}"]
    if max_blocks is not None:
        flags.append(f"-DCASMTR_MAX_BLOCKS={int(max_blocks)}")
    if debug:
        flags.append("-DCASMTR_DEBUG")
    h = hashlib.sha256(" ".join([cxx, *flags]).encode())
    for name in (*SOURCES, *HEADERS):
        h.update((CUDA_DIR / name).read_bytes())
    out = CACHE_DIR / f"emu_{h.hexdigest()[:16]}.so"
    if not out.is_file():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp.so")
        cmd = [cxx, *flags, "-x", "c++", *(str(CUDA_DIR / s) for s in SOURCES), "-o", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"host emulation build failed:\n$ {' '.join(cmd)}\n{proc.stderr[-4000:]}")
        tmp.replace(out)
    return out


# (dtype ints, pointers, sizes) of each entry point: ctypes must pass the sizes as 64-bit integers.
SIGNATURES = {
    "emu_score_forward": (1, 4, 6),
    "emu_score_backward": (1, 6, 6),
    "emu_value_forward": (2, 4, 6),
    "emu_value_backward": (2, 6, 6),
    "emu_cascade_forward": (1, 4, 5),
    "emu_cascade_backward": (1, 6, 5),
}


def load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    for name, (ints, ptrs, sizes) in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_int] * ints + [ctypes.c_void_p] * ptrs + [ctypes.c_int64] * sizes
    return lib
