// ggml_types.cpp: the ggml type table and the row converters of the four types LoftQ Studio
// reads and writes (F32, F16, BF16, Q8_0). See ggml_types.h.
#include "quant/ggml_types.h"

#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace loftq {

namespace {

constexpr int QK_K = 256;  // elements of a k-quant super-block

// {name, block elems, block bytes, readable, id, writable}, by id. Bytes as ggml-common.h's
// block structs (the static_asserts there), e.g. Q4_K = d, dmin (fp16) + 12 scale bytes + QK_K/2.
constexpr GgmlTypeInfo kTypes[] = {
    {"F32", 1, 4, true, 0, true},
    {"F16", 1, 2, true, 1, true},
    {"Q4_0", 32, 2 + 16, false, 2},
    {"Q4_1", 32, 2 + 2 + 16, false, 3},
    {"Q5_0", 32, 2 + 4 + 16, false, 6},
    {"Q5_1", 32, 2 + 2 + 4 + 16, false, 7},
    {"Q8_0", 32, 2 + 32, true, 8, true},
    {"Q8_1", 32, 2 + 2 + 32, false, 9},
    {"Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4, false, 10},
    {"Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12, false, 11},
    {"Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12, false, 12},
    {"Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12, false, 13},
    {"Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16, false, 14},
    {"Q8_K", QK_K, 4 + QK_K + QK_K / 8, false, 15},
    {"IQ2_XXS", QK_K, 2 + QK_K / 4, false, 16},
    {"IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32, false, 17},
    {"IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8, false, 18},
    {"IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16, false, 19},
    {"IQ4_NL", 32, 2 + 16, false, 20},
    {"IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4, false, 21},
    {"IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16, false, 22},
    {"IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64, false, 23},
    {"I8", 1, 1, false, 24},
    {"I16", 1, 2, false, 25},
    {"I32", 1, 4, false, 26},
    {"I64", 1, 8, false, 27},
    {"F64", 1, 8, false, 28},
    {"IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32, false, 29},
    {"BF16", 1, 2, true, 30, true},
    {"TQ1_0", QK_K, 2 + 4 * 13, false, 34},
    {"TQ2_0", QK_K, 2 + QK_K / 4, false, 35},
    {"MXFP4", 32, 1 + 16, false, 39},  // e8m0 shared exponent + 32 fp4 (e2m1) nibbles
};

// Bits per weight as a check on the table: Q4_K is 4.5, Q6_K 6.5625, Q8_0 8.5.
static_assert(kTypes[10].block_bytes * 8 * 2 == 9 * kTypes[10].block_elems, "Q4_K is 4.5 bits per weight");
static_assert(kTypes[12].block_bytes * 8 * 64 == 420 * kTypes[12].block_elems, "Q6_K is 6.5625 bits per weight");
static_assert(kTypes[6].block_bytes == sizeof(BlockQ8_0), "Q8_0 entry matches BlockQ8_0");

// Index by id, built once (ids are small).
constexpr uint32_t kMaxId = 40;
struct ById {
    const GgmlTypeInfo* at[kMaxId] = {};
    constexpr ById() {
        for (const auto& t : kTypes) at[t.id] = &t;
    }
};
constexpr ById kById{};

const GgmlTypeInfo& require(uint32_t type, bool write) {
    const GgmlTypeInfo* t = ggml_type_info(type);
    if (!t) throw Error("", "", "unknown ggml " + ggml_type_name(type));
    if (write ? !t->writable : !t->readable)
        throw Error("", "", std::string("ggml type ") + t->name + (write ? " cannot be written" : " cannot be read exactly") +
                                "; LoftQ Studio reads and writes F32, F16, BF16 and Q8_0");
    return *t;
}

}  // namespace

const GgmlTypeInfo* ggml_type_info(uint32_t type) { return type < kMaxId ? kById.at[type] : nullptr; }

std::string ggml_type_name(uint32_t type) {
    const GgmlTypeInfo* t = ggml_type_info(type);
    return t ? std::string(t->name) : "type " + std::to_string(type);
}

uint64_t ggml_row_bytes(uint32_t type, int64_t n) {
    const GgmlTypeInfo* t = ggml_type_info(type);
    if (!t || n < 0 || n % t->block_elems != 0) return 0;
    return uint64_t(n / t->block_elems) * uint64_t(t->block_bytes);
}

void quantize_row_q8_0(const float* x, uint8_t* y, int64_t n) {
    for (int64_t b = 0; b < n / kQK8_0; ++b) {
        const float* xb = x + b * kQK8_0;
        float amax = 0.0f;
        for (int j = 0; j < kQK8_0; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;  // all-zero block: zero inverse scale
        BlockQ8_0 blk;
        blk.d = f32_to_f16(d);
        for (int j = 0; j < kQK8_0; ++j) {
            const float q = std::roundf(xb[j] * id);  // half away from zero, as roundf in ggml
            // |q| <= 127 for finite input; the guard keeps NaN/Inf (undefined in ggml) defined.
            blk.qs[j] = q == q ? int8_t(std::fmax(-127.0f, std::fmin(127.0f, q))) : int8_t(0);
        }
        std::memcpy(y + b * sizeof(BlockQ8_0), &blk, sizeof blk);
    }
}

void dequantize_row_q8_0(const uint8_t* x, float* y, int64_t n) {
    for (int64_t b = 0; b < n / kQK8_0; ++b) {
        BlockQ8_0 blk;  // copied: mapped file data need not be 2-byte aligned
        std::memcpy(&blk, x + b * sizeof(BlockQ8_0), sizeof blk);
        const float d = f16_to_f32(blk.d);
        for (int j = 0; j < kQK8_0; ++j) y[b * kQK8_0 + j] = float(blk.qs[j]) * d;
    }
}

void ggml_dequantize_row(uint32_t type, const uint8_t* src, float* dst, int64_t n) {
    const GgmlTypeInfo& t = require(type, false);
    if (n % t.block_elems != 0)
        throw Error("", "", std::to_string(n) + " values is not a whole number of " + t.name + " blocks");
    switch (GgmlType(type)) {
        case GgmlType::F32: to_f32(DType::F32, src, dst, size_t(n)); break;
        case GgmlType::F16: to_f32(DType::F16, src, dst, size_t(n)); break;
        case GgmlType::BF16: to_f32(DType::BF16, src, dst, size_t(n)); break;
        case GgmlType::Q8_0: dequantize_row_q8_0(src, dst, n); break;
        default: break;  // require() admits only the four above
    }
}

void ggml_quantize_row(uint32_t type, const float* src, uint8_t* dst, int64_t n) {
    const GgmlTypeInfo& t = require(type, true);
    if (n % t.block_elems != 0)
        throw Error("", "", std::to_string(n) + " values is not a whole number of " + t.name + " blocks");
    switch (GgmlType(type)) {
        case GgmlType::F32: from_f32(DType::F32, src, dst, size_t(n)); break;
        case GgmlType::F16: from_f32(DType::F16, src, dst, size_t(n)); break;
        case GgmlType::BF16: from_f32(DType::BF16, src, dst, size_t(n)); break;
        case GgmlType::Q8_0: quantize_row_q8_0(src, dst, n); break;
        default: break;
    }
}

}  // namespace loftq
