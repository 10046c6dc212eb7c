// PyTorch bindings of the CasMTR gathered-attention kernels: argument checks, dtype mapping, device guard,
// allocation on the inputs' device and launch on PyTorch's current CUDA stream.
#include <torch/extension.h>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "kernels.h"

namespace {

using at::Tensor;

// Error messages are assembled as one std::string without iostreams: TORCH_CHECK with several arguments formats
// them through std::ostringstream inside this library, and formatting an integer that way crashed (SIGSEGV in
// libstdc++) on an H100 machine with torch 2.11.0+cu130 and g++ 13.3. One std::string argument takes
// TORCH_CHECK's path that uses the string as it is.
std::string piece(const char* s) { return s; }
std::string piece(const std::string& s) { return s; }
std::string piece(const c10::Device& d) { return d.str(); }
std::string piece(at::ScalarType t) { return c10::toString(t); }
std::string piece(c10::IntArrayRef shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}
template <class T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
std::string piece(T v) {
  return std::to_string(v);
}
template <class... A>
std::string msg(const A&... parts) {
  std::string out;
  ((out += piece(parts)), ...);
  return out;
}

casmtr::DType to_dtype(const Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return casmtr::DType::kFloat32;
    case at::kHalf:
      return casmtr::DType::kFloat16;
    case at::kBFloat16:
      return casmtr::DType::kBFloat16;
    case at::kDouble:
      return casmtr::DType::kFloat64;
    default:
      TORCH_CHECK(false,
                  msg("casmtr_ops: ", name, " must be float32, float16, bfloat16 or float64, got ", t.scalar_type()));
  }
  return casmtr::DType::kFloat32;  // unreachable
}

at::ScalarType acc_scalar_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

void check_cuda(const Tensor& t, const char* name, const Tensor& ref) {
  TORCH_CHECK(t.defined(), msg("casmtr_ops: ", name, " is undefined"));
  TORCH_CHECK(t.is_cuda(), msg("casmtr_ops: ", name, " must be a CUDA tensor, got ", t.device()));
  TORCH_CHECK(t.device() == ref.device(),
              msg("casmtr_ops: ", name, " is on ", t.device(), " but the other inputs are on ", ref.device()));
}

void check_dim(const Tensor& t, int64_t dim, const char* name, const char* layout) {
  TORCH_CHECK(t.dim() == dim, msg("casmtr_ops: ", name, " must be ", layout, ", got shape ", t.sizes()));
}

void check_size(int64_t got, int64_t want, const char* what) {
  TORCH_CHECK(got == want, msg("casmtr_ops: ", what, " mismatch: ", got, " vs ", want));
}

void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, msg("casmtr_ops: ", op, " launch failed: ", cudaGetErrorString(err)));
}

void check_shared(int64_t bytes, const char* op, const std::string& what) {
  TORCH_CHECK(bytes <= casmtr::kMaxSharedBytes,
              msg("casmtr_ops: ", op, " needs ", bytes, " bytes of shared memory per block (", what,
                  "), more than the ", casmtr::kMaxSharedBytes,
                  " available; use the PyTorch path (CASMTR_OPS_BACKEND=torch) for these sizes"));
}

// Index tensor as contiguous int64; optionally checks every entry lies in [0, rows) (one device reduction + sync).
Tensor prepare_index(const Tensor& index, int64_t rows, bool check_index, const char* op) {
  Tensor idx = index.to(at::kLong).contiguous();
  if (check_index && idx.numel() > 0) {
    const int64_t lo = idx.min().item<int64_t>();
    const int64_t hi = idx.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < rows, msg("casmtr_ops: ", op, " index out of range: values in [", lo, ", ", hi,
                                          "] but only ", rows, " rows are gathered"));
  }
  return idx;
}

// Query/key pairs share one storage type: promote both when they differ.
std::tuple<Tensor, Tensor> common_pair(const Tensor& a, const Tensor& b) {
  const at::ScalarType t = at::promote_types(a.scalar_type(), b.scalar_type());
  return {a.to(t).contiguous(), b.to(t).contiguous()};
}

cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

void* data_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

// ------------------------------------------------------------------------------------------------------------
Tensor score_forward(const Tensor& query_in, const Tensor& key_in, const Tensor& index_in, bool check_index) {
  check_cuda(query_in, "query", query_in);
  check_cuda(key_in, "key", query_in);
  check_cuda(index_in, "index", query_in);
  check_dim(query_in, 5, "query", "[B, N1, 4, H, D]");
  check_dim(key_in, 4, "key", "[B, N2, H, D]");
  check_dim(index_in, 4, "index", "[B, N1, K, H]");
  const int64_t B = query_in.size(0), N1 = query_in.size(1), H = query_in.size(3), D = query_in.size(4);
  const int64_t N2 = key_in.size(1), K = index_in.size(2);
  check_size(query_in.size(2), 4, "query children (dim 2 must be 4)");
  check_size(key_in.size(0), B, "key batch");
  check_size(key_in.size(2), H, "key heads");
  check_size(key_in.size(3), D, "key head dim");
  check_size(index_in.size(0), B, "index batch");
  check_size(index_in.size(1), N1, "index parents");
  check_size(index_in.size(3), H, "index heads");
  const c10::cuda::CUDAGuard guard(query_in.device());
  auto [query, key] = common_pair(query_in, key_in);
  const casmtr::DType dtype = to_dtype(query, "query");
  check_shared(casmtr::score_forward_shared_bytes(dtype, H, D), "score_forward", "4 * heads * (head_dim + 1) values");
  const Tensor index = prepare_index(index_in, N2, check_index, "score_forward");
  Tensor out = at::empty({B, N1, 4, K, H}, query.options().dtype(acc_scalar_type(query.scalar_type())));
  check_launch(casmtr::score_forward(dtype, query.data_ptr(), key.data_ptr(), index.data_ptr<int64_t>(),
                                     out.data_ptr(), B, N1, N2, K, H, D, current_stream()),
               "score_forward");
  return out;
}

std::vector<Tensor> score_backward(const Tensor& grad_out_in, const Tensor& query_in, const Tensor& key_in,
                                   const Tensor& index_in, bool need_query, bool need_key) {
  check_cuda(query_in, "query", query_in);
  check_cuda(key_in, "key", query_in);
  check_cuda(index_in, "index", query_in);
  check_cuda(grad_out_in, "grad_out", query_in);
  const int64_t B = query_in.size(0), N1 = query_in.size(1), H = query_in.size(3), D = query_in.size(4);
  const int64_t N2 = key_in.size(1), K = index_in.size(2);
  check_dim(grad_out_in, 5, "grad_out", "[B, N1, 4, K, H]");
  const c10::cuda::CUDAGuard guard(query_in.device());
  auto [query, key] = common_pair(query_in, key_in);
  const casmtr::DType dtype = to_dtype(query, "query");
  const auto acc = query.options().dtype(acc_scalar_type(query.scalar_type()));
  const Tensor grad_out = grad_out_in.to(acc.dtype()).contiguous();
  const Tensor index = prepare_index(index_in, N2, false, "score_backward");
  Tensor grad_query = need_query ? at::empty(query.sizes(), acc) : Tensor();
  Tensor grad_key = need_key ? at::zeros(key.sizes(), acc) : Tensor();
  check_launch(casmtr::score_backward(dtype, grad_out.data_ptr(), query.data_ptr(), key.data_ptr(),
                                      index.data_ptr<int64_t>(), data_or_null(grad_query), data_or_null(grad_key), B,
                                      N1, N2, K, H, D, current_stream()),
               "score_backward");
  return {grad_query, grad_key};
}

// ------------------------------------------------------------------------------------------------------------
// score / index [B, N, 4, K, H] (or already flattened [B, N', K, H]), value [B, M, H, D] -> [B, N, 4, H, D].
Tensor value_forward(const Tensor& score_in, const Tensor& value_in, const Tensor& index_in, bool check_index) {
  check_cuda(score_in, "score", value_in);
  check_cuda(value_in, "value", value_in);
  check_cuda(index_in, "index", value_in);
  check_dim(score_in, 5, "score", "[B, N, 4, K, H]");
  check_dim(value_in, 4, "value", "[B, M, H, D]");
  TORCH_CHECK(index_in.sizes() == score_in.sizes(),
              msg("casmtr_ops: index shape ", index_in.sizes(), " must equal score shape ", score_in.sizes()));
  const int64_t B = score_in.size(0), Np = score_in.size(1), F = score_in.size(2), K = score_in.size(3),
                H = score_in.size(4);
  const int64_t M = value_in.size(1), D = value_in.size(3);
  check_size(value_in.size(0), B, "value batch");
  check_size(value_in.size(2), H, "value heads");
  const c10::cuda::CUDAGuard guard(value_in.device());
  const Tensor value = value_in.contiguous();
  const casmtr::DType vdt = to_dtype(value, "value");
  const at::ScalarType acc_t = acc_scalar_type(value.scalar_type());
  Tensor score = score_in.contiguous();
  if (score.scalar_type() != value.scalar_type() && score.scalar_type() != acc_t) score = score.to(acc_t);
  const casmtr::DType sdt = to_dtype(score, "score");
  const Tensor index = prepare_index(index_in, M, check_index, "value_forward");
  Tensor out = at::empty({B, Np, F, H, D}, value.options().dtype(acc_t));
  check_launch(casmtr::value_forward(vdt, sdt, score.data_ptr(), value.data_ptr(), index.data_ptr<int64_t>(),
                                     out.data_ptr(), B, Np * F, M, K, H, D, current_stream()),
               "value_forward");
  return out;
}

std::vector<Tensor> value_backward(const Tensor& grad_out_in, const Tensor& score_in, const Tensor& value_in,
                                   const Tensor& index_in, bool need_score, bool need_value) {
  check_cuda(score_in, "score", value_in);
  check_cuda(value_in, "value", value_in);
  check_cuda(index_in, "index", value_in);
  check_cuda(grad_out_in, "grad_out", value_in);
  check_dim(grad_out_in, 5, "grad_out", "[B, N, 4, H, D]");
  const int64_t B = score_in.size(0), Np = score_in.size(1), F = score_in.size(2), K = score_in.size(3),
                H = score_in.size(4);
  const int64_t M = value_in.size(1), D = value_in.size(3);
  const c10::cuda::CUDAGuard guard(value_in.device());
  const Tensor value = value_in.contiguous();
  const casmtr::DType vdt = to_dtype(value, "value");
  const at::ScalarType acc_t = acc_scalar_type(value.scalar_type());
  Tensor score = score_in.contiguous();
  if (score.scalar_type() != value.scalar_type() && score.scalar_type() != acc_t) score = score.to(acc_t);
  const casmtr::DType sdt = to_dtype(score, "score");
  const Tensor grad_out = grad_out_in.to(acc_t).contiguous();
  const Tensor index = prepare_index(index_in, M, false, "value_backward");
  const auto acc = value.options().dtype(acc_t);
  Tensor grad_score = need_score ? at::empty(score.sizes(), acc) : Tensor();
  Tensor grad_value = need_value ? at::zeros(value.sizes(), acc) : Tensor();
  check_launch(casmtr::value_backward(vdt, sdt, grad_out.data_ptr(), score.data_ptr(), value.data_ptr(),
                                      index.data_ptr<int64_t>(), data_or_null(grad_score), data_or_null(grad_value),
                                      B, Np * F, M, K, H, D, current_stream()),
               "value_backward");
  return {grad_score, grad_value};
}

// ------------------------------------------------------------------------------------------------------------
Tensor cascade_forward(const Tensor& query_in, const Tensor& key_in, const Tensor& index_in, bool check_index) {
  check_cuda(query_in, "query", query_in);
  check_cuda(key_in, "key", query_in);
  check_cuda(index_in, "index", query_in);
  check_dim(query_in, 3, "query", "[B, N1, C]");
  check_dim(key_in, 3, "key", "[B, N2, C]");
  check_dim(index_in, 3, "index", "[B, N1, K]");
  const int64_t B = query_in.size(0), N1 = query_in.size(1), C = query_in.size(2);
  const int64_t N2 = key_in.size(1), K = index_in.size(2);
  check_size(key_in.size(0), B, "key batch");
  check_size(key_in.size(2), C, "key channels");
  check_size(index_in.size(0), B, "index batch");
  check_size(index_in.size(1), N1, "index queries");
  const c10::cuda::CUDAGuard guard(query_in.device());
  auto [query, key] = common_pair(query_in, key_in);
  const casmtr::DType dtype = to_dtype(query, "query");
  check_shared(casmtr::cascade_forward_shared_bytes(dtype, C), "cascade_forward", "channels values");
  const Tensor index = prepare_index(index_in, N2, check_index, "cascade_forward");
  Tensor out = at::empty({B, N1, K}, query.options().dtype(acc_scalar_type(query.scalar_type())));
  check_launch(casmtr::cascade_forward(dtype, query.data_ptr(), key.data_ptr(), index.data_ptr<int64_t>(),
                                       out.data_ptr(), B, N1, N2, K, C, current_stream()),
               "cascade_forward");
  return out;
}

std::vector<Tensor> cascade_backward(const Tensor& grad_out_in, const Tensor& query_in, const Tensor& key_in,
                                     const Tensor& index_in, bool need_query, bool need_key) {
  check_cuda(query_in, "query", query_in);
  check_cuda(key_in, "key", query_in);
  check_cuda(index_in, "index", query_in);
  check_cuda(grad_out_in, "grad_out", query_in);
  check_dim(grad_out_in, 3, "grad_out", "[B, N1, K]");
  const int64_t B = query_in.size(0), N1 = query_in.size(1), C = query_in.size(2);
  const int64_t N2 = key_in.size(1), K = index_in.size(2);
  const c10::cuda::CUDAGuard guard(query_in.device());
  auto [query, key] = common_pair(query_in, key_in);
  const casmtr::DType dtype = to_dtype(query, "query");
  check_shared(casmtr::cascade_backward_shared_bytes(dtype, K, C), "cascade_backward",
               "candidates * (8 + value bytes) + channels values");
  const auto acc = query.options().dtype(acc_scalar_type(query.scalar_type()));
  const Tensor grad_out = grad_out_in.to(acc.dtype()).contiguous();
  const Tensor index = prepare_index(index_in, N2, false, "cascade_backward");
  Tensor grad_query = need_query ? at::empty(query.sizes(), acc) : Tensor();
  Tensor grad_key = need_key ? at::zeros(key.sizes(), acc) : Tensor();
  check_launch(casmtr::cascade_backward(dtype, grad_out.data_ptr(), query.data_ptr(), key.data_ptr(),
                                        index.data_ptr<int64_t>(), data_or_null(grad_query), data_or_null(grad_key),
                                        B, N1, N2, K, C, current_stream()),
               "cascade_backward");
  return {grad_query, grad_key};
}

bool debug_build() {
#ifdef CASMTR_DEBUG
  return true;
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "CasMTR gathered-attention CUDA kernels (see cuda/README.md)";
  m.def("score_forward", &score_forward, "QuadTree gathered block scores", py::arg("query"), py::arg("key"),
        py::arg("index"), py::arg("check_index") = false);
  m.def("score_backward", &score_backward, "gradients of score_forward", py::arg("grad_out"), py::arg("query"),
        py::arg("key"), py::arg("index"), py::arg("need_query") = true, py::arg("need_key") = true);
  m.def("value_forward", &value_forward, "gathered weighted sum of values", py::arg("score"), py::arg("value"),
        py::arg("index"), py::arg("check_index") = false);
  m.def("value_backward", &value_backward, "gradients of value_forward", py::arg("grad_out"), py::arg("score"),
        py::arg("value"), py::arg("index"), py::arg("need_score") = true, py::arg("need_value") = true);
  m.def("cascade_forward", &cascade_forward, "CasMTR 1/4 cascade window scores", py::arg("query"), py::arg("key"),
        py::arg("index"), py::arg("check_index") = false);
  m.def("cascade_backward", &cascade_backward, "gradients of cascade_forward", py::arg("grad_out"),
        py::arg("query"), py::arg("key"), py::arg("index"), py::arg("need_query") = true,
        py::arg("need_key") = true);
  m.def("debug_build", &debug_build, "whether device-side index checks were compiled in (CASMTR_DEBUG)");
}
