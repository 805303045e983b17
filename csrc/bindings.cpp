// duet._core: the one Python module over the C++ kernels. Every kernel call
// releases the GIL; arrays are taken without copies and checked for shape and
// dtype here, so that bad input raises a Python exception instead of crashing.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>

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
}
