// tile_gemm.cpp: see tile_gemm.h. Per 32-column panel of C (a thread's unit): for each block of
// 256 k, op(B)'s block is packed k-major into 32 KB (a copy for B, a transpose for B^T: W rows
// become columns), then every 8-row tile of A runs its chains over the block from that packed
// panel, which stays in L1 while A's rows stream through L2.
#include "linalg/tile_gemm.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "core/parallel.h"
#include "linalg/blas.h"
#include "linalg/thin_kernels.h"

namespace loftq {

namespace {

constexpr int64_t kKc = 256, kPanel = 32;
// Below this many rows of A (generation's one-token steps) packing op(B) would cost as much as
// the product: OpenBLAS's gemv-like path is used instead.
constexpr int64_t kMinRows = 8;

void ref_cols(bool trans_b, int64_t M, int64_t c0, int64_t c1, int64_t K, const float* A, int64_t lda, const float* B,
              int64_t ldb, float* C, int64_t ldc, bool accumulate) {
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = c0; j < c1; ++j) {
            float acc = accumulate ? C[i * ldc + j] : 0.f;
            for (int64_t k = 0; k < K; ++k) acc = std::fma(A[i * lda + k], trans_b ? B[j * ldb + k] : B[k * ldb + j], acc);
            C[i * ldc + j] = acc;
        }
}

}  // namespace

void tile_gemm(bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
               float* C, int64_t ldc, bool accumulate, int threads) {
    if (M <= 0 || N <= 0) return;
    const Kernel kern = pick_kernel();
    if (kern == Kernel::Blas || M < kMinRows) {
        gemm(false, trans_b, M, N, K, 1.f, A, lda, B, ldb, accumulate ? 1.f : 0.f, C, ldc);
        return;
    }
    const int64_t nv = N / 16 * 16, panels = (nv + kPanel - 1) / kPanel;
    parallel_for(panels, threads > 0 ? threads : blas_threads(), 1, [&](int64_t p0, int64_t p1) {
        std::vector<float> pack(size_t(kKc * kPanel));
        for (int64_t p = p0; p < p1; ++p) {
            const int64_t s = p * kPanel, width = std::min(kPanel, nv - s);
            if (K == 0 && !accumulate)
                for (int64_t i = 0; i < M; ++i) std::memset(C + i * ldc + s, 0, size_t(width) * sizeof(float));
            for (int64_t kb = 0; kb < K; kb += kKc) {
                const int64_t kc = std::min(kKc, K - kb);
                if (!trans_b)
                    for (int64_t k = 0; k < kc; ++k)
                        std::memcpy(pack.data() + k * kPanel, B + (kb + k) * ldb + s, size_t(width) * sizeof(float));
                else
                    for (int64_t j = 0; j < width; ++j) {
                        const float* row = B + (s + j) * ldb + kb;
                        for (int64_t k = 0; k < kc; ++k) pack[size_t(k * kPanel + j)] = row[k];
                    }
                const bool acc = kb > 0 || accumulate;
                if (kern == Kernel::Avx512) k512::strip(0, M, A + kb, lda, 1, pack.data(), kPanel, kc, C + s, ldc, acc, width);
                else k256::strip(0, M, A + kb, lda, 1, pack.data(), kPanel, kc, C + s, ldc, acc, width);
            }
        }
    });
    if (nv < N) ref_cols(trans_b, M, nv, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

void tile_gemm_ref(bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                   int64_t ldb, float* C, int64_t ldc, bool accumulate) {
    if (M <= 0 || N <= 0) return;
    ref_cols(trans_b, M, 0, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

}  // namespace loftq
