// Device helpers shared by the kernels: storage/accumulation types, loads, grid sizing, index checks.
#pragma once

#include <cstdint>
#include <cstdio>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#ifdef CASMTR_HOST_EMULATION
// Plain C++ build of the kernels for CPU tests (cuda/host_emulation.h): no nvcc, no GPU.
#include "host_emulation.h"
#else
#include <cuda_runtime.h>
#endif

#include "kernels.h"

#ifndef CASMTR_HOST_EMULATION
// kernel<<<grid, block, shared, stream>>>(args) as CASMTR_LAUNCH(kernel, grid, block, shared, stream)(args)
#define CASMTR_LAUNCH(KERNEL, GRID, BLOCK, SHARED, STREAM) KERNEL<<<GRID, BLOCK, SHARED, STREAM>>>
#define CASMTR_DYNAMIC_SHARED(TYPE, NAME) extern __shared__ TYPE NAME[]
#define CASMTR_LAST_ERROR() cudaGetLastError()
#endif

#ifndef CASMTR_MAX_BLOCKS
#define CASMTR_MAX_BLOCKS (1 << 20)
#endif

namespace casmtr {

// Accumulation type: fp32 for fp32/fp16/bf16 storage, fp64 for fp64.
template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};
template <typename T>
using acc_t = typename Acc<T>::type;

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }

// Read-only cached load converted to the accumulation type.
template <typename T>
__device__ __forceinline__ acc_t<T> load(const T* p) {
  return to_acc(__ldg(p));
}

template <typename T>
__host__ __device__ constexpr int64_t bytes_of() {
  return static_cast<int64_t>(sizeof(T));
}

inline int64_t acc_bytes(DType dtype) { return dtype == DType::kFloat64 ? 8 : 4; }

// Blocks for `items` work items of `per_block` each. Kernels loop grid-stride over blockIdx.x, so capping the
// grid never drops work; the cap stays far below gridDim.x's limit (2^31 - 1).
constexpr int64_t kMaxBlocks = CASMTR_MAX_BLOCKS;
inline unsigned int grid_blocks(int64_t items, int64_t per_block) {
  int64_t blocks = (items + per_block - 1) / per_block;
  if (blocks < 1) blocks = 1;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  return static_cast<unsigned int>(blocks);
}

constexpr int kWarp = 32;
constexpr unsigned int kFullMask = 0xffffffffu;

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_down_sync(kFullMask, v, offset);
  return v;
}

}  // namespace casmtr

// Index bounds: checked on the device in debug builds (-DCASMTR_DEBUG, e.g. CASMTR_CUDA_DEBUG=1 at build time);
// release builds rely on the optional host-side check (check_index=True) in casmtr_ops.cpp.
#ifdef CASMTR_DEBUG
#define CASMTR_CHECK_INDEX(idx, n)                                                                       \
  do {                                                                                                   \
    if ((idx) < 0 || (idx) >= (n)) {                                                                     \
      printf("casmtr kernel %s: index %lld out of range [0, %lld)\n", __func__, (long long)(idx),        \
             (long long)(n));                                                                            \
      __trap();                                                                                          \
    }                                                                                                    \
  } while (0)
#else
#define CASMTR_CHECK_INDEX(idx, n) \
  do {                             \
  } while (0)
#endif

// Calls FN<T>(args...) with T the storage type named by a DType value.
#define CASMTR_DISPATCH(DTYPE, FN, ...)                                           \
  [&]() -> cudaError_t {                                                         \
    switch (DTYPE) {                                                             \
      case ::casmtr::DType::kFloat32:                                            \
        return FN<float>(__VA_ARGS__);                                           \
      case ::casmtr::DType::kFloat16:                                            \
        return FN<__half>(__VA_ARGS__);                                          \
      case ::casmtr::DType::kBFloat16:                                           \
        return FN<__nv_bfloat16>(__VA_ARGS__);                                   \
      case ::casmtr::DType::kFloat64:                                            \
        return FN<double>(__VA_ARGS__);                                          \
    }                                                                            \
    return cudaErrorInvalidValue;                                                \
  }()
