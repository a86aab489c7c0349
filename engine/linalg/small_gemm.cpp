// small_gemm.cpp: see small_gemm.h. Columns in multiples of 16 go to the vector tiles in strips
// of 32 (16 for an odd last one); the last N % 16 columns to the portable loop.
#include "linalg/small_gemm.h"

#include "linalg/thin_kernels.h"
#include "linalg/tile_gemm.h"

namespace loftq {

namespace {
// The portable chains are tile_gemm_ref's (linalg/tile_gemm.h): one reference for both.
// op(A) = A (trans_a false: rows of lda) or A^T (stored K x M); B is K x N.
void strided(bool trans_a, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
             float* C, int64_t ldc, bool accumulate) {
    if (M <= 0 || N <= 0) return;
    const int64_t nv = N / 16 * 16, ars = trans_a ? 1 : lda, aks = trans_a ? lda : 1;
    const Kernel kern = pick_kernel();
    if (kern == Kernel::Blas) {
        tile_gemm_ref(trans_a, false, M, N, K, 1.f, A, lda, B, ldb, C, ldc, accumulate);
        return;
    }
    for (int64_t s = 0; s < nv; s += 32) {
        const int64_t width = std::min<int64_t>(32, nv - s);
        if (kern == Kernel::Avx512) k512::strip(0, M, A, ars, aks, B + s, ldb, K, C + s, ldc, accumulate, width);
        else k256::strip(0, M, A, ars, aks, B + s, ldb, K, C + s, ldc, accumulate, width);
    }
    if (nv < N) tile_gemm_ref(trans_a, false, M, N - nv, K, 1.f, A, lda, B + nv, ldb, C + nv, ldc, accumulate);
}
}  // namespace

void small_gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                int64_t ldc, bool accumulate) {
    strided(false, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

void small_gemm_at(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                   int64_t ldc, bool accumulate) {
    strided(true, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

void small_gemm_ref(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                    float* C, int64_t ldc, bool accumulate) {
    tile_gemm_ref(false, false, M, N, K, 1.f, A, lda, B, ldb, C, ldc, accumulate);
}

}  // namespace loftq
