// Torch-free launch interface of the CasMTR gathered-attention kernels.
//
// The .cu files only see raw pointers, sizes and a stream, so they compile quickly and without PyTorch
// headers; casmtr_ops.cpp does the tensor checks, dtype dispatch, device guard and stream lookup.
// Layouts (all row-major, contiguous), see ../shared/reference/cuda_ops.md:
//   score:     query [B,N1,4,H,D], key [B,N2,H,D], index [B,N1,K,H]     -> out [B,N1,4,K,H]
//   value agg: score [B,N,K,H],    value [B,M,H,D], index [B,N,K,H]     -> out [B,N,H,D]   (N = 4 * parents)
//   cascade:   query [B,N1,C],     key [B,N2,C],    index [B,N1,K]      -> out [B,N1,K]
// Outputs and gradient buffers use the accumulation type: double for double inputs, float otherwise.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace casmtr {

// Storage type of a floating tensor (the accumulation type follows from it).
enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kFloat64 = 3 };

// Dynamic shared memory a single block may use without opting in (bytes).
constexpr int64_t kMaxSharedBytes = 48 * 1024;

// Bytes of dynamic shared memory each kernel needs; the host refuses launches above kMaxSharedBytes.
int64_t score_forward_shared_bytes(DType dtype, int64_t H, int64_t D);
int64_t cascade_forward_shared_bytes(DType dtype, int64_t C);
int64_t cascade_backward_shared_bytes(DType dtype, int64_t K, int64_t C);

// --- QuadTree gathered block scores -------------------------------------------------------------------
cudaError_t score_forward(DType dtype, const void* query, const void* key, const int64_t* index, void* out,
                          int64_t B, int64_t N1, int64_t N2, int64_t K, int64_t H, int64_t D, cudaStream_t stream);
// grad_out has the accumulation type; grad_query / grad_key (accumulation type) may be null when not needed.
// grad_key must be zero-filled (atomic accumulation); grad_query is fully overwritten.
cudaError_t score_backward(DType dtype, const void* grad_out, const void* query, const void* key,
                           const int64_t* index, void* grad_query, void* grad_key, int64_t B, int64_t N1,
                           int64_t N2, int64_t K, int64_t H, int64_t D, cudaStream_t stream);

// --- value aggregation ---------------------------------------------------------------------------------
// score_dtype is either value_dtype or the accumulation type of value_dtype.
cudaError_t value_forward(DType value_dtype, DType score_dtype, const void* score, const void* value,
                          const int64_t* index, void* out, int64_t B, int64_t N, int64_t M, int64_t K, int64_t H,
                          int64_t D, cudaStream_t stream);
// grad_value must be zero-filled; grad_score is fully overwritten; either may be null.
cudaError_t value_backward(DType value_dtype, DType score_dtype, const void* grad_out, const void* score,
                           const void* value, const int64_t* index, void* grad_score, void* grad_value, int64_t B,
                           int64_t N, int64_t M, int64_t K, int64_t H, int64_t D, cudaStream_t stream);

// --- CasMTR 1/4 cascade window scores -------------------------------------------------------------------
cudaError_t cascade_forward(DType dtype, const void* query, const void* key, const int64_t* index, void* out,
                            int64_t B, int64_t N1, int64_t N2, int64_t K, int64_t C, cudaStream_t stream);
// grad_key must be zero-filled; grad_query is fully overwritten; either may be null.
cudaError_t cascade_backward(DType dtype, const void* grad_out, const void* query, const void* key,
                             const int64_t* index, void* grad_query, void* grad_key, int64_t B, int64_t N1,
                             int64_t N2, int64_t K, int64_t C, cudaStream_t stream);

}  // namespace casmtr
