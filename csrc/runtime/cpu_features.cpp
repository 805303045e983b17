#include "runtime/cpu_features.h"

#include <cstdlib>
#include <stdexcept>

#if defined(DUET_ARM64) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

namespace duet {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Neon: return "neon";
    case Isa::Dotprod: return "dotprod";
  }
  return "?";
}

Isa isa_parse(const std::string& name) {
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon, Isa::Dotprod}) {
    if (name == isa_name(isa)) return isa;
  }
  throw std::invalid_argument("unknown ISA '" + name + "' (expected scalar, avx2, avx512, neon or dotprod)");
}

bool isa_runnable(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return true;
#if defined(DUET_X86)
    case Isa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
             __builtin_cpu_supports("bmi2");
    case Isa::Avx512:
      return isa_runnable(Isa::Avx2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vnni");
#endif
#if defined(DUET_ARM64)
    case Isa::Neon: return true;  // baseline on aarch64
    case Isa::Dotprod:
#if defined(__linux__)
      return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
      return false;
#endif
#endif
    default: return false;
  }
}

std::vector<Isa> isa_runnable_list() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon, Isa::Dotprod}) {
    if (isa_runnable(isa)) out.push_back(isa);
  }
  return out;
}

Isa isa_default() {
  if (const char* forced = std::getenv("DUET_ISA"); forced && *forced) {
    Isa isa = isa_parse(forced);
    if (!isa_runnable(isa)) {
      throw std::runtime_error(std::string("DUET_ISA=") + forced + " cannot run on this CPU or build");
    }
    return isa;
  }
  return isa_runnable_list().back();  // listed slowest to fastest
}

}  // namespace duet
