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
// Below this many rows of op(A) (generation's one-token steps) packing op(B) would cost as much as
// the product: OpenBLAS's gemv-like path is used instead.
constexpr int64_t kMinRows = 8;

// op(A)[i][k] = A[i * ars + k * aks], op(B)[k][j] = B[k * brs + j * bcs].
struct Operands {
    const float* A;
    int64_t ars, aks;
    const float* B;
    int64_t brs, bcs;
    float alpha;
};

void ref_cols(const Operands& o, int64_t M, int64_t c0, int64_t c1, int64_t K, float* C, int64_t ldc,
              bool accumulate) {
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = c0; j < c1; ++j) {
            float acc = accumulate ? C[i * ldc + j] : 0.f;
            for (int64_t k = 0; k < K; ++k) {
                float b = o.B[k * o.brs + j * o.bcs];
                if (o.alpha != 1.f) b *= o.alpha;
                acc = std::fma(o.A[i * o.ars + k * o.aks], b, acc);
            }
            C[i * ldc + j] = acc;
        }
}

// Rows [i0, i1) and panels [p0, p1) of C through the tiles (columns < nv).
void tiles(Kernel kern, const Operands& o, int64_t i0, int64_t i1, int64_t p0, int64_t p1, int64_t nv, int64_t K,
           float* C, int64_t ldc, bool accumulate, std::vector<float>& pack) {
    const int64_t M = i1 - i0;
    const float* A = o.A + i0 * o.ars;
    float* Ci = C + i0 * ldc;
    for (int64_t p = p0; p < p1; ++p) {
        const int64_t s = p * kPanel, width = std::min(kPanel, nv - s);
        if (K == 0 && !accumulate)
            for (int64_t i = 0; i < M; ++i) std::memset(Ci + i * ldc + s, 0, size_t(width) * sizeof(float));
        for (int64_t kb = 0; kb < K; kb += kKc) {
            const int64_t kc = std::min(kKc, K - kb);
            for (int64_t k = 0; k < kc; ++k) {  // op(B)'s block, k-major; alpha applied here
                float* dst = pack.data() + k * kPanel;
                const float* src = o.B + (kb + k) * o.brs + s * o.bcs;
                if (o.bcs == 1 && o.alpha == 1.f) std::memcpy(dst, src, size_t(width) * sizeof(float));
                else
                    for (int64_t j = 0; j < width; ++j) dst[j] = o.alpha == 1.f ? src[j * o.bcs] : src[j * o.bcs] * o.alpha;
            }
            const bool acc = kb > 0 || accumulate;
            const float* x = A + kb * o.aks;
            if (kern == Kernel::Avx512) k512::strip(0, M, x, o.ars, o.aks, pack.data(), kPanel, kc, Ci + s, ldc, acc, width);
            else k256::strip(0, M, x, o.ars, o.aks, pack.data(), kPanel, kc, Ci + s, ldc, acc, width);
        }
    }
}

}  // namespace

void tile_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate, int threads) {
    if (M <= 0 || N <= 0) return;
    const Kernel kern = pick_kernel();
    if (kern == Kernel::Blas || M < kMinRows) {
        gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, accumulate ? 1.f : 0.f, C, ldc);
        return;
    }
    const Operands o{A, trans_a ? 1 : lda, trans_a ? lda : 1, B, trans_b ? 1 : ldb, trans_b ? ldb : 1, alpha};
    const int64_t nv = N / 16 * 16, panels = (nv + kPanel - 1) / kPanel;
    const int nt = threads > 0 ? threads : blas_threads();
    if (panels >= nt || M < 2 * 8 * nt) {  // split the panels
        parallel_for(panels, nt, 1, [&](int64_t p0, int64_t p1) {
            std::vector<float> pack(size_t(kKc * kPanel));
            tiles(kern, o, 0, M, p0, p1, nv, K, C, ldc, accumulate, pack);
        });
    } else {  // few panels (a LoRA rank's worth of columns): split the rows, 8-row tiles
        parallel_for((M + 7) / 8, nt, 1, [&](int64_t t0, int64_t t1) {
            std::vector<float> pack(size_t(kKc * kPanel));
            tiles(kern, o, t0 * 8, std::min(M, t1 * 8), 0, panels, nv, K, C, ldc, accumulate, pack);
        });
    }
    if (nv < N) ref_cols(o, M, nv, N, K, C, ldc, accumulate);
}

void tile_gemm(bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
               float* C, int64_t ldc, bool accumulate, int threads) {
    tile_gemm(false, trans_b, M, N, K, 1.f, A, lda, B, ldb, C, ldc, accumulate, threads);
}

void tile_gemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
    if (M <= 0 || N <= 0) return;
    const Operands o{A, trans_a ? 1 : lda, trans_a ? lda : 1, B, trans_b ? 1 : ldb, trans_b ? ldb : 1, alpha};
    ref_cols(o, M, 0, N, K, C, ldc, accumulate);
}

void tile_gemm_ref(bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                   int64_t ldb, float* C, int64_t ldc, bool accumulate) {
    tile_gemm_ref(false, trans_b, M, N, K, 1.f, A, lda, B, ldb, C, ldc, accumulate);
}

}  // namespace loftq
