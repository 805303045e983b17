#include "runtime/cpu_features.h"

#include <cstdlib>
#include <stdexcept>

#if defined(DUET_AMX)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(DUET_ARM64) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

namespace duet {

namespace {

// Listed slowest to fastest: the default is the last runnable one.
constexpr Isa kAllIsas[] = {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Amx, Isa::Neon, Isa::Dotprod};

#if defined(DUET_AMX)
// AMX-TILE and AMX-INT8 in CPUID, the tile state enabled by the OS (XCR0 bits 17
// and 18), and Linux's permission for this process to use the 8 KB of tile data
// (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, Linux 5.16 on): without
// it the first tile instruction faults. Asked once; the grant covers every thread.
bool amx_permitted() {
  static const bool permitted = [] {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    const bool tile = (edx >> 24) & 1, int8 = (edx >> 25) & 1;
    if (!tile || !int8) return false;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !((ecx >> 27) & 1)) return false;  // OSXSAVE
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & (3u << 17)) != (3u << 17)) return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return permitted;
}
#endif

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Neon: return "neon";
    case Isa::Dotprod: return "dotprod";
    case Isa::Amx: return "amx";
  }
  return "?";
}

Isa isa_parse(const std::string& name) {
  for (Isa isa : kAllIsas) {
    if (name == isa_name(isa)) return isa;
  }
  std::string names;
  for (Isa isa : kAllIsas) names += std::string(names.empty() ? "" : ", ") + isa_name(isa);
  throw std::invalid_argument("unknown ISA '" + name + "' (expected one of " + names + ")");
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
#if defined(DUET_AMX)
    case Isa::Amx: return isa_runnable(Isa::Avx512) && amx_permitted();
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
  for (Isa isa : kAllIsas) {
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
  return isa_runnable_list().back();
}

}  // namespace duet
