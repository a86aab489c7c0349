// small_gemm.h: C (M x N) = A (M x K) B (K x N), or C += A B, row-major with leading dimensions,
// on the calling thread: the many small products of attention (per batch row and head; callers
// split that work across threads). Every element of C is the FMA chain over k = 0..K-1 in order
// (from 0, or from C's value when accumulating), as AVX-512 / AVX2 + FMA register tiles
// (linalg/thin_kernels.h) or the portable std::fma loop: the same bits on any of them, for any
// tiling or split. Zero products leave a chain unchanged, so a caller may skip a leading run of k
// where A is known zero (causal attention) without changing a bit.
#pragma once
#include <cstdint>

namespace loftq {

void small_gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                int64_t ldc, bool accumulate);

// The same with op(A) = A^T: A is stored K x M (leading dimension lda), read down its columns (no
// transposed copy: the tile's 8 rows are 8 adjacent floats of one A row).
void small_gemm_at(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                   int64_t ldc, bool accumulate);

// Reference: the same chains in plain loops (A as stored: M x K).
void small_gemm_ref(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc, bool accumulate);

}  // namespace loftq
