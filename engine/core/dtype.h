// dtype.h: element types of checkpoint tensors and fp32 <-> f16/bf16 conversion.
// Compute is fp32 everywhere; F16/BF16 are storage types only. Conversions to the narrow
// types round to nearest, ties to even (as torch does), and keep NaN/Inf.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace loftq {

// Safetensors dtype names. Only F32/F16/BF16 are converted to fp32 (and so quantizable);
// the others are listed, copied through bit-exactly, never quantized.
enum class DType : uint8_t { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2, U16, U32, U64, Unknown };

DType dtype_from_name(std::string_view name);   // "BF16" -> BF16; unknown -> Unknown
const char* dtype_name(DType t);                // BF16 -> "BF16"
size_t dtype_size(DType t);                     // bytes per element; 0 for Unknown
inline bool dtype_is_float_convertible(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
inline float bf16_to_f32(uint16_t b) {
    uint32_t u = uint32_t(b) << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}
uint16_t f32_to_bf16(float f);

// Convert n elements of `src` (type t, little-endian, any alignment) to fp32.
void to_f32(DType t, const void* src, float* dst, size_t n);
// Convert n fp32 values to type t (F32/F16/BF16) into `dst` (any alignment).
void from_f32(DType t, const float* src, void* dst, size_t n);

}  // namespace loftq
