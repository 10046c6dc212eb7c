// C entry points of the host-emulated kernels for ctypes (test/ops/test_cuda_emulated.py). Linked with the three
// .cu files compiled as C++ with -DCASMTR_HOST_EMULATION; never part of the CUDA extension.
#include "common.cuh"

using casmtr::DType;

extern "C" {

int emu_score_forward(int dtype, const void* q, const void* k, const int64_t* idx, void* out, int64_t B, int64_t N1,
                      int64_t N2, int64_t K, int64_t H, int64_t D) {
  return casmtr::score_forward(static_cast<DType>(dtype), q, k, idx, out, B, N1, N2, K, H, D, nullptr);
}

int emu_score_backward(int dtype, const void* g, const void* q, const void* k, const int64_t* idx, void* gq, void* gk,
                       int64_t B, int64_t N1, int64_t N2, int64_t K, int64_t H, int64_t D) {
  return casmtr::score_backward(static_cast<DType>(dtype), g, q, k, idx, gq, gk, B, N1, N2, K, H, D, nullptr);
}

int emu_value_forward(int vdtype, int sdtype, const void* s, const void* v, const int64_t* idx, void* out, int64_t B,
                      int64_t N, int64_t M, int64_t K, int64_t H, int64_t D) {
  return casmtr::value_forward(static_cast<DType>(vdtype), static_cast<DType>(sdtype), s, v, idx, out, B, N, M, K, H,
                               D, nullptr);
}

int emu_value_backward(int vdtype, int sdtype, const void* g, const void* s, const void* v, const int64_t* idx,
                       void* gs, void* gv, int64_t B, int64_t N, int64_t M, int64_t K, int64_t H, int64_t D) {
  return casmtr::value_backward(static_cast<DType>(vdtype), static_cast<DType>(sdtype), g, s, v, idx, gs, gv, B, N, M,
                                K, H, D, nullptr);
}

int emu_cascade_forward(int dtype, const void* q, const void* k, const int64_t* idx, void* out, int64_t B, int64_t N1,
                        int64_t N2, int64_t K, int64_t C) {
  return casmtr::cascade_forward(static_cast<DType>(dtype), q, k, idx, out, B, N1, N2, K, C, nullptr);
}

int emu_cascade_backward(int dtype, const void* g, const void* q, const void* k, const int64_t* idx, void* gq,
                         void* gk, int64_t B, int64_t N1, int64_t N2, int64_t K, int64_t C) {
  return casmtr::cascade_backward(static_cast<DType>(dtype), g, q, k, idx, gq, gk, B, N1, N2, K, C, nullptr);
}

int emu_max_blocks() { return static_cast<int>(casmtr::kMaxBlocks); }
}
