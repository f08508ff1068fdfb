// IEEE half (F16) and bfloat16 (BF16) to fp32, exact (every half value is representable in fp32).
#pragma once
#include <cstdint>
#include <cstring>

namespace cairn {

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float bf16_to_float(uint16_t h) { return bits_to_float(static_cast<uint32_t>(h) << 16); }

inline float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
  if (exp == 0x1F) return bits_to_float(sign | 0x7F800000u | (man << 13));  // inf / NaN
  if (exp != 0) return bits_to_float(sign | ((exp + 112u) << 23) | (man << 13));
  if (man == 0) return bits_to_float(sign);  // ±0
  // subnormal: man · 2^−24
  const float v = static_cast<float>(man) * (1.0f / 16777216.0f);
  return sign ? -v : v;
}

}  // namespace cairn
