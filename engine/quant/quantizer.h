// quantizer.h: blockwise absmax quantizers (normal-float NF4/NF3/NF2 and uniform 2/3/4/8-bit)
// over a row-major flattened weight, their dequantizers, and k-bit code packing.
//
// Layout (docs/ALGORITHM.md): the weight (out x in) is flattened row-major and cut into blocks of
// `block` consecutive elements (default 64); the last block may be short. Each block has one fp32
// scale = max |x| over the block. A value x gets code = nearest table entry to x / scale (exact
// real-number distance, ties to the lower code); dequantized value = table[code] * scale.
// An all-zero block has scale 0: its values map to the code nearest 0 and dequantize to 0.
// Packing: a continuous LSB-first bitstream, code j at bits [j*k, j*k + k) (byte = bit / 8,
// bit-in-byte = bit % 8); for k = 2, 4, 8 this is PEFT NFQuantizer's layout.
//
// Quantize and dequantize sit side by side; `*_ref` versions are the plain reference that the
// fast paths are tested against.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace loftq {

enum class QuantKind : uint8_t { NF4, NF3, NF2, INT2, INT3, INT4, INT8 };

// One table describes every format; callers look up, not switch.
struct QuantFormat {
    QuantKind kind;
    const char* name;     // "nf4", "nf3", "nf2", "int2", "int3", "int4", "int8"
    int bits;             // bits per code
    int levels;           // 2^bits
    const float* table;   // `levels` ascending values in [-1, 1]
    const float* thresh;  // `levels-1` fp32 decision thresholds: code = #{i : x > thresh[i]}
                          // (thresh[i] = largest float <= exact midpoint of table[i], table[i+1])
};

const QuantFormat& quant_format(QuantKind k);
std::optional<QuantKind> quant_kind_from_name(std::string_view name);  // case-insensitive
const std::vector<QuantKind>& all_quant_kinds();

// The normal-float construction of QLoRA (docs/ALGORITHM.md), float32 linspace, for k bits.
// k = 4 and k = 2 reproduce the hard-coded NF4/NF2 tables bit for bit (tested).
std::vector<float> nf_codebook_construct(int bits);

inline size_t num_blocks(size_t n, int block) { return (n + size_t(block) - 1) / size_t(block); }
// Bytes of n packed k-bit codes.
inline size_t packed_size(size_t n, int bits) { return (n * size_t(bits) + 7) / 8; }

// Reference: scalar, brute-force nearest code. codes: n bytes; scales: num_blocks(n, block).
void quantize_ref(const QuantFormat& f, const float* x, size_t n, int block, uint8_t* codes, float* scales);
void dequantize_ref(const QuantFormat& f, const uint8_t* codes, const float* scales, size_t n, int block, float* out);

// Fast paths, identical results to the references; `threads` splits blocks across threads.
void quantize(const QuantFormat& f, const float* x, size_t n, int block, uint8_t* codes, float* scales, int threads = 1);
void dequantize(const QuantFormat& f, const uint8_t* codes, const float* scales, size_t n, int block, float* out, int threads = 1);
// Fused: out = dequantize(quantize(x)); codes/scales may be null when not wanted.
// This is the LoftQ inner loop, so it must run near memory speed.
void quantize_dequantize(const QuantFormat& f, const float* x, size_t n, int block, float* out,
                         uint8_t* codes, float* scales, int threads = 1);
// The same, also writing resid = m - out (fp32 subtraction) in the same pass: LoftQ's W - Q_t
// without a second sweep over three buffers. All buffers required; resid may be x itself (in place), not m or out.
void quantize_residual(const QuantFormat& f, const float* x, size_t n, int block, const float* m, float* out,
                       float* resid, uint8_t* codes, float* scales, int threads = 1);

// k-bit LSB-first bitstream packing (k in 1..8). packed: packed_size(n, bits) bytes.
void pack_codes(const uint8_t* codes, size_t n, int bits, uint8_t* packed);
void unpack_codes(const uint8_t* packed, size_t n, int bits, uint8_t* codes);

// Storage cost of a quantized weight of n elements: packed codes + one fp32 scale per block.
inline size_t quantized_bytes(size_t n, int bits, int block) { return packed_size(n, bits) + 4 * num_blocks(n, block); }

}  // namespace loftq
