// A small CUDA execution model on the CPU, so the kernels' index arithmetic, shared memory use, barriers, warp
// shuffles and atomics can be tested without a GPU (test/ops/test_cuda_emulated.py).
//
// Every block runs its threads as real std::threads (blocks one after another), so __syncthreads is a
// std::barrier over the block and __shfl_down_sync exchanges values through a per-warp buffer between two warp
// barriers. It checks semantics, not performance, and assumes what the kernels assume: blockDim.x a multiple of
// 32, barriers and shuffles reached by every thread of the block/warp.
#pragma once

#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include <cuda_runtime_api.h>

// host_defines.h gives these CUDA meanings; here they are plain C++.
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

namespace casmtr_emu {

struct Warp {
  std::barrier<> sync{32};
  alignas(8) unsigned char lanes[32][8];
};

struct Block {
  explicit Block(unsigned int threads, size_t shared_bytes)
      : sync(threads), warps(threads / 32), shared(shared_bytes > 0 ? shared_bytes : 1) {
    for (auto& w : warps) w = std::make_unique<Warp>();
  }
  std::barrier<> sync;
  std::vector<std::unique_ptr<Warp>> warps;
  std::vector<unsigned char> shared;
};

inline thread_local Block* tl_block = nullptr;
inline thread_local dim3 tl_thread, tl_block_idx, tl_block_dim, tl_grid_dim;

inline unsigned char* shared_memory() { return tl_block->shared.data(); }

struct LaunchConfig {
  dim3 grid, block;
  size_t shared;
};

// kernel(args...) over grid x block (x dimension only, as the kernels use); blocks run one after another.
template <typename Kernel>
struct BoundLaunch {
  LaunchConfig cfg;
  Kernel kernel;
  template <typename... Args>
  void operator()(Args... args) const {
    for (unsigned int b = 0; b < cfg.grid.x; ++b) {
      Block blk(cfg.block.x, cfg.shared);
      std::vector<std::thread> threads;
      threads.reserve(cfg.block.x);
      for (unsigned int t = 0; t < cfg.block.x; ++t) {
        threads.emplace_back([&, b, t]() {
          tl_block = &blk;
          tl_thread = dim3(t);
          tl_block_idx = dim3(b);
          tl_block_dim = cfg.block;
          tl_grid_dim = cfg.grid;
          kernel(args...);
        });
      }
      for (auto& th : threads) th.join();
    }
  }
};

template <typename Kernel>
BoundLaunch<Kernel> launch(Kernel kernel, dim3 grid, dim3 block, size_t shared) {
  return {LaunchConfig{grid, block, shared}, kernel};
}

}  // namespace casmtr_emu

#define threadIdx (::casmtr_emu::tl_thread)
#define blockIdx (::casmtr_emu::tl_block_idx)
#define blockDim (::casmtr_emu::tl_block_dim)
#define gridDim (::casmtr_emu::tl_grid_dim)

[[noreturn]] inline void __trap() {
  std::fflush(stdout);
  std::abort();
}

inline void __syncthreads() { ::casmtr_emu::tl_block->sync.arrive_and_wait(); }

template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

template <typename T>
inline T __shfl_down_sync(unsigned int /*mask*/, T value, int offset) {
  static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
  auto& warp = *::casmtr_emu::tl_block->warps[threadIdx.x / 32];
  const unsigned int lane = threadIdx.x % 32;
  std::memcpy(warp.lanes[lane], &value, sizeof(T));
  warp.sync.arrive_and_wait();
  T out = value;
  if (lane + offset < 32) std::memcpy(&out, warp.lanes[lane + offset], sizeof(T));
  warp.sync.arrive_and_wait();
  return out;
}

template <typename T>
inline T atomicAdd(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}

#define CASMTR_LAUNCH(KERNEL, GRID, BLOCK, SHARED, STREAM) \
  ((void)(STREAM), ::casmtr_emu::launch(KERNEL, dim3(GRID), dim3(BLOCK), static_cast<size_t>(SHARED)))
#define CASMTR_DYNAMIC_SHARED(TYPE, NAME) TYPE* NAME = reinterpret_cast<TYPE*>(::casmtr_emu::shared_memory())
#define CASMTR_LAST_ERROR() cudaSuccess
