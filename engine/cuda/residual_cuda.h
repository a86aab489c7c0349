// residual_cuda.h: the element-wise pieces of the LoftQ decomposition on the GPU (device
// pointers, asynchronous on `stream` unless stated): differences, Frobenius norms in float64
// accumulation, the sqrt(S) column scaling of the factors and a small transpose.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace loftq {

// Blocks of the norm reduction: the partial-sum buffer holds this many doubles.
constexpr int kCudaNormBlocks = 256;

// out[i] = a[i] - b[i], i < n (out may alias a or b).
void cuda_sub(const float* d_a, const float* d_b, float* d_out, int64_t n, cudaStream_t stream);

// sum (a - b)^2 (sum a^2 when d_b is null) in float64: each of kCudaNormBlocks blocks sums a
// fixed grid-stride slice then a fixed tree; the host adds the partials in order. Deterministic
// for a given n (not the CPU's summation order: results agree to float64 rounding). Synchronizes
// `stream`. d_partials: kCudaNormBlocks doubles on the device.
double cuda_diff_sq(const float* d_a, const float* d_b, int64_t n, double* d_partials, cudaStream_t stream);

// x[i] *= sqrt(S[(i / div) % r]), i < count: the diag(sqrt S) scaling of a factor whose
// singular-vector index is (i / div) % r (B^T column-major r x m: div 1; A^T column-major n x r:
// div n). sqrt is the IEEE-rounded sqrtf, as std::sqrt on the CPU.
void cuda_scale_sqrt(float* d_x, int64_t count, int64_t div, int r, const float* d_S, cudaStream_t stream);

// out (column-major cols x rows, ld cols) = in^T, in column-major rows x cols with leading
// dimension ld_in >= rows.
void cuda_transpose(const float* d_in, int64_t rows, int64_t cols, int64_t ld_in, float* d_out, cudaStream_t stream);

}  // namespace loftq
