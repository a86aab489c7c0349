// dtype.cpp: dtype names and the f16/bf16 <-> f32 conversions (round to nearest even).
#include "core/dtype.h"

#include <cstring>

namespace loftq {

namespace {
struct DTypeInfo { DType t; const char* name; size_t size; };
constexpr DTypeInfo kTypes[] = {
    {DType::F32, "F32", 4},   {DType::F16, "F16", 2},   {DType::BF16, "BF16", 2},
    {DType::F64, "F64", 8},   {DType::I64, "I64", 8},   {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},   {DType::I8, "I8", 1},     {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
    {DType::U16, "U16", 2},   {DType::U32, "U32", 4},   {DType::U64, "U64", 8},
};
}  // namespace

DType dtype_from_name(std::string_view name) {
    for (const auto& d : kTypes)
        if (name == d.name) return d.t;
    return DType::Unknown;
}
const char* dtype_name(DType t) {
    for (const auto& d : kTypes)
        if (d.t == t) return d.name;
    return "UNKNOWN";
}
size_t dtype_size(DType t) {
    for (const auto& d : kTypes)
        if (d.t == t) return d.size;
    return 0;
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = uint32_t(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else {  // subnormal: renormalize
            int e = -1;
            do { ++e; man <<= 1; } while (!(man & 0x400));
            u = sign | uint32_t(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | man << 13;
    } else {
        u = sign | (exp + 112) << 23 | man << 13;
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_f16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffff;
    if (absx >= 0x7f800000) return uint16_t(sign | 0x7c00 | (absx > 0x7f800000 ? 0x200 : 0));  // Inf/NaN
    if (absx >= 0x477ff000) return uint16_t(sign | 0x7c00);  // rounds to >= 65520: overflow to Inf
    if (absx < 0x38800000) {  // result is subnormal (or zero) in f16
        if (absx < 0x33000000) return uint16_t(sign);  // < 2^-25: rounds to zero
        uint32_t e = absx >> 23;
        uint32_t man = (absx & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e;  // 14 + (112 - e) + ... aligns to 2^-24 units
        uint32_t r = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) ++r;
        return uint16_t(sign | r);
    }
    uint32_t r = absx - 0x38000000;  // rebias exponent 127 -> 15 (still in 23-bit mantissa units)
    uint32_t rem = r & 0x1fff;
    r >>= 13;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) ++r;
    return uint16_t(sign | r);
}

uint16_t f32_to_bf16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return uint16_t((x >> 16) | 0x40);  // quiet NaN
    uint32_t lsb = (x >> 16) & 1;
    x += 0x7fff + lsb;
    return uint16_t(x >> 16);
}

void to_f32(DType t, const void* src, float* dst, size_t n) {
    const auto* p = static_cast<const unsigned char*>(src);
    switch (t) {
        case DType::F32: std::memcpy(dst, p, n * 4); break;
        case DType::BF16:
            for (size_t i = 0; i < n; ++i) {
                uint16_t b;
                std::memcpy(&b, p + 2 * i, 2);
                dst[i] = bf16_to_f32(b);
            }
            break;
        case DType::F16:
            for (size_t i = 0; i < n; ++i) {
                uint16_t h;
                std::memcpy(&h, p + 2 * i, 2);
                dst[i] = f16_to_f32(h);
            }
            break;
        default: break;  // callers check dtype_is_float_convertible first
    }
}

void from_f32(DType t, const float* src, void* dst, size_t n) {
    auto* p = static_cast<unsigned char*>(dst);
    switch (t) {
        case DType::F32: std::memcpy(p, src, n * 4); break;
        case DType::BF16:
            for (size_t i = 0; i < n; ++i) {
                uint16_t b = f32_to_bf16(src[i]);
                std::memcpy(p + 2 * i, &b, 2);
            }
            break;
        case DType::F16:
            for (size_t i = 0; i < n; ++i) {
                uint16_t h = f32_to_f16(src[i]);
                std::memcpy(p + 2 * i, &h, 2);
            }
            break;
        default: break;
    }
}

}  // namespace loftq
