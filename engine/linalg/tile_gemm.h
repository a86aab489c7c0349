// tile_gemm.h: C (M x N) = A op(B), or C += A op(B), row-major with leading dimensions; op(B) = B
// (stored K x N) or B^T (stored N x K): the large products of LoRA training on the CPU (the frozen
// base's x W^T and dy W, the LM head's). Each element of C is one FMA chain over k = 0..K-1 in
// order, computed by the register tiles of linalg/thin_kernels.h over packed 32-column panels of
// op(B) (K in blocks of 256 that continue the chains; the last N % 16 columns by the portable
// std::fma loop), so the bits depend neither on the thread count nor on AVX-512 vs AVX2 + FMA.
// CPUs with neither, and products with fewer than 8 rows of op(A) (one-token decode steps), use OpenBLAS
// gemm (other bits). `threads` (0: the BLAS setting, linalg/blas.h)
// split the panels.
#pragma once
#include <cstdint>

namespace loftq {

void tile_gemm(bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
               float* C, int64_t ldc, bool accumulate, int threads = 0);

// General form: op(A) = A (M x K) or A^T (A stored K x M: read down its columns, 8 adjacent floats
// per tile row), and alpha, which scales op(B) as it is packed (so alpha != 1 rounds once more
// than alpha (A B) would: each term is A_ik fl(alpha B_kj)). With fewer 32-column panels than
// threads (a LoRA rank's worth of columns) the rows are split instead; the chains are the same.
void tile_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate, int threads = 0);

// Reference: the same chains in plain loops (std::fma), one thread.
void tile_gemm_ref(bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                   int64_t ldb, float* C, int64_t ldc, bool accumulate);
void tile_gemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate);

}  // namespace loftq
