// duet._core: the one Python module over the C++ kernels. Every kernel call
// releases the GIL; arrays are taken without copies and checked for shape and
// dtype here, so that bad input raises a Python exception instead of crashing.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "ops/attention.h"
#include "ops/layer_ops.h"
#include "runtime/cpu_features.h"
#include "runtime/thread_pool.h"

namespace py = pybind11;
using namespace duet;

namespace {

// ---- helpers shared by all sections -------------------------------------------

Isa isa_arg(const std::string& name) {
  if (name.empty()) return isa_default();
  Isa isa = isa_parse(name);
  if (!isa_runnable(isa)) throw std::invalid_argument("ISA '" + name + "' cannot run on this CPU or build");
  return isa;
}

void bind_runtime(py::module_& m) {
  m.def("isa_runnable", [] {
    std::vector<std::string> names;
    for (Isa isa : isa_runnable_list()) names.push_back(isa_name(isa));
    return names;
  }, "Names of the ISA paths this build can run on this CPU, slowest first.");
  m.def("isa_default", [] { return std::string(isa_name(isa_default())); },
        "The ISA path kernels use unless told otherwise (DUET_ISA overrides).");

  py::class_<ThreadPool>(m, "ThreadPool", "Worker threads for the kernels; the caller is one of them.")
      .def(py::init<int>(), py::arg("n_threads"))
      .def_property_readonly("size", &ThreadPool::size);
}

// ---- quant: formats, dequantize, quantize, vec_dot ------------------------------

// ---- ops: matmul, attention, layer ops -------------------------------------------

// Arrays are taken as they are (no conversion), so in-place ops write to the caller's
// memory and a wrong dtype or layout is an error rather than a silent copy.
constexpr int64_t kAnyExtent = -1;

std::string shape_text(const py::array& a) {
  std::string text = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) text += (i ? ", " : "") + std::to_string(a.shape(i));
  return text + ")";
}

// Checks dtype (a numpy name such as "float32"), C-contiguity, writeability and shape;
// kAnyExtent in `shape` accepts any extent on that axis.
void check_array(const py::array& a, const char* name, const char* dtype, const std::vector<int64_t>& shape,
                 bool writeable = false) {
  if (!a.dtype().equal(py::dtype(dtype))) {
    throw py::value_error(std::string(name) + " must be " + dtype + ", got " + py::str(a.dtype()).cast<std::string>());
  }
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
  if (writeable && !a.writeable()) throw py::value_error(std::string(name) + " must be writeable");
  bool shape_ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t i = 0; shape_ok && i < shape.size(); ++i) shape_ok = shape[i] == kAnyExtent || a.shape(i) == shape[i];
  if (!shape_ok) {
    std::string want = "(";
    for (size_t i = 0; i < shape.size(); ++i) {
      want += (i ? ", " : "") + (shape[i] == kAnyExtent ? std::string("*") : std::to_string(shape[i]));
    }
    throw py::value_error(std::string(name) + " must have shape " + want + "), got " + shape_text(a));
  }
}

std::vector<int64_t> shape_of(const py::array& a) { return std::vector<int64_t>(a.shape(), a.shape() + a.ndim()); }

// `out` if given (checked), else a new f32 array of `shape`.
py::array output_f32(const py::object& out, const std::vector<int64_t>& shape) {
  if (out.is_none()) return py::array_t<float>(shape);
  if (!py::isinstance<py::array>(out)) throw py::value_error("out must be a numpy array");
  py::array arr = py::reinterpret_borrow<py::array>(out);
  check_array(arr, "out", "float32", shape, true);
  return arr;
}

py::array attention_binding(const py::array& q, const py::array& k, const py::array& v, int64_t n_kv,
                            const py::array& mask, float scale, ThreadPool& pool, const std::string& isa,
                            const py::object& out) {
  check_array(q, "q", "float32", {kAnyExtent, kAnyExtent, kAnyExtent});
  const bool f16 = k.dtype().equal(py::dtype("float16"));
  const char* kv_dtype = f16 ? "float16" : "float32";
  check_array(k, "k", kv_dtype, {kAnyExtent, kAnyExtent, q.shape(2)});
  check_array(v, "v", kv_dtype, shape_of(k));
  const int64_t n_query = q.shape(0), n_cap = k.shape(0);
  if (n_kv < 0 || n_kv > n_cap) {
    throw py::value_error("n_kv must be in [0, " + std::to_string(n_cap) + "], got " + std::to_string(n_kv));
  }
  if (k.shape(1) < 1 || q.shape(1) % k.shape(1) != 0) {
    throw py::value_error("q's head count " + std::to_string(q.shape(1)) + " must be a multiple of k's " +
                          std::to_string(k.shape(1)));
  }
  if (q.shape(2) < 1) throw py::value_error("head_dim must be positive");
  check_array(mask, "mask", "uint8", {n_query, n_kv});
  py::array result = output_f32(out, shape_of(q));
  const AttentionShape shape{n_query, n_kv, static_cast<int>(q.shape(1)), static_cast<int>(k.shape(1)),
                             static_cast<int>(q.shape(2))};
  const Isa path = isa_arg(isa);
  float* out_data = static_cast<float*>(result.mutable_data());
  {
    py::gil_scoped_release release;
    attention(shape, static_cast<const float*>(q.data()), k.data(), v.data(), f16 ? KvType::F16 : KvType::F32,
              static_cast<const uint8_t*>(mask.data()), scale, out_data, pool, path);
  }
  return result;
}

py::array rms_norm_binding(const py::array& x, const py::array& w, float eps, const py::object& out) {
  check_array(x, "x", "float32", {kAnyExtent, kAnyExtent});
  check_array(w, "w", "float32", {x.shape(1)});
  py::array result = output_f32(out, shape_of(x));
  float* y = static_cast<float*>(result.mutable_data());
  py::gil_scoped_release release;
  rms_norm(static_cast<const float*>(x.data()), static_cast<const float*>(w.data()), y, x.shape(0), x.shape(1), eps);
  return result;
}

void rope_binding(py::array& x, const py::array& pos, int n_rot, float freq_base, int mode) {
  check_array(x, "x", "float32", {kAnyExtent, kAnyExtent, kAnyExtent}, true);
  check_array(pos, "pos", "int32", {x.shape(0)});
  if (n_rot <= 0 || n_rot % 2 != 0 || n_rot > x.shape(2)) {
    throw py::value_error("n_rot must be even and in (0, head_dim=" + std::to_string(x.shape(2)) + "], got " +
                          std::to_string(n_rot));
  }
  if (mode != static_cast<int>(RopeMode::Normal) && mode != static_cast<int>(RopeMode::Neox)) {
    throw py::value_error("mode must be 0 (normal) or 2 (neox), got " + std::to_string(mode));
  }
  float* data = static_cast<float*>(x.mutable_data());
  py::gil_scoped_release release;
  rope(data, static_cast<const int32_t*>(pos.data()), x.shape(0), static_cast<int>(x.shape(1)),
       static_cast<int>(x.shape(2)), n_rot, freq_base, static_cast<RopeMode>(mode));
}

void swiglu_binding(py::array& gate, const py::array& up) {
  check_array(gate, "gate", "float32", shape_of(gate), true);
  check_array(up, "up", "float32", shape_of(gate));
  float* g = static_cast<float*>(gate.mutable_data());
  py::gil_scoped_release release;
  swiglu(g, static_cast<const float*>(up.data()), static_cast<int64_t>(gate.size()));
}

void add_bias_binding(py::array& x, const py::array& b) {
  check_array(x, "x", "float32", {kAnyExtent, kAnyExtent}, true);
  check_array(b, "b", "float32", {x.shape(1)});
  float* data = static_cast<float*>(x.mutable_data());
  py::gil_scoped_release release;
  add_bias(data, static_cast<const float*>(b.data()), x.shape(0), x.shape(1));
}

void add_inplace_binding(py::array& x, const py::array& y) {
  check_array(x, "x", "float32", shape_of(x), true);
  check_array(y, "y", "float32", shape_of(x));
  float* data = static_cast<float*>(x.mutable_data());
  py::gil_scoped_release release;
  add_inplace(data, static_cast<const float*>(y.data()), static_cast<int64_t>(x.size()));
}

void bind_ops(py::module_& m) {
  m.def("attention", &attention_binding, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("n_kv"), py::arg("mask"),
        py::arg("scale"), py::arg("pool"), py::arg("isa") = "", py::arg("out") = py::none(),
        "Grouped-query attention of q [T, n_head, hd] over cache rows 0..n_kv-1 of k, v [n_cap, n_head_kv, hd]\n"
        "(float32 or float16) with mask uint8 [T, n_kv] (nonzero = visible). Returns f32 [T, n_head, hd];\n"
        "a query that sees nothing gets zeros.");
  m.def("rms_norm", &rms_norm_binding, py::arg("x"), py::arg("w"), py::arg("eps"), py::arg("out") = py::none(),
        "x [R, n] / sqrt(mean(x^2) + eps) * w [n], per row.");
  m.def("rope", &rope_binding, py::arg("x"), py::arg("pos"), py::arg("n_rot"), py::arg("freq_base"), py::arg("mode"),
        "Rotates x [R, n_heads, hd] in place at positions pos int32 [R]; mode 0 normal, 2 neox.");
  m.def("swiglu", &swiglu_binding, py::arg("gate"), py::arg("up"), "gate <- silu(gate) * up, in place.");
  m.def("add_bias", &add_bias_binding, py::arg("x"), py::arg("b"), "x [R, n] += b [n], in place.");
  m.def("add_inplace", &add_inplace_binding, py::arg("x"), py::arg("y"), "x += y (same shape), in place.");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "duet's C++ kernels";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::out_of_range& e) {
      PyErr_SetString(PyExc_IndexError, e.what());
    }
  });
  bind_runtime(m);
  bind_ops(m);
}
