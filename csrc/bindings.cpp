// duet._core: the one Python module over the C++ kernels. Every kernel call
// releases the GIL; arrays are taken without copies and checked for shape and
// dtype here, so that bad input raises a Python exception instead of crashing.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>

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

// ---- ops: matmul, attention, layer ops -------------------------------------------

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
  auto data = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(entry[1]);
  if (!data || data.size() != n) {
    throw std::invalid_argument(std::string("layer tensor ") + name + ": expected " + std::to_string(n) + " floats");
  }
  layer.owners.push_back(data);
  return data.data();
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
              const std::string& isa) {
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
             const KernelTable& kt = kernel_table(isa_arg(isa));
             KvLayer kv{const_cast<void*>(k_cache.data()), const_cast<void*>(v_cache.data()), type, cap_k};
             float* x_ptr = x.mutable_data();
             const int32_t* pos_ptr = pos.data();
             py::gil_scoped_release release;
             transformer_layer_forward(kt, s, layer.weights, x_ptr, n_tokens, pos_ptr, kv, n_past, mask_ptr, pool);
           },
           py::arg("x"), py::arg("pos"), py::arg("k_cache"), py::arg("v_cache"), py::arg("n_past"),
           py::arg("mask"), py::arg("pool"), py::arg("isa") = "",
           "Runs the layer on x [n_tokens, n_embd] in place; writes K/V at slots n_past.. of the cache layers.");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "duet's C++ kernels";
  bind_runtime(m);
  bind_model(m);
}
