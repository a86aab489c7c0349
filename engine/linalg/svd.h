// svd.h: rank-r factorizations X ~= B A of an m x n row-major matrix, as LoftQ stores them:
// B = U_r sqrt(S_r) (m x r) and A = sqrt(S_r) V_r^T (r x n), so that B A is the best rank-r
// approximation (exact SVD) or a close one (randomized SVD). X is never modified.
//
// Exact: LAPACKE_sgesdd on a copy, O(m n min(m,n)) — the reference.
// Randomized (Halko, Martinsson, Tropp 2011): Gaussian test matrix n x (r+p) from `seed`,
// range finder Y = X Omega, q power iterations each re-orthonormalized by QR
// (Z = X^T Q, Q' = qr(Z), Y = X Q', Q = qr(Y)), then the SVD of the small (r+p) x n matrix
// Q^T X. Cost O(m n (r+p) (2q+2)). Deterministic for a given seed (portable RNG, loftq/rng.h):
// the thin products X W and X^T Q are our kernels, bit-identical for any SvdOptions::threads;
// the small LAPACK steps follow OpenBLAS's process-wide thread count, whose changes alter the
// bits (the factors agreeing to float32 rounding, tests/test_linalg.cpp) — jobs keep it at 1.
#pragma once
#include <cstdint>
#include <vector>

#include "core/matrix.h"
#include "core/name_table.h"

namespace loftq {

enum class SvdMethod : uint8_t { Randomized, Exact };
inline constexpr auto kSvdMethodNames =
    name_table<SvdMethod>("SVD method", {{SvdMethod::Randomized, "randomized"}, {SvdMethod::Exact, "exact"}});

struct SvdOptions {
    SvdMethod method = SvdMethod::Randomized;
    int oversample = 10;   // p
    int power_iters = 2;   // q
    uint64_t seed = 0;     // per weight: caller mixes the job seed with the weight name
    int threads = 0;       // threads for the randomized SVD's thin products (0 = BLAS setting);
                           // bit-identical results for any value
};

struct LowRank {
    Matrix B;              // m x r, U_r diag(sqrt(S_r))
    Matrix A;              // r x n, diag(sqrt(S_r)) V_r^T
    std::vector<float> S;  // r leading singular values, descending
};

// r is clamped to min(m, n). Throws loftq::Error if LAPACK fails to converge.
LowRank low_rank_exact(const float* X, int64_t m, int64_t n, int r);
LowRank low_rank_randomized(const float* X, int64_t m, int64_t n, int r, int oversample, int power_iters, uint64_t seed);
LowRank low_rank(const float* X, int64_t m, int64_t n, int r, const SvdOptions& opt);

// All singular values of X (descending), exact, for tests and spectra.
std::vector<float> singular_values(const float* X, int64_t m, int64_t n);

}  // namespace loftq
