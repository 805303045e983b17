// Which instruction-set path runs the kernels. Every path computes the same
// functions; scalar is the reference that the others are tested against.
#pragma once
#include <string>
#include <vector>

namespace duet {

// Amx is the AVX-512 path with the prompt rows' Q4_K and Q6_K tiles on AMX-INT8
// (the same bits); everything else it runs is AVX-512's.
enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2, Neon = 3, Dotprod = 4, Amx = 5 };

const char* isa_name(Isa isa);
// Throws std::invalid_argument naming the accepted values.
Isa isa_parse(const std::string& name);
// Compiled into this build and runnable on this CPU.
bool isa_runnable(Isa isa);
std::vector<Isa> isa_runnable_list();
// The fastest runnable path, unless DUET_ISA names another (which must be runnable).
Isa isa_default();
// The path runs AVX-512 code (Avx512 and Amx), so it rounds as an AVX-512 build of llama.cpp.
inline bool isa_has_avx512(Isa isa) { return isa == Isa::Avx512 || isa == Isa::Amx; }

}  // namespace duet
