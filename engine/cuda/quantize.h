// quantize.h: blockwise absmax quantize + dequantize on the GPU, bit-identical to the CPU
// quantize_dequantize() of quant/quantizer.h for every QuantKind (same layout, same fp32 maths:
// scale = max |x| over the block, xn = x / scale with IEEE division (0 when the scale is 0),
// code = #{i : xn > thresh[i]}, value = table[code] * scale).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "quant/quantizer.h"

namespace loftq {

// Device pointers: d_x n inputs; d_out n dequantized values, d_codes n codes (one byte each,
// unpacked), d_scales num_blocks(n, block) scales; each output may be null when not wanted.
// Asynchronous on `stream`; throws loftq::Error on bad arguments or a failed launch.
void cuda_quantize_dequantize(QuantKind kind, const float* d_x, int64_t n, int block, float* d_out,
                              uint8_t* d_codes, float* d_scales, cudaStream_t stream = nullptr);

// Host pointers (same shapes, outputs nullable): allocates device buffers, copies x in, runs,
// copies the wanted outputs back, synchronizes. For tests and small one-off calls.
void cuda_quantize_dequantize_host(QuantKind kind, const float* x, int64_t n, int block, float* out,
                                   uint8_t* codes, float* scales);

}  // namespace loftq
