"""The PyTorch path of the three ops against loop-by-loop references, plus gradcheck in float64 (CPU).

The references are written straight from the formulas in shared/reference/cuda_ops.md.
"""

from __future__ import annotations

import pytest
import torch

from casmtr_ros import ops
from casmtr_ros.ops import torch_ops


def naive_score_computation(query: torch.Tensor, key: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    B, N1, F, H, D = query.shape
    K = index.shape[2]
    out = torch.zeros(B, N1, F, K, H, dtype=torch.float64)
    for b in range(B):
        for n in range(N1):
            for f in range(F):
                for k in range(K):
                    for h in range(H):
                        j = int(index[b, n, k, h])
                        out[b, n, f, k, h] = sum(float(query[b, n, f, h, d]) * float(key[b, j, h, d]) for d in range(D))
    return out


def naive_value_aggregation(score: torch.Tensor, value: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    B, N, F, K, H = score.shape
    D = value.shape[-1]
    out = torch.zeros(B, N, F, H, D, dtype=torch.float64)
    for b in range(B):
        for n in range(N):
            for f in range(F):
                for h in range(H):
                    for d in range(D):
                        out[b, n, f, h, d] = sum(
                            float(score[b, n, f, k, h]) * float(value[b, int(index[b, n, f, k, h]), h, d])
                            for k in range(K)
                        )
    return out


def naive_cascade_score(query: torch.Tensor, key: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    B, N1, C = query.shape
    K = index.shape[2]
    out = torch.zeros(B, N1, K, dtype=torch.float64)
    for b in range(B):
        for i in range(N1):
            for k in range(K):
                j = int(index[b, i, k])
                out[b, i, k] = sum(float(query[b, i, c]) * float(key[b, j, c]) for c in range(C))
    return out


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def score_inputs(B=2, N1=3, N2=11, K=5, H=2, D=4, dtype=torch.float32, seed=0):
    g = _gen(seed)
    query = torch.randn(B, N1, 4, H, D, generator=g).to(dtype)
    key = torch.randn(B, N2, H, D, generator=g).to(dtype)
    index = torch.randint(0, N2, (B, N1, K, H), generator=g)
    return query, key, index


def value_inputs(B=2, N=3, M=9, K=5, H=2, D=3, dtype=torch.float32, seed=0):
    g = _gen(seed)
    score = torch.rand(B, N, 4, K, H, generator=g).to(dtype)
    value = torch.randn(B, M, H, D, generator=g).to(dtype)
    index = torch.randint(0, M, (B, N, 4, K, H), generator=g)
    return score, value, index


def cascade_inputs(B=2, N1=5, N2=13, K=7, C=6, dtype=torch.float32, seed=0):
    g = _gen(seed)
    query = torch.randn(B, N1, C, generator=g).to(dtype)
    key = torch.randn(B, N2, C, generator=g).to(dtype)
    index = torch.randint(0, N2, (B, N1, K), generator=g)
    return query, key, index


OOB = "out of bounds|out of range"
SHAPES_SCORE = [{}, {"B": 1, "N1": 1, "K": 1, "H": 1, "D": 1}, {"N1": 4, "K": 9, "H": 3, "D": 7}]
SHAPES_VALUE = [{}, {"B": 1, "N": 1, "K": 1, "H": 1, "D": 1}, {"N": 2, "K": 8, "H": 3, "D": 5}]
SHAPES_CASCADE = [{}, {"B": 1, "N1": 1, "K": 1, "C": 1}, {"N1": 3, "K": 16, "C": 9}]


@pytest.mark.parametrize("shape", SHAPES_SCORE)
def test_score_computation_matches_loops(shape):
    q, k, i = score_inputs(**shape)
    out = ops.score_computation(q, k, i)
    assert out.dtype == torch.float32 and out.shape == (q.shape[0], q.shape[1], 4, i.shape[2], q.shape[3])
    torch.testing.assert_close(out.double(), naive_score_computation(q, k, i), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES_VALUE)
def test_value_aggregation_matches_loops(shape):
    s, v, i = value_inputs(**shape)
    out = ops.value_aggregation(s, v, i)
    assert out.dtype == torch.float32 and out.shape == (*s.shape[:3], s.shape[4], v.shape[3])
    torch.testing.assert_close(out.double(), naive_value_aggregation(s, v, i), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES_CASCADE)
def test_cascade_score_matches_loops(shape):
    q, k, i = cascade_inputs(**shape)
    out = ops.cascade_score(q, k, i)
    assert out.dtype == torch.float32 and out.shape == i.shape
    torch.testing.assert_close(out.double(), naive_cascade_score(q, k, i), rtol=1e-5, atol=1e-5)


def test_value_aggregation_per_child_indices_differ():
    """The 4 children may gather different rows: swapping one child's index changes only that child."""
    s, v, i = value_inputs(B=1, N=1, M=6, K=2, H=1, D=2)
    out = ops.value_aggregation(s, v, i)
    i2 = i.clone()
    i2[0, 0, 3] = (i2[0, 0, 3] + 1) % 6
    out2 = ops.value_aggregation(s, v, i2)
    torch.testing.assert_close(out[:, :, :3], out2[:, :, :3])
    assert not torch.allclose(out[:, :, 3], out2[:, :, 3])


def test_value_aggregation_children_sharing_indices():
    """CasMTR passes the parent's candidates repeated for the 4 children (a faster path in torch_ops)."""
    s, v, i = value_inputs(B=2, N=3, M=9, K=4, H=2, D=3)
    i = i[:, :, :1].expand(-1, -1, 4, -1, -1).contiguous()
    torch.testing.assert_close(ops.value_aggregation(s, v, i).double(), naive_value_aggregation(s, v, i),
                               rtol=1e-5, atol=1e-5)
    s64, v64 = s.double().requires_grad_(True), v.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: ops.value_aggregation(a, b, i), (s64, v64))


def test_index_just_past_a_batch_is_refused():
    """Row gathers flatten the batch: index N2 in batch 0 must not silently read batch 1."""
    q, k, i = cascade_inputs(B=2, N2=13)
    i[0, 0, 0] = 13
    with pytest.raises(IndexError, match="out of range"):
        ops.cascade_score(q, k, i)
    s, v, vi = value_inputs(B=2, M=9)
    vi[1, 0, 0, 0, 0] = -1
    with pytest.raises(IndexError, match="out of range"):
        ops.value_aggregation(s, v, vi)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_fp32(dtype):
    q, k, i = cascade_inputs(C=64, dtype=dtype)
    out = ops.cascade_score(q, k, i)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), naive_cascade_score(q, k, i), rtol=1e-5, atol=1e-4)


def test_float64_stays_float64():
    q, k, i = score_inputs(dtype=torch.float64)
    assert ops.score_computation(q, k, i).dtype == torch.float64


def test_chunked_path_equals_single_chunk(monkeypatch):
    """Work is split over the parent axis for memory; a tiny chunk size must not change results."""
    q, k, i = score_inputs(N1=7)
    s, v, vi = value_inputs(N=7)
    cq, ck, ci = cascade_inputs(N1=7)
    full = (ops.score_computation(q, k, i), ops.value_aggregation(s, v, vi), ops.cascade_score(cq, ck, ci))
    monkeypatch.setattr(torch_ops, "_CHUNK_ELEMS", 50)
    chunked = (ops.score_computation(q, k, i), ops.value_aggregation(s, v, vi), ops.cascade_score(cq, ck, ci))
    for a, b in zip(full, chunked):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_gradcheck_score_computation():
    q, k, i = score_inputs(B=1, N1=2, N2=5, K=3, H=2, D=3, dtype=torch.float64)
    q.requires_grad_(True)
    k.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: ops.score_computation(a, b, i), (q, k))


def test_gradcheck_value_aggregation():
    s, v, i = value_inputs(B=1, N=2, M=4, K=3, H=2, D=2, dtype=torch.float64)
    s.requires_grad_(True)
    v.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: ops.value_aggregation(a, b, i), (s, v))


def test_gradcheck_cascade_score():
    q, k, i = cascade_inputs(B=1, N1=3, N2=4, K=5, C=3, dtype=torch.float64)  # K > N2: repeated rows accumulate
    q.requires_grad_(True)
    k.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: ops.cascade_score(a, b, i), (q, k))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: ops.score_computation(*score_inputs()[:2], torch.full((2, 3, 5, 2), 11)), OOB),
        (lambda: ops.cascade_score(*cascade_inputs()[:2], torch.full((2, 5, 7), -20)), OOB),
        (lambda: ops.score_computation(torch.randn(2, 3, 2, 2, 4), *score_inputs()[1:]), r"\[B, N1, 4, H, D\]"),
        (lambda: ops.score_computation(score_inputs()[0], torch.randn(2, 11, 3, 4), score_inputs()[2]), "key must"),
        (lambda: ops.value_aggregation(*value_inputs()[:2], value_inputs()[2][..., :1]), "index shape"),
        (lambda: ops.cascade_score(*cascade_inputs()[:2], cascade_inputs()[2].float()), "must be int64"),
        (lambda: ops.cascade_score(cascade_inputs()[0], torch.randn(2, 13, 5), cascade_inputs()[2]), "C=6"),
    ],
)
def test_bad_input_raises_clear_error(call, match):
    with pytest.raises((ValueError, IndexError, RuntimeError), match=match):
        call()
