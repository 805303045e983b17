// duet._core: the one Python module over the C++ kernels. Every kernel call
// releases the GIL; arrays are taken without copies and checked for shape and
// dtype here, so that bad input raises a Python exception instead of crashing.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ops/layer_ops.h"
#include "ops/matmul.h"
#include "ops/read_bytes.h"
#include "quant/formats.h"
#include "quant/kernels.h"
#include "quant/scalar_kernels.h"
#include "ops/attention.h"
#include "ops/exp_ggml.h"
#include "runtime/cpu_features.h"
#include "ops/transformer_layer.h"
#include "runtime/file_reader.h"
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

  py::class_<FileReader>(m, "FileReader",
                         "Reads byte ranges of a file into reusable aligned buffers on an IO thread, "
                         "bypassing the page cache (O_DIRECT, or pread + fadvise DONTNEED).")
      .def(py::init<const std::string&, int, size_t, bool>(), py::arg("path"), py::arg("n_buffers"),
           py::arg("buffer_bytes"), py::arg("direct_io") = true)
      .def("submit", [](FileReader& r, uint64_t offset, size_t size) {
             py::gil_scoped_release release;
             return r.submit(offset, size);
           }, py::arg("offset"), py::arg("size"), "Queues a read; blocks while all buffers are taken. Returns a ticket.")
      .def("wait", [](py::object self, int64_t ticket) {
             FileReader& r = self.cast<FileReader&>();
             const uint8_t* start;
             {
               py::gil_scoped_release release;
               start = r.wait(ticket);
             }
             // The view keeps the reader alive; its bytes are valid until release(ticket).
             return py::array_t<uint8_t>({py::ssize_t(r.buffer_bytes())}, {py::ssize_t(1)}, start, self);
           }, py::arg("ticket"),
           "Waits for a read; returns a uint8 view starting at its first byte (the buffer's length; valid until release).")
      .def("release", &FileReader::release, py::arg("ticket"))
      .def("stats", [](FileReader& r) {
             ReadStats s = r.stats();
             return py::dict(py::arg("bytes_read") = s.bytes_read, py::arg("seconds_busy") = s.seconds_busy,
                             py::arg("direct_io") = s.direct_io);
           })
      .def_property_readonly("file_size", &FileReader::file_size)
      .def_property_readonly("buffer_bytes", &FileReader::buffer_bytes)
      .def_property_readonly("resident_bytes", &FileReader::resident_bytes);
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

  m.def("quantize_q4_0", [](const py::array& x) {
    FloatArray xs = array_exact<float>(x, "x");
    const int64_t n = xs.size();
    if (n % QK32 != 0) throw py::value_error("x size " + std::to_string(n) + " is not a multiple of 32");
    ByteArray out(static_cast<py::ssize_t>(n / QK32 * sizeof(BlockQ4_0)));
    const float* src = xs.data();
    uint8_t* dst = out.mutable_data();
    {
      py::gil_scoped_release release;
      scalar::quantize_row_q4_0(src, dst, n);
    }
    return out;
  }, py::arg("x"), "Float32 weights (any shape, C-contiguous) -> Q4_0 blocks, as ggml's reference quantizer.");

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

// None, or one RowOrder byte per token (ops/row_order.h).
py::array_t<uint8_t, py::array::c_style | py::array::forcecast> prompt_flags(const py::object& prompt, int64_t n_tokens) {
  py::array_t<uint8_t, py::array::c_style | py::array::forcecast> flags;
  if (prompt.is_none()) return flags;
  flags = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(prompt);
  if (!flags || flags.ndim() != 1 || flags.shape(0) != n_tokens) {
    throw py::value_error("prompt must be None or uint8 [" + std::to_string(n_tokens) + "], one flag per token");
  }
  const uint8_t* data = flags.data();
  if (std::any_of(data, data + n_tokens, [](uint8_t f) { return f > kRowAnyOrder; })) {
    throw py::value_error("prompt flags must be 0 (decoded), 1 (prompt) or 2 (any order)");
  }
  return flags;
}

// 0: the ISA's own llama.cpp build width (ops/exp_ggml.h); the ops check the others.
int width_arg(int width, Isa isa) { return width == 0 ? ggml_width(isa) : width; }

py::array attention_binding(const py::array& q, const py::array& k, const py::array& v, int64_t n_kv,
                            const py::array& mask, float scale, ThreadPool& pool, const std::string& isa,
                            const py::object& out, const py::object& prompt, int width) {
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
  const auto prompt_arr = prompt_flags(prompt, n_query);
  const uint8_t* prompt_ptr = prompt.is_none() ? nullptr : prompt_arr.data();
  py::array result = output_f32(out, shape_of(q));
  const AttentionShape shape{n_query, n_kv, static_cast<int>(q.shape(1)), static_cast<int>(k.shape(1)),
                             static_cast<int>(q.shape(2))};
  const Isa path = isa_arg(isa);
  const int summation_width = width_arg(width, path);
  float* out_data = static_cast<float*>(result.mutable_data());
  {
    py::gil_scoped_release release;
    attention(shape, static_cast<const float*>(q.data()), k.data(), v.data(), f16 ? KvType::F16 : KvType::F32,
              static_cast<const uint8_t*>(mask.data()), prompt_ptr, scale, out_data, pool, path, summation_width);
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

void swiglu_binding(py::array& gate, const py::array& up, const std::string& isa, int width) {
  check_array(gate, "gate", "float32", shape_of(gate), true);
  check_array(up, "up", "float32", shape_of(gate));
  float* g = static_cast<float*>(gate.mutable_data());
  const Isa path = isa_arg(isa);
  const int exp_width = width_arg(width, path);
  py::gil_scoped_release release;
  swiglu(g, static_cast<const float*>(up.data()), static_cast<int64_t>(gate.size()), path, exp_width);
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
        py::arg("prompt") = py::none(), py::arg("width") = 0,
        "Grouped-query attention of q [T, n_head, hd] over cache rows 0..n_kv-1 of k, v [n_cap, n_head_kv, hd]\n"
        "(float32 or float16) with mask uint8 [T, n_kv] (nonzero = visible). Returns f32 [T, n_head, hd];\n"
        "a query that sees nothing gets zeros. prompt: None or uint8 [T]; rows flagged 1 sum in llama.cpp's\n"
        "prompt-batch order, the others in its one-token order; width: that of llama.cpp's build whose sums\n"
        "are followed (8: AVX2, 16: AVX-512; 0: the ISA's own).");
  m.def("ggml_width", [](const std::string& isa) { return ggml_width(isa_arg(isa)); }, py::arg("isa") = "",
        "The vector width (8 or 16) of the llama.cpp build whose rounding the ISA path reproduces.");
  m.def("rms_norm", &rms_norm_binding, py::arg("x"), py::arg("w"), py::arg("eps"), py::arg("out") = py::none(),
        "x [R, n] / sqrt(mean(x^2) + eps) * w [n], per row.");
  m.def("rope", &rope_binding, py::arg("x"), py::arg("pos"), py::arg("n_rot"), py::arg("freq_base"), py::arg("mode"),
        "Rotates x [R, n_heads, hd] in place at positions pos int32 [R]; mode 0 normal, 2 neox.");
  m.def("swiglu", &swiglu_binding, py::arg("gate"), py::arg("up"), py::arg("isa") = "", py::arg("width") = 0,
        "gate <- silu(gate) * up, in place (silu with ggml's exp in the form of its build of that width).");
  m.def("add_bias", &add_bias_binding, py::arg("x"), py::arg("b"), "x [R, n] += b [n], in place.");
  m.def("add_inplace", &add_inplace_binding, py::arg("x"), py::arg("y"), "x += y (same shape), in place.");
}

void bind_matmul(py::module_& m) {
  m.def("matmul", [](int type_id, const py::array& w, int64_t rows, int64_t cols, const py::array& x,
                     ThreadPool& pool, const std::string& isa, std::optional<py::array> out,
                     const py::object& prompt) {
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
    const auto prompt_arr = prompt_flags(prompt, n_rows_x);
    const uint8_t* prompt_ptr = prompt.is_none() ? nullptr : prompt_arr.data();
    const WeightView view{wb.data(), type, rows, cols};
    const float* x_ptr = xs.data();
    float* y_ptr = y.mutable_data();
    {
      py::gil_scoped_release release;
      matmul(kt, view, x_ptr, n_rows_x, y_ptr, rows, pool, prompt_ptr);
    }
    return y;
  }, py::arg("type_id"), py::arg("w"), py::arg("rows"), py::arg("cols"), py::arg("x"), py::arg("pool"),
     py::arg("isa") = "", py::arg("out") = py::none(), py::arg("prompt") = py::none(),
     "y[M, rows] = x[M, cols] @ W.T for W of `rows` rows of ggml type type_id. prompt: None or\n"
     "uint8 [M]: 1 for prompt rows (llama.cpp's prompt-batch order where the type has one), 2 for rows\n"
     "that may take any order (ROW_ANY_ORDER: the fastest kernels for their batch, bits depending on it).");

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

  m.def("read_bytes", [](const py::array& buf, ThreadPool& pool, bool prefetch) {
    ByteArray bytes = array_exact<uint8_t>(buf, "buf");
    const uint8_t* data = bytes.data();
    const int64_t n = bytes.nbytes();
    uint64_t result = 0;
    {
      py::gil_scoped_release release;
      result = read_bytes_checksum(data, n, pool, prefetch);
    }
    return result;
  }, py::arg("buf"), py::arg("pool"), py::arg("prefetch") = false,
     "XOR of every 8-byte word of buf, read by the pool's threads as matmul splits rows: "
     "the memory bandwidth baseline for matmul (prefetch: asking for bytes ahead as its kernels do).");
}

// ---- model: one decoder layer in one call ---------------------------------------

// A layer's weights plus the Python objects that own their memory (mmap views or
// streaming buffers), kept alive as long as the layer is.
struct PyTransformerLayer {
  LayerShape shape;
  LayerWeights weights;
  std::vector<py::object> owners;
};

// A tensor entry is (ggml type id, uint8/float array, ne0, ne1).
WeightView weight_arg(PyTransformerLayer& layer, const py::dict& tensors, const char* name) {
  if (!tensors.contains(name)) throw std::invalid_argument(std::string("layer tensor missing: ") + name);
  auto entry = tensors[name].cast<py::tuple>();
  auto type = static_cast<GgmlType>(entry[0].cast<int>());
  auto data = entry[1].cast<py::array>();
  int64_t cols = entry[2].cast<int64_t>(), rows = entry[3].cast<int64_t>();
  size_t expected = row_bytes(type, cols) * size_t(rows);
  if (!(data.flags() & py::array::c_style) || size_t(data.nbytes()) != expected) {
    throw std::invalid_argument(std::string("layer tensor ") + name + ": expected " + std::to_string(expected) +
                                " contiguous bytes, got " + std::to_string(data.nbytes()));
  }
  layer.owners.push_back(data);
  return WeightView{data.data(), type, rows, cols};
}

const float* vector_arg(PyTransformerLayer& layer, const py::dict& tensors, const char* name, int64_t n,
                        bool optional) {
  if (!tensors.contains(name)) {
    if (optional) return nullptr;
    throw std::invalid_argument(std::string("layer tensor missing: ") + name);
  }
  auto entry = tensors[name].cast<py::tuple>();
  if (entry[0].cast<int>() != int(GgmlType::F32)) {
    throw std::invalid_argument(std::string("layer tensor ") + name + " must be F32");
  }
  // F32 tensors come as the file's bytes, like every other tensor.
  auto data = entry[1].cast<py::array>();
  if (!(data.flags() & py::array::c_style) || size_t(data.nbytes()) != sizeof(float) * size_t(n)) {
    throw std::invalid_argument(std::string("layer tensor ") + name + ": expected " + std::to_string(n) +
                                " floats (" + std::to_string(sizeof(float) * n) + " contiguous bytes)");
  }
  layer.owners.push_back(data);
  return static_cast<const float*>(data.data());
}

void check_kv(const py::array& cache, const LayerShape& s, KvType type, int64_t& capacity) {
  bool dtype_ok = type == KvType::F32 ? py::isinstance<py::array_t<float>>(cache)
                                      : cache.dtype().is(py::dtype("float16"));
  if (!dtype_ok || cache.ndim() != 3 || !(cache.flags() & py::array::c_style) || cache.shape(1) != s.n_head_kv ||
      cache.shape(2) != s.head_dim) {
    throw std::invalid_argument("KV cache layer must be a C-contiguous float16/float32 array [capacity, n_head_kv, head_dim]");
  }
  capacity = cache.shape(0);
}

void bind_model(py::module_& m) {
  py::class_<LayerScratch>(m, "LayerScratch",
                           "A layer's working buffers, kept across the layers of a pass and across passes\n"
                           "(one per model: not for two passes at once).")
      .def(py::init<>())
      .def_property_readonly("nbytes", &LayerScratch::nbytes)
      .def("release", &LayerScratch::release, "Gives the buffers' memory back; they grow again as needed.");
  py::class_<PyTransformerLayer>(m, "TransformerLayer", "One qwen2/llama decoder layer over weights addressed in place.")
      .def(py::init([](const py::dict& shape, const py::dict& tensors) {
             PyTransformerLayer layer;
             LayerShape& s = layer.shape;
             s.n_embd = shape["n_embd"].cast<int64_t>();
             s.n_ff = shape["n_ff"].cast<int64_t>();
             s.n_head = shape["n_head"].cast<int>();
             s.n_head_kv = shape["n_head_kv"].cast<int>();
             s.head_dim = shape["head_dim"].cast<int>();
             s.rms_eps = shape["rms_eps"].cast<float>();
             s.rope_freq_base = shape["rope_freq_base"].cast<float>();
             s.rope_mode = static_cast<RopeMode>(shape["rope_mode"].cast<int>());
             if (s.n_head <= 0 || s.n_head_kv <= 0 || s.n_head % s.n_head_kv != 0 || s.head_dim % 2 != 0) {
               throw std::invalid_argument("bad head counts: n_head must be a positive multiple of n_head_kv");
             }
             const int64_t q_width = int64_t(s.n_head) * s.head_dim, kv_width = int64_t(s.n_head_kv) * s.head_dim;
             LayerWeights& w = layer.weights;
             w.attn_norm = vector_arg(layer, tensors, "attn_norm", s.n_embd, false);
             w.wq = weight_arg(layer, tensors, "attn_q");
             w.wk = weight_arg(layer, tensors, "attn_k");
             w.wv = weight_arg(layer, tensors, "attn_v");
             w.bq = vector_arg(layer, tensors, "attn_q_bias", q_width, true);
             w.bk = vector_arg(layer, tensors, "attn_k_bias", kv_width, true);
             w.bv = vector_arg(layer, tensors, "attn_v_bias", kv_width, true);
             w.wo = weight_arg(layer, tensors, "attn_output");
             w.ffn_norm = vector_arg(layer, tensors, "ffn_norm", s.n_embd, false);
             w.w_gate = weight_arg(layer, tensors, "ffn_gate");
             w.w_up = weight_arg(layer, tensors, "ffn_up");
             w.w_down = weight_arg(layer, tensors, "ffn_down");
             auto shape_is = [](const WeightView& v, int64_t rows, int64_t cols) { return v.rows == rows && v.cols == cols; };
             if (!shape_is(w.wq, q_width, s.n_embd) || !shape_is(w.wk, kv_width, s.n_embd) ||
                 !shape_is(w.wv, kv_width, s.n_embd) || !shape_is(w.wo, s.n_embd, q_width) ||
                 !shape_is(w.w_gate, s.n_ff, s.n_embd) || !shape_is(w.w_up, s.n_ff, s.n_embd) ||
                 !shape_is(w.w_down, s.n_embd, s.n_ff)) {
               throw std::invalid_argument("layer weight shapes do not match the model's hyper-parameters");
             }
             return layer;
           }),
           py::arg("shape"), py::arg("tensors"))
      .def("forward",
           [](PyTransformerLayer& layer, py::array_t<float, py::array::c_style> x,
              py::array_t<int32_t, py::array::c_style | py::array::forcecast> pos, const py::array& k_cache,
              const py::array& v_cache, int64_t n_past, const py::object& mask, ThreadPool& pool,
              const std::string& isa, const py::object& prompt, LayerScratch* scratch) {
             const LayerShape& s = layer.shape;
             if (x.ndim() != 2 || x.shape(1) != s.n_embd) throw std::invalid_argument("x must be float32 [n_tokens, n_embd]");
             const int64_t n_tokens = x.shape(0);
             if (pos.size() != n_tokens) throw std::invalid_argument("pos must have one entry per token");
             KvType type = k_cache.dtype().is(py::dtype("float16")) ? KvType::F16 : KvType::F32;
             int64_t cap_k = 0, cap_v = 0;
             check_kv(k_cache, s, type, cap_k);
             check_kv(v_cache, s, type, cap_v);
             if (cap_k != cap_v) throw std::invalid_argument("K and V cache layers differ in capacity");
             if (n_past < 0 || n_past + n_tokens > cap_k) {
               throw std::length_error("context full: " + std::to_string(n_past + n_tokens) + " tokens exceed the " +
                                       std::to_string(cap_k) + "-token KV cache");
             }
             const uint8_t* mask_ptr = nullptr;
             py::array_t<uint8_t, py::array::c_style | py::array::forcecast> mask_arr;
             if (!mask.is_none()) {
               mask_arr = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(mask);
               if (!mask_arr || mask_arr.ndim() != 2 || mask_arr.shape(0) != n_tokens || mask_arr.shape(1) != n_past + n_tokens) {
                 throw std::invalid_argument("mask must be uint8 [n_tokens, n_past + n_tokens]");
               }
               mask_ptr = mask_arr.data();
             }
             py::array_t<uint8_t, py::array::c_style | py::array::forcecast> prompt_arr = prompt_flags(prompt, n_tokens);
             const uint8_t* prompt_ptr = prompt.is_none() ? nullptr : prompt_arr.data();
             const KernelTable& kt = kernel_table(isa_arg(isa));
             KvLayer kv{const_cast<void*>(k_cache.data()), const_cast<void*>(v_cache.data()), type, cap_k};
             float* x_ptr = x.mutable_data();
             const int32_t* pos_ptr = pos.data();
             LayerScratch own_scratch;
             py::gil_scoped_release release;
             transformer_layer_forward(kt, s, layer.weights, x_ptr, n_tokens, pos_ptr, kv, n_past, mask_ptr, prompt_ptr,
                                       pool, scratch ? *scratch : own_scratch);
           },
           py::arg("x"), py::arg("pos"), py::arg("k_cache"), py::arg("v_cache"), py::arg("n_past"),
           py::arg("mask"), py::arg("pool"), py::arg("isa") = "", py::arg("prompt") = py::none(),
           py::arg("scratch") = nullptr,
           "Runs the layer on x [n_tokens, n_embd] in place; writes K/V at slots n_past.. of the cache layers.\n"
           "prompt: None or uint8 [n_tokens], as matmul's and attention's (1: prompt tokens, llama.cpp's\n"
           "prompt summation order; 2: rows that may take any order).\n"
           "scratch: a LayerScratch to keep the buffers in (default: made for this call).");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "duet's C++ kernels";
  m.attr("ROW_ANY_ORDER") = static_cast<int>(kRowAnyOrder);
  bind_runtime(m);
  bind_quant(m);
  bind_matmul(m);
  bind_ops(m);
  bind_model(m);
}
