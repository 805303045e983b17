// GGUF tensor types that duet computes with, their block layouts as stored in the
// file, and the activation formats the integer dot products take.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace duet {

// Values are ggml's type ids, as written in GGUF tensor infos.
enum class GgmlType : int {
  F32 = 0, F16 = 1, Q4_0 = 2, Q5_0 = 6, Q8_0 = 8, Q4_K = 12, Q5_K = 13, Q6_K = 14, BF16 = 30,
};

constexpr int QK32 = 32;    // elements per block of the 32-element formats
constexpr int QK_K = 256;   // elements per super-block of the K-quants

// Packed exactly as in the file: blocks sit back to back inside a row with no
// padding, so none of these may be assumed aligned beyond 1 byte.
#pragma pack(push, 1)
struct BlockQ4_0 { uint16_t d; uint8_t qs[16]; };                                      // 18 B
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };                       // 22 B
struct BlockQ8_0 { uint16_t d; int8_t qs[32]; };                                       // 34 B
struct BlockQ4_K { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qs[128]; };  // 144 B
struct BlockQ5_K { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };  // 176 B
struct BlockQ6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; };  // 210 B
#pragma pack(pop)

// Activation formats (never stored in files). A row of activations is quantized
// once per matmul and reused by every weight row.
// Q8_32: for Q4_0, Q5_0, Q8_0 weights. d is rounded to f16 precision as ggml does,
// so that products match what llama.cpp computes.
struct alignas(4) ActQ8_32 { float d; int8_t qs[32]; };                         // 36 B
// Q8_256: for K-quant weights; bsums[j] = sum of qs[16j .. 16j+15].
struct alignas(4) ActQ8_256 { float d; int8_t qs[256]; int16_t bsums[16]; };   // 292 B

enum class ActFormat : int { F32 = 0, Q8_32 = 1, Q8_256 = 2 };

struct TypeTraits {
  GgmlType type;
  const char* name;
  int block_elems;       // elements per block
  int block_bytes;       // bytes per block in the file
  ActFormat act_format;  // what the activations are quantized to for vec_dot
};

// Throws std::invalid_argument("unsupported tensor type ...") for any other id.
const TypeTraits& type_traits(GgmlType type);
const TypeTraits& type_traits(int ggml_type_id);
bool type_supported(int ggml_type_id);
// Bytes of one row of n elements; throws if n is not a multiple of the block size.
size_t row_bytes(GgmlType type, int64_t n);
// Bytes of one activation row of n elements in the given format.
size_t act_row_bytes(ActFormat format, int64_t n);

constexpr int kNumTypes = 9;
// Dense index 0..kNumTypes-1 for table lookups.
int type_index(GgmlType type);

float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);     // round to nearest even
float bf16_to_fp32(uint16_t h);

}  // namespace duet
