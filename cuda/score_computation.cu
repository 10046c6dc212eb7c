// QuadTree gathered block scores: the 2x2 children of every parent against the parent's K gathered keys, per head.
//
//   out[b,n,f,k,h] = sum_d query[b,n,f,h,d] * key[b, index[b,n,k,h], h, d]
//
// One block per parent (b, n), grid-stride over B*N1 on gridDim.x (no 65535 limit). The parent's 4*H*D query
// values sit in dynamic shared memory sized from H and D (rows padded by one to avoid bank conflicts), so any
// head count works up to the shared-memory budget, which the host checks.
#include "common.cuh"

namespace casmtr {
namespace {

constexpr int kChildren = 4;
constexpr int kThreads = 128;

template <typename T>
__global__ void score_forward_kernel(const T* __restrict__ query, const T* __restrict__ key,
                                     const int64_t* __restrict__ index, acc_t<T>* __restrict__ out, int64_t B,
                                     int64_t N1, int64_t N2, int64_t K, int64_t H, int64_t D) {
  using A = acc_t<T>;
  CASMTR_DYNAMIC_SHARED(unsigned char, smem_raw);
  A* q_sh = reinterpret_cast<A*>(smem_raw);  // [4][H][D + 1]
  const int64_t row = D + 1;
  const int64_t parents = B * N1;
  for (int64_t p = blockIdx.x; p < parents; p += gridDim.x) {
    const int64_t b = p / N1;
    const T* q = query + p * kChildren * H * D;
    for (int64_t t = threadIdx.x; t < kChildren * H * D; t += blockDim.x) {
      q_sh[(t / D) * row + t % D] = load(q + t);
    }
    __syncthreads();
    const int64_t* idx_p = index + p * K * H;
    A* out_p = out + p * kChildren * K * H;
    for (int64_t t = threadIdx.x; t < K * H; t += blockDim.x) {
      const int64_t h = t % H;
      const int64_t j = idx_p[t];
      CASMTR_CHECK_INDEX(j, N2);
      const T* krow = key + ((b * N2 + j) * H + h) * D;
      A s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      const A* q0 = q_sh + (0 * H + h) * row;
      const A* q1 = q_sh + (1 * H + h) * row;
      const A* q2 = q_sh + (2 * H + h) * row;
      const A* q3 = q_sh + (3 * H + h) * row;
      for (int64_t d = 0; d < D; ++d) {
        const A kv = load(krow + d);
        s0 += q0[d] * kv;
        s1 += q1[d] * kv;
        s2 += q2[d] * kv;
        s3 += q3[d] * kv;
      }
      // t = k * H + h, so out_p[f * K * H + t] is out[b, n, f, k, h].
      out_p[0 * K * H + t] = s0;
      out_p[1 * K * H + t] = s1;
      out_p[2 * K * H + t] = s2;
      out_p[3 * K * H + t] = s3;
    }
    __syncthreads();  // q_sh is rewritten for the next parent
  }
}

// Per parent: grad_query without atomics (each (f, h, d) sums over k), then grad_key with coalesced atomics
// (consecutive threads hit consecutive d of one gathered key row).
template <typename T>
__global__ void score_backward_kernel(const acc_t<T>* __restrict__ grad_out, const T* __restrict__ query,
                                      const T* __restrict__ key, const int64_t* __restrict__ index,
                                      acc_t<T>* __restrict__ grad_query, acc_t<T>* __restrict__ grad_key, int64_t B,
                                      int64_t N1, int64_t N2, int64_t K, int64_t H, int64_t D) {
  using A = acc_t<T>;
  const int64_t parents = B * N1;
  const int64_t KH = K * H;
  for (int64_t p = blockIdx.x; p < parents; p += gridDim.x) {
    const int64_t b = p / N1;
    const int64_t* idx_p = index + p * KH;
    const A* g_p = grad_out + p * kChildren * KH;
    if (grad_query != nullptr) {
      for (int64_t t = threadIdx.x; t < kChildren * H * D; t += blockDim.x) {
        const int64_t f = t / (H * D);
        const int64_t h = (t / D) % H;
        const int64_t d = t % D;
        A acc = 0;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t j = idx_p[k * H + h];
          CASMTR_CHECK_INDEX(j, N2);
          acc += g_p[f * KH + k * H + h] * load(key + ((b * N2 + j) * H + h) * D + d);
        }
        grad_query[p * kChildren * H * D + t] = acc;
      }
    }
    if (grad_key != nullptr) {
      const T* q = query + p * kChildren * H * D;
      for (int64_t t = threadIdx.x; t < KH * D; t += blockDim.x) {
        const int64_t kh = t / D;  // k * H + h
        const int64_t h = kh % H;
        const int64_t d = t % D;
        const int64_t j = idx_p[kh];
        CASMTR_CHECK_INDEX(j, N2);
        A acc = 0;
        for (int f = 0; f < kChildren; ++f) acc += g_p[f * KH + kh] * load(q + (f * H + h) * D + d);
        atomicAdd(grad_key + ((b * N2 + j) * H + h) * D + d, acc);
      }
    }
  }
}

template <typename T>
cudaError_t launch_forward(const void* query, const void* key, const int64_t* index, void* out, int64_t B,
                           int64_t N1, int64_t N2, int64_t K, int64_t H, int64_t D, cudaStream_t stream) {
  const int64_t shared = static_cast<int64_t>(kChildren) * H * (D + 1) * bytes_of<acc_t<T>>();
  CASMTR_LAUNCH((score_forward_kernel<T>), grid_blocks(B * N1, 1), kThreads, shared, stream)(
      static_cast<const T*>(query), static_cast<const T*>(key), index, static_cast<acc_t<T>*>(out), B, N1, N2, K, H,
      D);
  return CASMTR_LAST_ERROR();
}

template <typename T>
cudaError_t launch_backward(const void* grad_out, const void* query, const void* key, const int64_t* index,
                            void* grad_query, void* grad_key, int64_t B, int64_t N1, int64_t N2, int64_t K,
                            int64_t H, int64_t D, cudaStream_t stream) {
  CASMTR_LAUNCH((score_backward_kernel<T>), grid_blocks(B * N1, 1), kThreads, 0, stream)(
      static_cast<const acc_t<T>*>(grad_out), static_cast<const T*>(query), static_cast<const T*>(key), index,
      static_cast<acc_t<T>*>(grad_query), static_cast<acc_t<T>*>(grad_key), B, N1, N2, K, H, D);
  return CASMTR_LAST_ERROR();
}

}  // namespace

int64_t score_forward_shared_bytes(DType dtype, int64_t H, int64_t D) {
  return static_cast<int64_t>(kChildren) * H * (D + 1) * acc_bytes(dtype);
}

cudaError_t score_forward(DType dtype, const void* query, const void* key, const int64_t* index, void* out,
                          int64_t B, int64_t N1, int64_t N2, int64_t K, int64_t H, int64_t D, cudaStream_t stream) {
  if (B * N1 == 0 || K * H == 0) return cudaSuccess;
  return CASMTR_DISPATCH(dtype, launch_forward, query, key, index, out, B, N1, N2, K, H, D, stream);
}

cudaError_t score_backward(DType dtype, const void* grad_out, const void* query, const void* key,
                           const int64_t* index, void* grad_query, void* grad_key, int64_t B, int64_t N1,
                           int64_t N2, int64_t K, int64_t H, int64_t D, cudaStream_t stream) {
  if (B * N1 == 0 || H * D == 0) return cudaSuccess;
  return CASMTR_DISPATCH(dtype, launch_backward, grad_out, query, key, index, grad_query, grad_key, B, N1, N2, K,
                         H, D, stream);
}

}  // namespace casmtr
