// CasMTR 1/4 cascade window scores: every 1/4 query against its K window candidates.
//
//   out[b,i,k] = sum_c query[b,i,c] * key[b, index[b,i,k], c]
//
// One block per query (grid-stride over B*N1 on gridDim.x, so N1 has no 65535 limit and no multiple-of-16
// requirement). The query row is staged in dynamic shared memory; each warp takes candidates k, its lanes read
// consecutive channels of the gathered key row (coalesced) and reduce with shuffles.
#include "common.cuh"

namespace casmtr {
namespace {

constexpr int kThreads = 128;

template <typename T>
__global__ void cascade_forward_kernel(const T* __restrict__ query, const T* __restrict__ key,
                                       const int64_t* __restrict__ index, acc_t<T>* __restrict__ out, int64_t B,
                                       int64_t N1, int64_t N2, int64_t K, int64_t C) {
  using A = acc_t<T>;
  CASMTR_DYNAMIC_SHARED(unsigned char, smem_raw);
  A* q_sh = reinterpret_cast<A*>(smem_raw);  // [C]
  const int lane = threadIdx.x % kWarp;
  const int64_t warp = threadIdx.x / kWarp;
  const int64_t warps = blockDim.x / kWarp;
  for (int64_t p = blockIdx.x; p < B * N1; p += gridDim.x) {
    const int64_t b = p / N1;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) q_sh[c] = load(query + p * C + c);
    __syncthreads();
    for (int64_t k = warp; k < K; k += warps) {
      const int64_t j = index[p * K + k];
      CASMTR_CHECK_INDEX(j, N2);
      const T* krow = key + (b * N2 + j) * C;
      A acc = 0;
      for (int64_t c = lane; c < C; c += kWarp) acc += q_sh[c] * load(krow + c);
      acc = warp_sum(acc);
      if (lane == 0) out[p * K + k] = acc;
    }
    __syncthreads();
  }
}

// Per query: grad_query[c] = sum_k g[k] * key[idx_k, c] (no atomics), then grad_key[idx_k, c] += g[k] * query[c]
// with coalesced atomics. The query's K (index, grad) pairs and its query row are staged in shared memory.
template <typename T>
__global__ void cascade_backward_kernel(const acc_t<T>* __restrict__ grad_out, const T* __restrict__ query,
                                        const T* __restrict__ key, const int64_t* __restrict__ index,
                                        acc_t<T>* __restrict__ grad_query, acc_t<T>* __restrict__ grad_key,
                                        int64_t B, int64_t N1, int64_t N2, int64_t K, int64_t C) {
  using A = acc_t<T>;
  CASMTR_DYNAMIC_SHARED(unsigned char, smem_raw);
  int64_t* idx_sh = reinterpret_cast<int64_t*>(smem_raw);  // [K]
  A* g_sh = reinterpret_cast<A*>(idx_sh + K);              // [K]
  A* q_sh = g_sh + K;                                      // [C]
  for (int64_t p = blockIdx.x; p < B * N1; p += gridDim.x) {
    const int64_t b = p / N1;
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
      const int64_t j = index[p * K + k];
      CASMTR_CHECK_INDEX(j, N2);
      idx_sh[k] = j;
      g_sh[k] = grad_out[p * K + k];
    }
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) q_sh[c] = load(query + p * C + c);
    __syncthreads();
    if (grad_query != nullptr) {
      for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        A acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += g_sh[k] * load(key + (b * N2 + idx_sh[k]) * C + c);
        grad_query[p * C + c] = acc;
      }
    }
    if (grad_key != nullptr) {
      for (int64_t t = threadIdx.x; t < K * C; t += blockDim.x) {
        const int64_t k = t / C;
        const int64_t c = t % C;
        atomicAdd(grad_key + (b * N2 + idx_sh[k]) * C + c, g_sh[k] * q_sh[c]);
      }
    }
    __syncthreads();
  }
}

template <typename T>
cudaError_t launch_forward(const void* query, const void* key, const int64_t* index, void* out, int64_t B,
                           int64_t N1, int64_t N2, int64_t K, int64_t C, cudaStream_t stream) {
  const int64_t shared = C * bytes_of<acc_t<T>>();
  CASMTR_LAUNCH((cascade_forward_kernel<T>), grid_blocks(B * N1, 1), kThreads, shared, stream)(
      static_cast<const T*>(query), static_cast<const T*>(key), index, static_cast<acc_t<T>*>(out), B, N1, N2, K, C);
  return CASMTR_LAST_ERROR();
}

template <typename T>
cudaError_t launch_backward(const void* grad_out, const void* query, const void* key, const int64_t* index,
                            void* grad_query, void* grad_key, int64_t B, int64_t N1, int64_t N2, int64_t K, int64_t C,
                            cudaStream_t stream) {
  const int64_t shared = K * bytes_of<int64_t>() + (K + C) * bytes_of<acc_t<T>>();
  CASMTR_LAUNCH((cascade_backward_kernel<T>), grid_blocks(B * N1, 1), kThreads, shared, stream)(
      static_cast<const acc_t<T>*>(grad_out), static_cast<const T*>(query), static_cast<const T*>(key), index,
      static_cast<acc_t<T>*>(grad_query), static_cast<acc_t<T>*>(grad_key), B, N1, N2, K, C);
  return CASMTR_LAST_ERROR();
}

}  // namespace

int64_t cascade_forward_shared_bytes(DType dtype, int64_t C) { return C * acc_bytes(dtype); }

int64_t cascade_backward_shared_bytes(DType dtype, int64_t K, int64_t C) {
  return K * static_cast<int64_t>(sizeof(int64_t)) + (K + C) * acc_bytes(dtype);
}

cudaError_t cascade_forward(DType dtype, const void* query, const void* key, const int64_t* index, void* out,
                            int64_t B, int64_t N1, int64_t N2, int64_t K, int64_t C, cudaStream_t stream) {
  if (B * N1 * K == 0) return cudaSuccess;
  return CASMTR_DISPATCH(dtype, launch_forward, query, key, index, out, B, N1, N2, K, C, stream);
}

cudaError_t cascade_backward(DType dtype, const void* grad_out, const void* query, const void* key,
                             const int64_t* index, void* grad_query, void* grad_key, int64_t B, int64_t N1,
                             int64_t N2, int64_t K, int64_t C, cudaStream_t stream) {
  if (B * N1 * C == 0) return cudaSuccess;
  return CASMTR_DISPATCH(dtype, launch_backward, grad_out, query, key, index, grad_query, grad_key, B, N1, N2, K, C,
                         stream);
}

}  // namespace casmtr
