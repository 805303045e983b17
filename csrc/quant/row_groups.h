// Splits a vec_dot over n_act activation rows into groups handled by kernels
// compiled for a fixed row count, so that each weight block is unpacked once per
// group while every row's arithmetic stays the one-row sequence.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

// Everything here has internal linkage: this header is compiled into files built
// with different ISA flags, and the linker must not pick one file's copy for all.
namespace duet {
namespace {

constexpr int kRowGroup = 4;  // rows one unpacked weight block serves at a time

// rows_kernel[g - 1] handles g rows: out[i] for activation row i at act + i * stride.
using RowsKernel = void (*)(int64_t n, const void* w, const uint8_t* act, size_t stride, float* out);

inline void run_row_groups(const RowsKernel (&rows_kernel)[kRowGroup], int64_t n, const void* w, const void* act,
                           size_t stride, int n_act, float* out) {
  const uint8_t* rows = static_cast<const uint8_t*>(act);
  for (int first = 0; first < n_act; first += kRowGroup) {
    int count = std::min(kRowGroup, n_act - first);
    rows_kernel[count - 1](n, w, rows + first * stride, stride, out + first);
  }
}

}  // namespace
}  // namespace duet
