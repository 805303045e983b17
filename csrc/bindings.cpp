// duet._core: the one Python module over the C++ kernels. Every kernel call
// releases the GIL; arrays are taken without copies and checked for shape and
// dtype here, so that bad input raises a Python exception instead of crashing.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>
#include <string>

#include "ops/layer_ops.h"
#include "ops/matmul.h"
#include "ops/read_bytes.h"
#include "quant/formats.h"
#include "quant/kernels.h"
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

using ByteArray = py::array_t<uint8_t, py::array::c_style>;
using FloatArray = py::array_t<float, py::array::c_style>;

// The array must already be C-contiguous with this dtype: a silent copy would hide
// a caller's mistake (and cost a full pass over a weight matrix).
template <typename T>
py::array_t<T, py::array::c_style> array_exact(const py::array& a, const char* what) {
  if (!py::isinstance<py::array_t<T>>(a)) {
    throw py::type_error(std::string(what) + " must be a numpy array of dtype " +
                         py::str(py::dtype::of<T>()).cast<std::string>() + ", got " +
                         py::str(a.dtype()).cast<std::string>());
  }
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(what) + " must be C-contiguous");
  return py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(a);
}

void size_expect(size_t got, size_t want, const std::string& what) {
  if (got != want) {
    throw py::value_error(what + " holds " + std::to_string(got) + " bytes, expected " + std::to_string(want));
  }
}

GgmlType type_arg(int type_id) { return type_traits(type_id).type; }

void bind_quant(py::module_& m) {
  m.def("type_traits", [](int type_id) {
    const TypeTraits& t = type_traits(type_id);
    py::dict d;
    d["name"] = t.name;
    d["block_elems"] = t.block_elems;
    d["block_bytes"] = t.block_bytes;
    return d;
  }, py::arg("type_id"), "Block layout of a ggml type id; ValueError if duet does not support it.");

  m.def("dequantize", [](int type_id, const py::array& data, int64_t n_elements, const std::string& isa) {
    const GgmlType type = type_arg(type_id);
    const KernelTable& kt = kernel_table(isa_arg(isa));
    ByteArray bytes = array_exact<uint8_t>(data, "data");
    size_expect(bytes.nbytes(), row_bytes(type, n_elements), "data");
    FloatArray out(n_elements);
    const uint8_t* src = bytes.data();
    float* dst = out.mutable_data();
    {
      py::gil_scoped_release release;
      kernels_for(kt, type).dequantize_row(src, dst, n_elements);
    }
    return out;
  }, py::arg("type_id"), py::arg("data"), py::arg("n_elements"), py::arg("isa") = "",
     "The n_elements floats that `data` (uint8, any shape, C-contiguous) encodes.");

  m.def("quantize_act", [](const std::string& format, const py::array& x, const std::string& isa) {
    FloatArray xs = array_exact<float>(x, "x");
    if (xs.ndim() != 1) throw py::value_error("x must be 1-D");
    const int64_t n = xs.shape(0);
    const KernelTable& kt = kernel_table(isa_arg(isa));
    ActFormat act;
    if (format == "q8_32") act = ActFormat::Q8_32;
    else if (format == "q8_256") act = ActFormat::Q8_256;
    else throw py::value_error("format must be 'q8_32' or 'q8_256', got '" + format + "'");
    const int block = act == ActFormat::Q8_32 ? QK32 : QK_K;
    if (n % block != 0) throw py::value_error("x length " + std::to_string(n) + " is not a multiple of " + std::to_string(block));
    ByteArray out(static_cast<py::ssize_t>(act_row_bytes(act, n)));
    auto quantize = act == ActFormat::Q8_32 ? kt.quantize_q8_32 : kt.quantize_q8_256;
    const float* src = xs.data();
    uint8_t* dst = out.mutable_data();
    {
      py::gil_scoped_release release;
      quantize(src, dst, n);
    }
    return out;
  }, py::arg("format"), py::arg("x"), py::arg("isa") = "",
     "Activation quantization (q8_32: {f32 d, int8 qs[32]} blocks; q8_256: {f32 d, int8 qs[256], int16 bsums[16]}).");

  m.def("vec_dot", [](int type_id, const py::array& w_row, const py::array& act, const std::string& isa) {
    const GgmlType type = type_arg(type_id);
    const TypeTraits& traits = type_traits(type);
    const KernelTable& kt = kernel_table(isa_arg(isa));
    ByteArray w = array_exact<uint8_t>(w_row, "w_row");
    FloatArray a = array_exact<float>(act, "act");
    if (a.ndim() != 2) throw py::value_error("act must be 2-D [n_act, n]");
    const int64_t n_act = a.shape(0), n = a.shape(1);
    if (n_act < 1 || n_act > kMaxActRows) {
      throw py::value_error("act must have 1.." + std::to_string(kMaxActRows) + " rows, got " + std::to_string(n_act));
    }
    size_expect(w.nbytes(), row_bytes(type, n), "w_row");
    const size_t stride = act_row_bytes(traits.act_format, n);
    std::vector<uint8_t> quantized(stride * n_act);
    FloatArray out(n_act);
    const float* x = a.data();
    const uint8_t* w_ptr = w.data();
    float* dst = out.mutable_data();
    {
      py::gil_scoped_release release;
      const uint8_t* act_ptr = reinterpret_cast<const uint8_t*>(x);
      if (traits.act_format != ActFormat::F32) {
        auto quantize = traits.act_format == ActFormat::Q8_32 ? kt.quantize_q8_32 : kt.quantize_q8_256;
        for (int64_t i = 0; i < n_act; ++i) quantize(x + i * n, quantized.data() + i * stride, n);
        act_ptr = quantized.data();
      }
      kernels_for(kt, type).vec_dot(n, w_ptr, act_ptr, stride, static_cast<int>(n_act), dst);
    }
    return out;
  }, py::arg("type_id"), py::arg("w_row"), py::arg("act"), py::arg("isa") = "",
     "Dot products of one weight row with each row of act (quantized here as matmul does).");
}

// ---- ops: matmul, attention, layer ops -------------------------------------------

void bind_matmul(py::module_& m) {
  m.def("matmul", [](int type_id, const py::array& w, int64_t rows, int64_t cols, const py::array& x,
                     ThreadPool& pool, const std::string& isa, std::optional<py::array> out) {
    const GgmlType type = type_arg(type_id);
    const KernelTable& kt = kernel_table(isa_arg(isa));
    ByteArray wb = array_exact<uint8_t>(w, "w");
    if (rows < 0) throw py::value_error("rows must be >= 0");
    size_expect(wb.nbytes(), static_cast<size_t>(rows) * row_bytes(type, cols), "w");
    FloatArray xs = array_exact<float>(x, "x");
    if (xs.ndim() != 2 || xs.shape(1) != cols) {
      throw py::value_error("x must be 2-D [M, " + std::to_string(cols) + "]");
    }
    const int64_t n_rows_x = xs.shape(0);
    FloatArray y;
    if (out) {
      y = array_exact<float>(*out, "out");
      if (y.ndim() != 2 || y.shape(0) != n_rows_x || y.shape(1) != rows) {
        throw py::value_error("out must be 2-D [" + std::to_string(n_rows_x) + ", " + std::to_string(rows) + "]");
      }
    } else {
      y = FloatArray({n_rows_x, rows});
    }
    const WeightView view{wb.data(), type, rows, cols};
    const float* x_ptr = xs.data();
    float* y_ptr = y.mutable_data();
    {
      py::gil_scoped_release release;
      matmul(kt, view, x_ptr, n_rows_x, y_ptr, rows, pool);
    }
    return y;
  }, py::arg("type_id"), py::arg("w"), py::arg("rows"), py::arg("cols"), py::arg("x"), py::arg("pool"),
     py::arg("isa") = "", py::arg("out") = py::none(),
     "y[M, rows] = x[M, cols] @ W.T for W of `rows` rows of ggml type type_id.");

  m.def("embedding", [](int type_id, const py::array& table, int64_t n_vocab, int64_t n_embd, const py::array& ids,
                        const std::string& isa) {
    const GgmlType type = type_arg(type_id);
    const KernelTable& kt = kernel_table(isa_arg(isa));
    ByteArray tb = array_exact<uint8_t>(table, "table");
    if (n_vocab < 0) throw py::value_error("n_vocab must be >= 0");
    size_expect(tb.nbytes(), static_cast<size_t>(n_vocab) * row_bytes(type, n_embd), "table");
    auto id_array = array_exact<int32_t>(ids, "ids");
    if (id_array.ndim() != 1) throw py::value_error("ids must be 1-D");
    const int64_t n_ids = id_array.shape(0);
    FloatArray out({n_ids, n_embd});
    const uint8_t* t_ptr = tb.data();
    const int32_t* id_ptr = id_array.data();
    float* o_ptr = out.mutable_data();
    {
      py::gil_scoped_release release;
      embedding_lookup(kt, t_ptr, type, n_vocab, n_embd, id_ptr, n_ids, o_ptr);
    }
    return out;
  }, py::arg("type_id"), py::arg("table"), py::arg("n_vocab"), py::arg("n_embd"), py::arg("ids"),
     py::arg("isa") = "", "Rows `ids` of an embedding table, dequantized: f32 [n_ids, n_embd].");

  m.def("read_bytes", [](const py::array& buf, ThreadPool& pool) {
    ByteArray bytes = array_exact<uint8_t>(buf, "buf");
    const uint8_t* data = bytes.data();
    const int64_t n = bytes.nbytes();
    uint64_t result = 0;
    {
      py::gil_scoped_release release;
      result = read_bytes_checksum(data, n, pool);
    }
    return result;
  }, py::arg("buf"), py::arg("pool"),
     "XOR of every 8-byte word of buf, read by the pool's threads as matmul splits rows: "
     "the memory bandwidth baseline for matmul.");
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
  bind_quant(m);
  bind_matmul(m);
}
