// small_gemm.cpp: see small_gemm.h. Columns in multiples of 16 go to the vector tiles in strips
// of 32 (16 for an odd last one); the last N % 16 columns to the portable loop.
#include "linalg/small_gemm.h"

#include <cmath>

#include "linalg/thin_kernels.h"

namespace loftq {

namespace {
// op(A)[i][k] = A[i * ars + k * aks]: (lda, 1) as stored, (1, lda) transposed.
void ref_cols(int64_t M, int64_t c0, int64_t c1, int64_t K, const float* A, int64_t ars, int64_t aks, const float* B,
              int64_t ldb, float* C, int64_t ldc, bool accumulate) {
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = c0; j < c1; ++j) {
            float acc = accumulate ? C[i * ldc + j] : 0.f;
            for (int64_t k = 0; k < K; ++k) acc = std::fma(A[i * ars + k * aks], B[k * ldb + j], acc);
            C[i * ldc + j] = acc;
        }
}

void strided(int64_t M, int64_t N, int64_t K, const float* A, int64_t ars, int64_t aks, const float* B, int64_t ldb,
             float* C, int64_t ldc, bool accumulate) {
    if (M <= 0 || N <= 0) return;
    const int64_t nv = N / 16 * 16;
    const Kernel kern = pick_kernel();
    if (kern == Kernel::Blas) {
        ref_cols(M, 0, N, K, A, ars, aks, B, ldb, C, ldc, accumulate);
        return;
    }
    for (int64_t s = 0; s < nv; s += 32) {
        const int64_t width = std::min<int64_t>(32, nv - s);
        if (kern == Kernel::Avx512) k512::strip(0, M, A, ars, aks, B + s, ldb, K, C + s, ldc, accumulate, width);
        else k256::strip(0, M, A, ars, aks, B + s, ldb, K, C + s, ldc, accumulate, width);
    }
    if (nv < N) ref_cols(M, nv, N, K, A, ars, aks, B, ldb, C, ldc, accumulate);
}
}  // namespace

void small_gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                int64_t ldc, bool accumulate) {
    strided(M, N, K, A, lda, 1, B, ldb, C, ldc, accumulate);
}

void small_gemm_at(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                   int64_t ldc, bool accumulate) {
    strided(M, N, K, A, 1, lda, B, ldb, C, ldc, accumulate);
}

void small_gemm_ref(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc, bool accumulate) {
    if (M <= 0 || N <= 0) return;
    ref_cols(M, 0, N, K, A, lda, 1, B, ldb, C, ldc, accumulate);
}

}  // namespace loftq
