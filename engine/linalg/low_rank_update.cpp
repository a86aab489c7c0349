// low_rank_update.cpp: see low_rank_update.h. Work is cut into 32-row chunks (the unit split
// across threads) and 1024-column blocks: A's block (r x 1024 floats, 256 KB at r = 64) stays in
// L2 while the chunk's rows use it, and the chunk's fresh output block (128 KB) is still in cache
// when its error terms are summed right after.
#include "linalg/low_rank_update.h"

#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "linalg/thin_kernels.h"

namespace loftq {

namespace {

constexpr int64_t kRows = 32, kCols = 1024;

// Rows [i0, i1), columns [c0, c1) of out = W - B A by the portable chains (std::fma rounds once,
// as the vector FMA does).
void sub_block_ref(int64_t i0, int64_t i1, int64_t c0, int64_t c1, const float* W, const float* B, int64_t r,
                   const float* A, int64_t n, float* out) {
    for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = c0; j < c1; ++j) {
            float acc = W[i * n + j];
            for (int64_t k = 0; k < r; ++k) acc = std::fma(-B[i * r + k], A[k * n + j], acc);
            out[i * n + j] = acc;
        }
}

// lane[j mod 8] += (o_j - q_j)^2 for j in [c0, c1), c0 a multiple of 8, in increasing j. No
// contraction, so every clone (and the reference) rounds the same way.
#if defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#else
__attribute__((target_clones("avx512f", "avx2", "default"), optimize("fp-contract=off")))
#endif
void add_err(const float* o, const float* q, int64_t c0, int64_t c1, double* lane) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    int64_t j = c0;
    for (; j + 8 <= c1; j += 8)
        for (int l = 0; l < 8; ++l) {
            const double d = double(o[j + l]) - double(q[j + l]);
            lane[l] += d * d;
        }
    for (; j < c1; ++j) {
        const double d = double(o[j]) - double(q[j]);
        lane[j % 8] += d * d;
    }
}

double sum_lanes(const std::vector<double>& lanes) {
    double e = 0;
    for (size_t i = 0; i < lanes.size(); i += 8) {
        double row = 0;
        for (int l = 0; l < 8; ++l) row += lanes[i + size_t(l)];
        e += row;
    }
    return e;
}

}  // namespace

double sub_low_rank(const float* W, const float* B, const float* A, int64_t m, int64_t n, int64_t r, float* out,
                    const float* Q, int threads) {
    std::vector<float> Bn(size_t(m) * size_t(r));  // -B: the kernels add x * w
    for (size_t i = 0; i < Bn.size(); ++i) Bn[i] = -B[i];
    std::vector<double> lanes(Q ? size_t(m) * 8 : 0, 0.0);
    const int64_t nv = n / 16 * 16;  // columns the vector kernels take; the rest the portable loop
    const Kernel kern = pick_kernel();
    const int64_t chunks = (m + kRows - 1) / kRows;
    parallel_for(chunks, threads, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
            const int64_t i0 = c * kRows, i1 = std::min(m, i0 + kRows);
            for (int64_t b0 = 0; b0 < n; b0 += kCols) {
                const int64_t b1 = std::min(n, b0 + kCols), v1 = std::min(b1, nv);
                if (v1 > b0 && kern == Kernel::Avx512) k512::sub_rows(i0, i1, b0, v1, W, Bn.data(), r, A, n, out);
                else if (v1 > b0 && kern == Kernel::Avx2) k256::sub_rows(i0, i1, b0, v1, W, Bn.data(), r, A, n, out);
                else if (v1 > b0) sub_block_ref(i0, i1, b0, v1, W, B, r, A, n, out);
                if (b1 > v1) sub_block_ref(i0, i1, std::max(b0, v1), b1, W, B, r, A, n, out);
                if (Q)
                    for (int64_t i = i0; i < i1; ++i) add_err(out + i * n, Q + i * n, b0, b1, &lanes[size_t(i) * 8]);
            }
        }
    });
    return sum_lanes(lanes);
}

double sub_low_rank_ref(const float* W, const float* B, const float* A, int64_t m, int64_t n, int64_t r, float* out,
                        const float* Q) {
    sub_block_ref(0, m, 0, n, W, B, r, A, n, out);
    if (!Q) return 0;
    std::vector<double> lanes(size_t(m) * 8, 0.0);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            const double d = double(out[i * n + j]) - double(Q[i * n + j]);
            lanes[size_t(i) * 8 + size_t(j % 8)] += d * d;
        }
    return sum_lanes(lanes);
}

}  // namespace loftq
