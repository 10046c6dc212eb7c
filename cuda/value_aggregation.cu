// Gathered weighted sum of values (QuadTree / cascade attention messages).
//
//   out[b,n,h,d] = sum_k score[b,n,k,h] * value[b, index[b,n,k,h], h, d]      (n runs over 4 * parents)
//
// Forward: one thread per output element, d fastest, so a warp reads consecutive d of one gathered value row and
// shares the (index, score) pair; grid-stride over all elements with 64-bit offsets.
// Backward: one warp per (b, n, k, h): lanes split d, a shuffle reduction gives grad_score, and the same lanes
// scatter grad_out * score into grad_value with coalesced atomics.
#include "common.cuh"

namespace casmtr {
namespace {

constexpr int kThreads = 256;

template <typename V, typename S>
__global__ void value_forward_kernel(const S* __restrict__ score, const V* __restrict__ value,
                                     const int64_t* __restrict__ index, acc_t<V>* __restrict__ out, int64_t B,
                                     int64_t N, int64_t M, int64_t K, int64_t H, int64_t D) {
  using A = acc_t<V>;
  const int64_t total = B * N * H * D;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const int64_t d = e % D;
    const int64_t h = (e / D) % H;
    const int64_t bn = e / (H * D);
    const int64_t b = bn / N;
    const int64_t* idx = index + bn * K * H + h;
    const S* sc = score + bn * K * H + h;
    A acc = 0;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t j = idx[k * H];
      CASMTR_CHECK_INDEX(j, M);
      acc += static_cast<A>(load(sc + k * H)) * load(value + ((b * M + j) * H + h) * D + d);
    }
    out[e] = acc;
  }
}

template <typename V, typename S>
__global__ void value_backward_kernel(const acc_t<V>* __restrict__ grad_out, const S* __restrict__ score,
                                      const V* __restrict__ value, const int64_t* __restrict__ index,
                                      acc_t<V>* __restrict__ grad_score, acc_t<V>* __restrict__ grad_value,
                                      int64_t B, int64_t N, int64_t M, int64_t K, int64_t H, int64_t D) {
  using A = acc_t<V>;
  const int lane = threadIdx.x % kWarp;
  const int64_t warps_per_block = blockDim.x / kWarp;
  const int64_t items = B * N * K * H;  // (b, n, k, h), h fastest
  const int64_t warp_stride = static_cast<int64_t>(gridDim.x) * warps_per_block;
  for (int64_t w = static_cast<int64_t>(blockIdx.x) * warps_per_block + threadIdx.x / kWarp; w < items;
       w += warp_stride) {
    const int64_t h = w % H;
    const int64_t bn = w / (K * H);
    const int64_t b = bn / N;
    const int64_t j = index[w];
    CASMTR_CHECK_INDEX(j, M);
    const A* g = grad_out + (bn * H + h) * D;
    const int64_t vrow = ((b * M + j) * H + h) * D;
    if (grad_score != nullptr) {
      A acc = 0;
      for (int64_t d = lane; d < D; d += kWarp) acc += g[d] * load(value + vrow + d);
      acc = warp_sum(acc);
      if (lane == 0) grad_score[w] = acc;
    }
    if (grad_value != nullptr) {
      const A s = static_cast<A>(load(score + w));
      for (int64_t d = lane; d < D; d += kWarp) atomicAdd(grad_value + vrow + d, g[d] * s);
    }
  }
}

template <typename V, typename S>
cudaError_t launch_forward_typed(const void* score, const void* value, const int64_t* index, void* out, int64_t B,
                                 int64_t N, int64_t M, int64_t K, int64_t H, int64_t D, cudaStream_t stream) {
  CASMTR_LAUNCH((value_forward_kernel<V, S>), grid_blocks(B * N * H * D, kThreads), kThreads, 0, stream)(
      static_cast<const S*>(score), static_cast<const V*>(value), index, static_cast<acc_t<V>*>(out), B, N, M, K, H,
      D);
  return CASMTR_LAST_ERROR();
}

template <typename V, typename S>
cudaError_t launch_backward_typed(const void* grad_out, const void* score, const void* value, const int64_t* index,
                                  void* grad_score, void* grad_value, int64_t B, int64_t N, int64_t M, int64_t K,
                                  int64_t H, int64_t D, cudaStream_t stream) {
  const int64_t warps_per_block = kThreads / kWarp;
  CASMTR_LAUNCH((value_backward_kernel<V, S>), grid_blocks(B * N * K * H, warps_per_block), kThreads, 0, stream)(
      static_cast<const acc_t<V>*>(grad_out), static_cast<const S*>(score), static_cast<const V*>(value), index,
      static_cast<acc_t<V>*>(grad_score), static_cast<acc_t<V>*>(grad_value), B, N, M, K, H, D);
  return CASMTR_LAST_ERROR();
}

// Score either shares the value's storage type or is already in its accumulation type (fp32 softmax output).
template <typename V>
cudaError_t launch_forward(bool score_is_acc, const void* score, const void* value, const int64_t* index, void* out,
                           int64_t B, int64_t N, int64_t M, int64_t K, int64_t H, int64_t D, cudaStream_t stream) {
  if (score_is_acc) return launch_forward_typed<V, acc_t<V>>(score, value, index, out, B, N, M, K, H, D, stream);
  return launch_forward_typed<V, V>(score, value, index, out, B, N, M, K, H, D, stream);
}

template <typename V>
cudaError_t launch_backward(bool score_is_acc, const void* grad_out, const void* score, const void* value,
                            const int64_t* index, void* grad_score, void* grad_value, int64_t B, int64_t N,
                            int64_t M, int64_t K, int64_t H, int64_t D, cudaStream_t stream) {
  if (score_is_acc) {
    return launch_backward_typed<V, acc_t<V>>(grad_out, score, value, index, grad_score, grad_value, B, N, M, K, H, D,
                                              stream);
  }
  return launch_backward_typed<V, V>(grad_out, score, value, index, grad_score, grad_value, B, N, M, K, H, D,
                                     stream);
}

bool score_is_acc_type(DType value_dtype, DType score_dtype) {
  const DType acc = value_dtype == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32;
  return score_dtype == acc;
}

bool score_dtype_supported(DType value_dtype, DType score_dtype) {
  return score_dtype == value_dtype || score_is_acc_type(value_dtype, score_dtype);
}

}  // namespace

cudaError_t value_forward(DType value_dtype, DType score_dtype, const void* score, const void* value,
                          const int64_t* index, void* out, int64_t B, int64_t N, int64_t M, int64_t K, int64_t H,
                          int64_t D, cudaStream_t stream) {
  if (!score_dtype_supported(value_dtype, score_dtype)) return cudaErrorInvalidValue;
  if (B * N * H * D == 0) return cudaSuccess;
  const bool acc = score_is_acc_type(value_dtype, score_dtype);
  return CASMTR_DISPATCH(value_dtype, launch_forward, acc, score, value, index, out, B, N, M, K, H, D, stream);
}

cudaError_t value_backward(DType value_dtype, DType score_dtype, const void* grad_out, const void* score,
                           const void* value, const int64_t* index, void* grad_score, void* grad_value, int64_t B,
                           int64_t N, int64_t M, int64_t K, int64_t H, int64_t D, cudaStream_t stream) {
  if (!score_dtype_supported(value_dtype, score_dtype)) return cudaErrorInvalidValue;
  if (B * N * K * H == 0) return cudaSuccess;
  const bool acc = score_is_acc_type(value_dtype, score_dtype);
  return CASMTR_DISPATCH(value_dtype, launch_backward, acc, grad_out, score, value, index, grad_score, grad_value, B,
                         N, M, K, H, D, stream);
}

}  // namespace casmtr
