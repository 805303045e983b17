// Which instruction-set path runs the kernels. Every path computes the same
// functions; scalar is the reference that the others are tested against.
#pragma once
#include <string>
#include <vector>

namespace duet {

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2, Neon = 3, Dotprod = 4 };

const char* isa_name(Isa isa);
// Throws std::invalid_argument naming the accepted values.
Isa isa_parse(const std::string& name);
// Compiled into this build and runnable on this CPU.
bool isa_runnable(Isa isa);
std::vector<Isa> isa_runnable_list();
// The fastest runnable path, unless DUET_ISA names another (which must be runnable).
Isa isa_default();

}  // namespace duet
