#include "quant/formats.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace duet {

namespace {

// Indexed by type_index(); the order is the dense index.
const TypeTraits kTraits[kNumTypes] = {
    {GgmlType::F32, "F32", 1, 4, ActFormat::F32},
    {GgmlType::F16, "F16", 1, 2, ActFormat::F32},
    {GgmlType::BF16, "BF16", 1, 2, ActFormat::F32},
    {GgmlType::Q4_0, "Q4_0", QK32, sizeof(BlockQ4_0), ActFormat::Q8_32},
    {GgmlType::Q5_0, "Q5_0", QK32, sizeof(BlockQ5_0), ActFormat::Q8_32},
    {GgmlType::Q8_0, "Q8_0", QK32, sizeof(BlockQ8_0), ActFormat::Q8_32},
    {GgmlType::Q4_K, "Q4_K", QK_K, sizeof(BlockQ4_K), ActFormat::Q8_256},
    {GgmlType::Q5_K, "Q5_K", QK_K, sizeof(BlockQ5_K), ActFormat::Q8_256},
    {GgmlType::Q6_K, "Q6_K", QK_K, sizeof(BlockQ6_K), ActFormat::Q8_256},
};

// Names of ggml types duet does not compute with, so the error can say what the file holds.
const char* unsupported_type_name(int id) {
  switch (id) {
    case 3: return "Q4_1";
    case 7: return "Q5_1";
    case 9: return "Q8_1";
    case 10: return "Q2_K";
    case 11: return "Q3_K";
    case 15: return "Q8_K";
    case 16: return "IQ2_XXS";
    case 17: return "IQ2_XS";
    case 18: return "IQ3_XXS";
    case 19: return "IQ1_S";
    case 20: return "IQ4_NL";
    case 21: return "IQ3_S";
    case 22: return "IQ2_S";
    case 23: return "IQ4_XS";
    case 24: return "I8";
    case 25: return "I16";
    case 26: return "I32";
    case 27: return "I64";
    case 28: return "F64";
    case 29: return "IQ1_M";
    case 34: return "TQ1_0";
    case 35: return "TQ2_0";
    case 39: return "MXFP4";
    default: return nullptr;
  }
}

int index_of_id(int id) {
  switch (id) {
    case 0: return 0;
    case 1: return 1;
    case 30: return 2;
    case 2: return 3;
    case 6: return 4;
    case 8: return 5;
    case 12: return 6;
    case 13: return 7;
    case 14: return 8;
    default: return -1;
  }
}

[[noreturn]] void throw_unsupported(int id) {
  const char* name = unsupported_type_name(id);
  std::string what = name ? std::string(name) + " (type id " + std::to_string(id) + ")"
                          : "id " + std::to_string(id);
  throw std::invalid_argument("unsupported tensor type " + what);
}

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

const TypeTraits& type_traits(int ggml_type_id) {
  int index = index_of_id(ggml_type_id);
  if (index < 0) throw_unsupported(ggml_type_id);
  return kTraits[index];
}

const TypeTraits& type_traits(GgmlType type) { return type_traits(static_cast<int>(type)); }

bool type_supported(int ggml_type_id) { return index_of_id(ggml_type_id) >= 0; }

int type_index(GgmlType type) {
  int index = index_of_id(static_cast<int>(type));
  if (index < 0) throw_unsupported(static_cast<int>(type));
  return index;
}

size_t row_bytes(GgmlType type, int64_t n) {
  const TypeTraits& t = type_traits(type);
  if (n < 0 || n % t.block_elems != 0) {
    throw std::invalid_argument(std::string("row of ") + std::to_string(n) + " elements is not a multiple of the " +
                                t.name + " block size " + std::to_string(t.block_elems));
  }
  return static_cast<size_t>(n / t.block_elems) * t.block_bytes;
}

size_t act_row_bytes(ActFormat format, int64_t n) {
  switch (format) {
    case ActFormat::F32: return static_cast<size_t>(n) * sizeof(float);
    case ActFormat::Q8_32: return static_cast<size_t>(n / QK32) * sizeof(ActQ8_32);
    case ActFormat::Q8_256: return static_cast<size_t>(n / QK_K) * sizeof(ActQ8_256);
  }
  throw std::invalid_argument("unknown activation format");
}

float fp16_to_fp32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  if (exponent == 0x1f) return bits_float(sign | 0x7f800000 | (mantissa << 13));  // inf / nan
  if (exponent == 0) {
    // Subnormal (or zero): exact as mantissa * 2^-24.
    float magnitude = static_cast<float>(mantissa) * bits_float(0x33800000);  // 2^-24
    return sign ? -magnitude : magnitude;
  }
  return bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

uint16_t fp32_to_fp16(float f) {
  uint32_t u = float_bits(f);
  uint32_t sign = (u >> 16) & 0x8000;
  uint32_t abs = u & 0x7fffffff;
  if (abs > 0x7f800000) return static_cast<uint16_t>(sign | 0x7e00 | ((abs >> 13) & 0x3ff));  // nan stays nan
  if (abs >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);  // rounds past 65504: inf
  if (abs < 0x38800000) {
    // Result is subnormal in f16: scale so the f16 quantum is 1, and let the FPU round to even.
    float magnitude = bits_float(abs) * bits_float(0x4b800000);  // * 2^24
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(__builtin_nearbyintf(magnitude)));
  }
  // Normal: drop 13 mantissa bits with round to nearest even; a carry moves into the exponent.
  uint32_t rounded = abs + 0xfff + ((abs >> 13) & 1);
  return static_cast<uint16_t>(sign | ((rounded - (112u << 23)) >> 13));
}

float bf16_to_fp32(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

}  // namespace duet
