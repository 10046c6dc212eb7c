"""The CUDA kernels executed on the CPU by a small CUDA execution model (cuda/host_emulation.h): every CUDA thread
a real std::thread, __syncthreads a barrier, warp shuffles through per-warp buffers, atomics as atomic_ref.

This checks what can be checked without a GPU: the kernels' index arithmetic, launch configuration, shared-memory
layout, grid-stride loops (grid capped at 3 blocks), shuffles and atomics, forward and backward, for fp32, fp16,
bf16 and fp64, against the PyTorch path. It does not check the nvcc-compiled code, the bindings or speed: those
need test/ops/test_cuda_kernels.py on a GPU.
"""

from __future__ import annotations

import ctypes
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from casmtr_ros.ops import torch_ops

CUDA_DIR = Path(__file__).resolve().parents[2] / "cuda"
_spec = importlib.util.spec_from_file_location("casmtr_cuda_emulate", CUDA_DIR / "emulate.py")
emulate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(emulate)

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
TOL = {torch.float32: 1e-5, torch.float16: 1e-5, torch.bfloat16: 1e-5, torch.float64: 1e-12}


def _code(t: torch.Tensor) -> int:
    return emulate.DTYPE_CODES[str(t.dtype).removeprefix("torch.")]


def _p(t: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(None if t is None else t.data_ptr())


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


pytestmark = pytest.mark.slow  # every CUDA thread is an OS thread: ~1 min in all on 2 cores


def _cases(shapes: list[tuple]) -> list:
    """Every shape in fp32; the first shape also in fp16, bf16 and fp64."""
    out = [pytest.param(shape, torch.float32, id=f"{'x'.join(map(str, shape))}-float32") for shape in shapes]
    out += [pytest.param(shapes[0], dt, id=f"{'x'.join(map(str, shapes[0]))}-{dt}".replace("torch.", ""))
            for dt in DTYPES[1:]]
    return out


@pytest.fixture(scope="module")
def lib():
    """Grid capped at 3 blocks, so every kernel's grid-stride loop runs several iterations; debug index checks on."""
    if emulate.cuda_include_dir() is None:
        pytest.skip("CUDA headers (cuda_fp16.h) not found: cannot build the host emulation")
    return emulate.load(emulate.build(max_blocks=3, debug=True))


def _torch_grads(fn, a, b, idx, grad):
    a = a.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    fn(a, b, idx).backward(grad)
    return a.grad, b.grad


def _close(x, y, dtype, scale=1.0):
    """Forward outputs: accumulation type on both sides, only the summation order differs."""
    tol = TOL[dtype] * scale
    torch.testing.assert_close(x, y.to(x.dtype), rtol=tol * 10, atol=tol * 10)


ULP = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float64: 1e-14}


def _close_grad(kernel_grad, torch_grad, scale=1.0):
    """Gradients: both paths return them in the input's dtype (rounded once from the accumulation type)."""
    dtype = torch_grad.dtype
    got = kernel_grad.to(dtype).double()
    tol = 2 * ULP[dtype]
    torch.testing.assert_close(got, torch_grad.double(), rtol=tol, atol=tol * scale)


@pytest.mark.parametrize(("shape", "dtype"), _cases([(2, 5, 23, 9, 8, 32), (1, 3, 7, 1, 16, 33), (1, 1, 1, 1, 1, 1)]))
def test_score_computation(lib, shape, dtype):
    B, N1, N2, K, H, D = shape
    g = torch.Generator().manual_seed(1)
    q = torch.randn(B, N1, 4, H, D, generator=g).to(dtype)
    k = torch.randn(B, N2, H, D, generator=g).to(dtype)
    idx = torch.randint(0, N2, (B, N1, K, H), generator=g)
    out = torch.empty(B, N1, 4, K, H, dtype=_acc(dtype))
    assert lib.emu_score_forward(_code(q), _p(q), _p(k), _p(idx), _p(out), B, N1, N2, K, H, D) == 0
    _close(out, torch_ops.score_computation(q, k, idx), dtype)
    grad = torch.randn(out.shape, generator=g, dtype=out.dtype)
    gq, gk = torch.empty(q.shape, dtype=out.dtype), torch.zeros(k.shape, dtype=out.dtype)
    assert lib.emu_score_backward(_code(q), _p(grad), _p(q), _p(k), _p(idx), _p(gq), _p(gk), B, N1, N2, K, H, D) == 0
    rq, rk = _torch_grads(torch_ops.score_computation, q, k, idx, grad)
    _close_grad(gq, rq, K)
    _close_grad(gk, rk, K)


@pytest.mark.parametrize("shared_children", [True, False])
@pytest.mark.parametrize(("shape", "dtype"), _cases([(2, 4, 19, 10, 4, 32), (1, 2, 5, 3, 3, 45)]))
def test_value_aggregation(lib, shape, shared_children, dtype):
    B, N, M, K, H, D = shape
    g = torch.Generator().manual_seed(2)
    s = torch.rand(B, N, 4, K, H, generator=g).to(dtype)
    v = torch.randn(B, M, H, D, generator=g).to(dtype)
    idx = torch.randint(0, M, (B, N, 4, K, H), generator=g)
    if shared_children:
        idx = idx[:, :, :1].expand(-1, -1, 4, -1, -1).contiguous()
    out = torch.empty(B, N, 4, H, D, dtype=_acc(dtype))
    code = _code(v)
    assert lib.emu_value_forward(code, code, _p(s), _p(v), _p(idx), _p(out), B, 4 * N, M, K, H, D) == 0
    _close(out, torch_ops.value_aggregation(s, v, idx), dtype)
    grad = torch.randn(out.shape, generator=g, dtype=out.dtype)
    gs, gv = torch.empty(s.shape, dtype=out.dtype), torch.zeros(v.shape, dtype=out.dtype)
    assert lib.emu_value_backward(code, code, _p(grad), _p(s), _p(v), _p(idx), _p(gs), _p(gv),
                                  B, 4 * N, M, K, H, D) == 0
    rs, rv = _torch_grads(torch_ops.value_aggregation, s, v, idx, grad)
    _close_grad(gs, rs, D)
    _close_grad(gv, rv, K)


def test_value_aggregation_half_values_fp32_scores(lib):
    g = torch.Generator().manual_seed(3)
    s = torch.rand(1, 3, 4, 6, 2, generator=g)
    v = torch.randn(1, 11, 2, 32, generator=g).half()
    idx = torch.randint(0, 11, (1, 3, 4, 6, 2), generator=g)
    out = torch.empty(1, 3, 4, 2, 32)
    assert lib.emu_value_forward(_code(v), _code(s), _p(s), _p(v), _p(idx), _p(out), 1, 12, 11, 6, 2, 32) == 0
    _close(out, torch_ops.value_aggregation(s, v, idx), torch.float32)
    bad = s.double()  # neither the value type nor its accumulation type
    assert lib.emu_value_forward(_code(v), _code(bad), _p(bad), _p(v), _p(idx), _p(out), 1, 12, 11, 6, 2, 32) != 0


@pytest.mark.parametrize(("shape", "dtype"), _cases([(2, 7, 30, 100, 64), (1, 3, 4, 5, 130), (3, 2, 2, 1, 1)]))
def test_cascade_score(lib, shape, dtype):
    B, N1, N2, K, C = shape
    g = torch.Generator().manual_seed(4)
    q = torch.randn(B, N1, C, generator=g).to(dtype)
    k = torch.randn(B, N2, C, generator=g).to(dtype)
    idx = torch.randint(0, N2, (B, N1, K), generator=g)
    out = torch.empty(B, N1, K, dtype=_acc(dtype))
    assert lib.emu_cascade_forward(_code(q), _p(q), _p(k), _p(idx), _p(out), B, N1, N2, K, C) == 0
    _close(out, torch_ops.cascade_score(q, k, idx), dtype, C**0.5)
    grad = torch.randn(out.shape, generator=g, dtype=out.dtype)
    gq, gk = torch.empty(q.shape, dtype=out.dtype), torch.zeros(k.shape, dtype=out.dtype)
    assert lib.emu_cascade_backward(_code(q), _p(grad), _p(q), _p(k), _p(idx), _p(gq), _p(gk), B, N1, N2, K, C) == 0
    rq, rk = _torch_grads(torch_ops.cascade_score, q, k, idx, grad)
    _close_grad(gq, rq, K)
    _close_grad(gk, rk, K)


def test_only_requested_gradients_are_written(lib):
    g = torch.Generator().manual_seed(5)
    q, k = torch.randn(1, 4, 16, generator=g), torch.randn(1, 6, 16, generator=g)
    idx = torch.randint(0, 6, (1, 4, 3), generator=g)
    grad = torch.randn(1, 4, 3, generator=g)
    gk = torch.zeros(1, 6, 16)
    assert lib.emu_cascade_backward(0, _p(grad), _p(q), _p(k), _p(idx), _p(None), _p(gk), 1, 4, 6, 3, 16) == 0
    _close_grad(gk, _torch_grads(torch_ops.cascade_score, q, k, idx, grad)[1], 3)


def test_debug_build_traps_on_out_of_range_index():
    """CASMTR_DEBUG device checks: an index past the key rows stops the kernel with a message."""
    if emulate.cuda_include_dir() is None:
        pytest.skip("CUDA headers not found")
    path = emulate.build(max_blocks=3, debug=True)
    code = textwrap.dedent(f"""
        import ctypes, torch
        lib = ctypes.CDLL({str(path)!r})
        lib.emu_cascade_forward.argtypes = [ctypes.c_int] + [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 5
        q, k = torch.randn(1, 2, 8), torch.randn(1, 5, 8)
        idx = torch.tensor([[[0, 1], [4, 5]]])
        out = torch.empty(1, 2, 2)
        lib.emu_cascade_forward(0, ctypes.c_void_p(q.data_ptr()), ctypes.c_void_p(k.data_ptr()),
                                ctypes.c_void_p(idx.data_ptr()), ctypes.c_void_p(out.data_ptr()), 1, 2, 5, 2, 8)
        print("no trap")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "no trap" not in proc.stdout
    assert "index 5 out of range [0, 5)" in proc.stdout + proc.stderr
