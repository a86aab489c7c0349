// svd.cpp: rank-r factorizations X ~= B A (see svd.h): the exact one by LAPACK's divide and
// conquer SVD (sgesdd) and the randomized one of Halko, Martinsson and Tropp (2011), plus the
// exact singular values. Leaves out any GPU path and any truncation by tolerance: the caller
// always names the rank.
//
// Layout trick used throughout: a row-major p x q buffer *is* a column-major q x p matrix, so
// every LAPACK call below is made in LAPACK's native column-major layout on the transposed
// view and never pays LAPACKE's row-major transpose copies. For X (m x n row-major) that means
// sgesdd sees X^T = V S U^T and hands back V (n x k column-major == V^T row-major, the layout of
// A) and U^T (k x m column-major == U row-major, the layout of B).
// The randomized path keeps its thin factors (Y, Q, Z) "transposed" too: Qt is l x m row-major,
// i.e. Q column-major m x l, exactly what sgeqrf/sorgqr want.
#include "linalg/svd.h"

#include <immintrin.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "linalg/blas.h"
#include "linalg/thin_kernels.h"

namespace loftq {

namespace {

void check_lapack(lapack_int info, const char* what, int64_t m, int64_t n) {
    if (info == 0) return;
    std::string why = info < 0 ? "illegal argument " + std::to_string(-info) + " (NaN or Inf in the input?)"
                               : "did not converge (info " + std::to_string(info) + ")";
    if (info == LAPACK_WORK_MEMORY_ERROR || info == LAPACK_TRANSPOSE_MEMORY_ERROR) why = "out of memory";
    throw Error(std::string("linalg: ") + what + " on " + std::to_string(m) + " x " + std::to_string(n) + ": " + why);
}

lapack_int lapack_dim(int64_t v) {
    if (v < 0 || v > int64_t(INT32_MAX)) throw Error("linalg: dimension " + std::to_string(v) + " too large for LAPACK");
    return lapack_int(v);
}

LowRank empty_factors(int64_t m, int64_t n) {
    LowRank f;
    f.B = Matrix(m, 0);
    f.A = Matrix(0, n);
    return f;
}

// Q factor in place: on entry the column-major rows x cols matrix at `a` (leading dimension
// rows, rows >= cols); on exit its thin orthonormal Q of the same shape. Householder QR, so Q is
// orthonormal to working precision even when the input columns are nearly dependent (which is
// what the power iterations produce).
void orthonormalize(float* a, int64_t rows, int64_t cols, std::vector<float>& tau) {
    tau.assign(size_t(cols), 0.f);
    lapack_int r = lapack_dim(rows), c = lapack_dim(cols);
    check_lapack(LAPACKE_sgeqrf(LAPACK_COL_MAJOR, r, c, a, r, tau.data()), "sgeqrf", rows, cols);
    check_lapack(LAPACKE_sorgqr(LAPACK_COL_MAJOR, r, c, c, a, r, tau.data()), "sorgqr", rows, cols);
}

// A = diag(sqrt S_r) V_r^T (r x n) from `vt`, rows of length n whose first r are V_r^T.
void fill_a_sqrt(LowRank& f, const float* vt, int64_t n, int r) {
    f.A = Matrix(r, n);
    for (int j = 0; j < r; ++j) {
        float s = std::sqrt(f.S[size_t(j)]);
        const float* src = vt + int64_t(j) * n;
        float* dst = f.A.data() + int64_t(j) * n;
        for (int64_t c = 0; c < n; ++c) dst[c] = s * src[c];
    }
}

// B (m x r) <- B diag(sqrt S_r).
void scale_columns_sqrt(Matrix& B, const std::vector<float>& S) {
    const int64_t r = B.cols;
    std::vector<float> s(static_cast<size_t>(r));
    for (int64_t j = 0; j < r; ++j) s[size_t(j)] = std::sqrt(S[size_t(j)]);
    for (int64_t i = 0; i < B.rows; ++i) {
        float* row = B.data() + i * r;
        for (int64_t j = 0; j < r; ++j) row[j] *= s[size_t(j)];
    }
}

}  // namespace

LowRank low_rank_exact(const float* X, int64_t m, int64_t n, int r) {
    const int64_t k = std::min(m, n);
    r = int(std::clamp<int64_t>(r, 0, k));
    if (r == 0) return empty_factors(m, n);

    // sgesdd overwrites its input: work on a copy. Column-major view: X^T, n x m, ld n.
    std::vector<float> a(X, X + size_t(m) * size_t(n));
    std::vector<float> s(static_cast<size_t>(k));
    std::vector<float> vt(size_t(k) * size_t(n));  // column-major n x k "U" of X^T == V^T, k x n row-major
    std::vector<float> u(size_t(m) * size_t(k));   // column-major k x m "VT" of X^T == U, m x k row-major
    lapack_int nn = lapack_dim(n), mm = lapack_dim(m), kk = lapack_dim(k);
    check_lapack(LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'S', nn, mm, a.data(), nn, s.data(), vt.data(), nn, u.data(), kk),
                 "sgesdd", m, n);
    a = {};

    LowRank f;
    f.S.assign(s.begin(), s.begin() + r);
    f.B = Matrix(m, r);
    for (int64_t i = 0; i < m; ++i)
        std::memcpy(f.B.data() + i * r, u.data() + i * k, size_t(r) * sizeof(float));
    scale_columns_sqrt(f.B, f.S);
    fill_a_sqrt(f, vt.data(), n, r);
    return f;
}

namespace {

// Threads for the thin products: SvdOptions::threads for the current call (thread-local, so
// concurrent weights on different workers do not interfere), else the BLAS setting. The LAPACK
// steps follow OpenBLAS's process-wide setting; jobs keep that at 1 so that results do not
// depend on the thread count (see loftq/job.h).
thread_local int t_kernel_threads = 0;
int kernel_threads() { return t_kernel_threads > 0 ? t_kernel_threads : blas_threads(); }

// Minimum rows (or columns) per thread: below this a second thread costs more than it saves.
constexpr int64_t kMinChunk = 256;

void mul_xw(const float* X, int64_t m, int64_t n, const float* W, int64_t Lp, float* Y) {
    switch (pick_kernel()) {
    case Kernel::Avx512:
        parallel_for(m, kernel_threads(), kMinChunk, [&](int64_t a, int64_t b) { k512::xw_rows(a, b, X, n, W, Lp, Y); });
        break;
    case Kernel::Avx2:
        parallel_for(m, kernel_threads(), kMinChunk, [&](int64_t a, int64_t b) { k256::xw_rows(a, b, X, n, W, Lp, Y); });
        break;
    case Kernel::Blas: gemm(false, false, m, Lp, n, 1.f, X, n, W, Lp, 0.f, Y, Lp); break;
    }
}

void mul_xtq(const float* X, int64_t m, int64_t n, const float* Q, int64_t Lp, float* Z) {
    switch (pick_kernel()) {
    case Kernel::Avx512:
        parallel_for(n, kernel_threads(), kMinChunk, [&](int64_t a, int64_t b) { k512::xtq_cols(a, b, X, m, n, Q, Lp, Z); });
        break;
    case Kernel::Avx2:
        parallel_for(n, kernel_threads(), kMinChunk, [&](int64_t a, int64_t b) { k256::xtq_cols(a, b, X, m, n, Q, Lp, Z); });
        break;
    case Kernel::Blas: gemm(true, false, n, Lp, m, 1.f, X, n, Q, Lp, 0.f, Z, Lp); break;
    }
}

// Row-major rows x Lp (first l columns used) <-> column-major rows x l (ld rows), for LAPACK.
void to_col_major(const float* a, int64_t rows, int64_t Lp, int64_t l, float* c) {
    for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < l; ++j) c[j * rows + i] = a[i * Lp + j];
}
void from_col_major(const float* c, int64_t rows, int64_t Lp, int64_t l, float* a) {
    for (int64_t i = 0; i < rows; ++i) {
        for (int64_t j = 0; j < l; ++j) a[i * Lp + j] = c[j * rows + i];
        for (int64_t j = l; j < Lp; ++j) a[i * Lp + j] = 0.f;
    }
}

}  // namespace

// Halko-Martinsson-Tropp with l = min(r + p, min(m, n)) probe vectors. Shapes:
//   X  m x n row-major (input)
//   W  n x Lp row-major: Omega (the Gaussian test matrix), later Q' = qr(Z)
//   Y  m x Lp row-major: X W;  Qc m x l column-major: qr(Y), also Q in row-major m x Lp (Qr)
//   Z  n x Lp row-major: X^T Q; Zc n x l column-major: its QR
// 2q + 2 passes over X (1 range finder, 2 per power iteration, 1 for C = Q^T X = Z^T); the rest
// is O((m + n) l^2). Each step is a fixed sequence of operations on fixed shapes, so the result
// depends only on X, r, p, q, seed and the kernel family (see the note on the thin products).
LowRank low_rank_randomized(const float* X, int64_t m, int64_t n, int r, int oversample, int power_iters, uint64_t seed) {
    const int64_t k = std::min(m, n);
    r = int(std::clamp<int64_t>(r, 0, k));
    if (r == 0) return empty_factors(m, n);
    const int64_t l = std::min<int64_t>(int64_t(r) + std::max(oversample, 0), k);
    const int64_t Lp = (l + kPad - 1) / kPad * kPad;
    const int q = std::max(power_iters, 0);

    // Omega (n x l), filled row after row (row k: l values) from the portable generator, so its
    // values depend on seed, n and l only; stored padded to Lp columns.
    std::vector<float> W(size_t(n) * size_t(Lp), 0.f);
    {
        Rng rng(seed);
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < l; ++j) W[size_t(i * Lp + j)] = float(rng.normal());
    }
    std::vector<float> Y(size_t(m) * size_t(Lp)), Qc(size_t(m) * size_t(l));
    std::vector<float> Z(size_t(n) * size_t(Lp)), Zc(size_t(n) * size_t(l));
    std::vector<float> tau;

    // Y = X Omega; Q = qr(Y), back into Y (row-major, padded) for the next product.
    mul_xw(X, m, n, W.data(), Lp, Y.data());
    to_col_major(Y.data(), m, Lp, l, Qc.data());
    orthonormalize(Qc.data(), m, l, tau);
    from_col_major(Qc.data(), m, Lp, l, Y.data());
    for (int it = 0; it < q; ++it) {
        // Z = X^T Q; Q' = qr(Z) into W.
        mul_xtq(X, m, n, Y.data(), Lp, Z.data());
        to_col_major(Z.data(), n, Lp, l, Zc.data());
        orthonormalize(Zc.data(), n, l, tau);
        from_col_major(Zc.data(), n, Lp, l, W.data());
        // Y = X Q'; Q = qr(Y).
        mul_xw(X, m, n, W.data(), Lp, Y.data());
        to_col_major(Y.data(), m, Lp, l, Qc.data());
        orthonormalize(Qc.data(), m, l, tau);
        from_col_major(Qc.data(), m, Lp, l, Y.data());
    }
    W = {};
    // Z = X^T Q (n x Lp row-major) == C = Q^T X column-major l x n with leading dimension Lp.
    mul_xtq(X, m, n, Y.data(), Lp, Z.data());

    // SVD of the small C = Uc S Vc^T: Uc l x l and Vc^T l x n, both column-major (ld l).
    std::vector<float> s(static_cast<size_t>(l)), uc(size_t(l) * size_t(l)), vct(size_t(l) * size_t(n));
    lapack_int nn = lapack_dim(n), ll = lapack_dim(l), lp = lapack_dim(Lp);
    check_lapack(LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'S', ll, nn, Z.data(), lp, s.data(), uc.data(), ll, vct.data(), ll),
                 "sgesdd", l, n);

    LowRank f;
    f.S.assign(s.begin(), s.begin() + r);
    // B = Q Uc[:, :r] (m x r). Qc column-major m x l is row-major l x m (op = transpose); Uc
    // column-major is row-major Uc^T (op = transpose again).
    f.B = Matrix(m, r);
    gemm(true, true, m, r, l, 1.f, Qc.data(), m, uc.data(), l, 0.f, f.B.data(), r);
    scale_columns_sqrt(f.B, f.S);
    // A = diag(sqrt S_r) Vc^T[:r, :], gathered from column-major Vc^T (element (j, c) at j + c l).
    f.A = Matrix(r, n);
    for (int j = 0; j < r; ++j) {
        const float sq = std::sqrt(f.S[size_t(j)]);
        float* dst = f.A.data() + int64_t(j) * n;
        for (int64_t c = 0; c < n; ++c) dst[c] = sq * vct[size_t(j + c * l)];
    }
    return f;
}

LowRank low_rank(const float* X, int64_t m, int64_t n, int r, const SvdOptions& opt) {
    if (opt.method == SvdMethod::Exact) return low_rank_exact(X, m, n, r);
    struct Guard { int saved; ~Guard() { t_kernel_threads = saved; } } guard{t_kernel_threads};
    t_kernel_threads = opt.threads;
    return low_rank_randomized(X, m, n, r, opt.oversample, opt.power_iters, opt.seed);
}

std::vector<float> singular_values(const float* X, int64_t m, int64_t n) {
    const int64_t k = std::min(m, n);
    if (k <= 0) return {};
    // jobz = 'N' in column-major: u and vt are not referenced and their leading dimensions only
    // need to be >= 1 (the row-major interface would demand ldvt >= n; docs/ALGORITHM.md).
    std::vector<float> a(X, X + size_t(m) * size_t(n));
    std::vector<float> s(static_cast<size_t>(k));
    float dummy = 0.f;
    lapack_int nn = lapack_dim(n), mm = lapack_dim(m);
    check_lapack(LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'N', nn, mm, a.data(), nn, s.data(), &dummy, 1, &dummy, 1),
                 "sgesdd", m, n);
    return s;
}

}  // namespace loftq
