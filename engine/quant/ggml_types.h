// ggml_types.h: ggml's tensor types (the `type` of a GGUF tensor): one table of every id with its
// block size and bytes per block, so that a file's sizes can be checked even for types LoftQ
// Studio cannot dequantize, and row converters for the few it can.
//
// Readable (dequantized exactly): F32, F16, BF16, Q8_0. Writable (quantized): the same four.
// Leaves out: every other quantized format's arithmetic (Q4_K, IQ*, ...: listed, sized, never
// converted), the GGUF container itself (io/gguf.h).
//
// Sizes follow ggml's type traits (ggml/src/ggml.c, ggml-common.h). gguf-py's GGML_QUANT_SIZES
// agrees except for Q8_1, which it lists as 40 bytes (float d and s, an old layout); ggml's
// block_q8_1 holds two fp16 (36 bytes). Q8_1 is an activation format never stored in files.
#pragma once
#include <cstdint>
#include <string>

namespace loftq {

// ggml.h `enum ggml_type`. Ids 4, 5 (removed Q4_2/Q4_3), 31-33 and 36-38 (removed repacked
// layouts) are unknown: files with them are refused.
enum class GgmlType : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
    I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
    TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

struct GgmlTypeInfo {
    const char* name;    // ggml's name, upper case: "Q4_K"
    int block_elems;     // elements per block (1 for plain types, 32 or 256 for quantized ones)
    int block_bytes;     // bytes per block
    bool readable;       // ggml_dequantize_row converts it exactly
    uint32_t id = 0;     // the ggml type id
    bool writable = false;  // ggml_quantize_row produces it
};

// Q8_0: 32 values x = d * q. 8.5 bits per weight. Same layout as ggml's block_q8_0.
constexpr int kQK8_0 = 32;
struct BlockQ8_0 {
    uint16_t d;            // fp16 scale = max|x| / 127
    int8_t qs[kQK8_0];     // round(x / d)
};
static_assert(sizeof(BlockQ8_0) == 2 + kQK8_0, "BlockQ8_0 must be 34 bytes, as ggml's block_q8_0");

const GgmlTypeInfo* ggml_type_info(uint32_t type);   // nullptr for unknown ids
std::string ggml_type_name(uint32_t type);           // "Q4_K", or "type 77" when unknown
inline uint32_t ggml_id(GgmlType t) { return uint32_t(t); }
// Bytes of n elements of `type` (n a multiple of its block_elems); 0 for an unknown type or an n
// that is not a multiple. No overflow check: callers with untrusted n check n first.
uint64_t ggml_row_bytes(uint32_t type, int64_t n);

// Row in, row out, count (ggml's shape). n must be a multiple of the type's block_elems.
// Throws loftq::Error (no file) for a type that is not readable / writable.
void ggml_dequantize_row(uint32_t type, const uint8_t* src, float* dst, int64_t n);
void ggml_quantize_row(uint32_t type, const float* src, uint8_t* dst, int64_t n);

// Q8_0 on its own: ggml's quantize_row_q8_0_ref (amax = max|x|, d = amax / 127, id = d ? 1/d : 0,
// q = roundf(x * id), d stored as fp16, round to nearest even) and dequantize_row_q8_0
// (x = fp16_to_fp32(d) * q). The scalar reference; there is no faster one yet. NaN inputs give
// q = 0 (ggml leaves that undefined).
void quantize_row_q8_0(const float* x, uint8_t* y, int64_t n);
void dequantize_row_q8_0(const uint8_t* x, float* y, int64_t n);

}  // namespace loftq
