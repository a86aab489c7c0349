// thin_kernels.h: the register-tiled FMA kernels behind the randomized SVD's thin products
// (svd.cpp) and the low-rank update W - B A (low_rank_update.cpp). Internal to engine/linalg:
// everything is in an anonymous namespace, compiled into each including file once for AVX-512
// and once for AVX2 + FMA; pick_kernel chooses at run time.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace loftq {
namespace {

// ---- the two thin products over X -------------------------------------------------------------
// The range finder's cost is passes over X: Y = X W (W n x l) and Z = X^T Q (Q m x l), l <= ~100.
// OpenBLAS runs these skinny shapes at ~65 GFLOP/s here whatever the thread count (square sgemm
// reaches 110-220 per core), so they get their own kernels: register tiles of R rows x NV
// vectors, each accumulator a plain FMA chain over the reduction index in increasing order.
// That makes every output element the same sequence of float operations whatever the ISA
// (AVX-512 or AVX2), the tiling or the thread split, so these passes are bitwise identical across
// thread counts (the small LAPACK steps after them are not: see svd.h). Machines with neither
// fall back to OpenBLAS gemm (same maths, other bits).
// Thin matrices are row-major with Lp = l rounded up to 16 columns, the padding zero.

constexpr int64_t kPad = 16;  // Lp granularity (one AVX-512 vector, two AVX2 vectors)

// The kernel templates, written once and compiled twice below, each time inside a GCC target
// region (so intrinsics inline) and a namespace that defines the vector type `Vec`, `kW` floats
// per vector, the ops vzero/vload/vstore/vset1/vfma and the register tile kR x kNV.
//   micro:   out[r][0 .. NV*kW) (+)= sum_k x[r*xr + k*xk] * w[k*wk + 0 .. NV*kW), k = 0..K-1 in
//            order; acc_in continues the chains from `out` (a later block of the same sum).
//   tiles:   tiles [t0, t1) of R "rows" over one column strip; the partial tile uses R = 1.
//   xw_rows: Y (m x Lp) = X (m x n) W (n x Lp), rows [i0, i1) of Y. The reduction is blocked by
//            1024 so that the W block (1024 x 32 floats) stays in L2 while rows of X stream by.
//   xtq_cols: Z (n x Lp) = X^T Q (Q m x Lp), rows [c0, c1) of Z (columns of X). The reduction
//            over the m rows of X is blocked by 256 so that a block of X rows is reused from
//            cache across column tiles and strips; partial sums live in Z between blocks.
//   sub_rows: out = W + Bn A (Bn m x r, A r x n, all row-major, ld n / r) for rows [i0, i1) and
//            columns [c0, c1), c1 - c0 a multiple of 16: the chains start from W instead of 0.
// Column strips are 32 floats wide (16 for the last one when Lp % 32 == 16).
#define LOFTQ_THIN_KERNELS                                                                                        \
    template <int R, int NV>                                                                                      \
    inline void micro(const float* x, int64_t xr, int64_t xk, const float* w, int64_t wk, int64_t K, float* out,  \
                      int64_t os, bool acc_in, const float* in = nullptr) {                                       \
        if (acc_in && !in) in = out;                                                                              \
        Vec acc[R][NV];                                                                                           \
        for (int r = 0; r < R; ++r)                                                                               \
            for (int v = 0; v < NV; ++v) acc[r][v] = acc_in ? vload(in + r * os + v * kW) : vzero();             \
        for (int64_t k = 0; k < K; ++k) {                                                                         \
            Vec wv[NV];                                                                                           \
            for (int v = 0; v < NV; ++v) wv[v] = vload(w + k * wk + v * kW);                                      \
            for (int r = 0; r < R; ++r) {                                                                         \
                Vec b = vset1(x[r * xr + k * xk]);                                                                \
                for (int v = 0; v < NV; ++v) acc[r][v] = vfma(b, wv[v], acc[r][v]);                               \
            }                                                                                                     \
        }                                                                                                         \
        for (int r = 0; r < R; ++r)                                                                               \
            for (int v = 0; v < NV; ++v) vstore(out + r * os + v * kW, acc[r][v]);                               \
    }                                                                                                             \
    template <int R, int NV>                                                                                      \
    inline void tiles(int64_t t0, int64_t t1, const float* x, int64_t xr, int64_t xk, const float* w, int64_t wk, \
                      int64_t K, float* out, int64_t os, bool acc_in, const float* in) {                          \
        int64_t t = t0;                                                                                           \
        for (; t + R <= t1; t += R)                                                                               \
            micro<R, NV>(x + t * xr, xr, xk, w, wk, K, out + t * os, os, acc_in, in ? in + t * os : nullptr);     \
        for (; t < t1; ++t)                                                                                       \
            micro<1, NV>(x + t * xr, xr, xk, w, wk, K, out + t * os, os, acc_in, in ? in + t * os : nullptr);     \
    }                                                                                                             \
    /* in: the accumulators' start (stride os) instead of out, when acc_in. */                                   \
    inline void strip(int64_t t0, int64_t t1, const float* x, int64_t xr, int64_t xk, const float* w, int64_t wk, \
                      int64_t K, float* out, int64_t os, bool acc_in, int64_t width, const float* in = nullptr) { \
        if (width == 32) tiles<kR, 32 / kW>(t0, t1, x, xr, xk, w, wk, K, out, os, acc_in, in);                    \
        else tiles<kR, 16 / kW>(t0, t1, x, xr, xk, w, wk, K, out, os, acc_in, in);                                \
    }                                                                                                             \
    inline void xw_rows(int64_t i0, int64_t i1, const float* X, int64_t n, const float* W, int64_t Lp, float* Y) {       \
        constexpr int64_t kb = 1024;                                                                              \
        for (int64_t k0 = 0; k0 < n; k0 += kb) {                                                                  \
            const int64_t K = std::min(kb, n - k0);                                                               \
            for (int64_t s = 0; s < Lp; s += 32)                                                                  \
                strip(i0, i1, X + k0, n, 1, W + k0 * Lp + s, Lp, K, Y + s, Lp, k0 > 0, std::min<int64_t>(32, Lp - s)); \
        }                                                                                                         \
    }                                                                                                             \
    inline void xtq_cols(int64_t c0, int64_t c1, const float* X, int64_t m, int64_t n, const float* Q, int64_t Lp,       \
                  float* Z) {                                                                                     \
        constexpr int64_t ib = 256;                                                                               \
        for (int64_t i0 = 0; i0 < m; i0 += ib) {                                                                  \
            const int64_t K = std::min(ib, m - i0);                                                               \
            for (int64_t s = 0; s < Lp; s += 32)                                                                  \
                strip(c0, c1, X + i0 * n, 1, n, Q + i0 * Lp + s, Lp, K, Z + s, Lp, i0 > 0,                        \
                      std::min<int64_t>(32, Lp - s));                                                             \
        }                                                                                                         \
    }                                                                                                             \
    /* out = W + Bn A over rows [i0, i1) and columns [c0, c1) (c1 - c0 a multiple of 16): each element */        \
    /* the FMA chain W_ij + Bn_i0 A_0j + ... + Bn_i,r-1 A_r-1,j, k in order (Bn = -B gives W - B A). */          \
    inline void sub_rows(int64_t i0, int64_t i1, int64_t c0, int64_t c1, const float* W, const float* Bn, int64_t r,   \
                  const float* A, int64_t n, float* out) {                                                        \
        for (int64_t s = c0; s < c1; s += 32)                                                                     \
            strip(i0, i1, Bn, r, 1, A + s, n, r, out + s, n, true, std::min<int64_t>(32, c1 - s), W + s);        \
    }

// AVX-512: 32 vector registers: 8 x 2 accumulators + 2 strip vectors + 1 broadcast.
#if defined(__clang__)  // clang ignores GCC's target pragma (the fuzz/sanitizer builds use clang)
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f")
#endif
namespace k512 {
using Vec = __m512;
constexpr int kW = 16, kR = 8;
inline Vec vzero() { return _mm512_setzero_ps(); }
inline Vec vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, Vec v) { _mm512_storeu_ps(p, v); }
inline Vec vset1(float x) { return _mm512_set1_ps(x); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
LOFTQ_THIN_KERNELS
}  // namespace k512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// AVX2 + FMA: 16 registers: 2 rows x 4 accumulators (32-float strip) + 4 strip vectors + 1.
// Same chains as AVX-512, so the same bits.
#if defined(__clang__)  // clang ignores GCC's target pragma (the fuzz/sanitizer builds use clang)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
namespace k256 {
using Vec = __m256;
constexpr int kW = 8, kR = 2;
inline Vec vzero() { return _mm256_setzero_ps(); }
inline Vec vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, Vec v) { _mm256_storeu_ps(p, v); }
inline Vec vset1(float x) { return _mm256_set1_ps(x); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
LOFTQ_THIN_KERNELS
}  // namespace k256
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#undef LOFTQ_THIN_KERNELS

// Blas: the thin products fall back to OpenBLAS gemm, sub_low_rank to its portable loop.
enum class Kernel { Avx512, Avx2, Blas };

// The best the CPU has, capped by LOFTQ_LINALG_ISA = portable | avx2 | avx512 (read on every call,
// so that tests can compare the variants in one process).
inline Kernel pick_kernel() {
    static const Kernel cpu = [] {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) return Kernel::Avx512;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Kernel::Avx2;
        return Kernel::Blas;
    }();
    const char* cap = std::getenv("LOFTQ_LINALG_ISA");
    if (!cap) return cpu;
    const std::string_view c = cap;
    if (c == "portable") return Kernel::Blas;
    if (c == "avx2" && cpu == Kernel::Avx512) return Kernel::Avx2;
    return cpu;
}

}  // namespace
}  // namespace loftq
