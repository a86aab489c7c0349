// test_linalg.cpp: Qt Test for engine/linalg: gemm against the float64 reference, the exact
// low-rank factorization against analytic float64 cases (singular values, rank-r truncation,
// sqrt split, Eckart-Young), the randomized one against the exact one, determinism (seed and
// BLAS thread count), rank clamping, r = 0, tall/wide and rank-deficient inputs, and LAPACK
// failure reporting. Leaves out timing (bench/bench_svd.cpp) and the LoftQ loop itself.
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <thread>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "linalg/blas.h"
#include "linalg/low_rank_update.h"
#include "linalg/small_gemm.h"
#include "linalg/tile_gemm.h"
#include "linalg/svd.h"
#include "test_support.h"

using namespace loftq;

namespace {

// Column-orthonormal rows x cols matrix (row-major, float64) by modified Gram-Schmidt applied
// twice ("twice is enough") to Gaussian columns.
std::vector<double> orthonormal_columns(int64_t rows, int64_t cols, uint64_t seed) {
    Rng rng(seed);
    std::vector<double> q(size_t(rows * cols));
    for (auto& v : q) v = rng.normal();
    for (int64_t j = 0; j < cols; ++j) {
        for (int pass = 0; pass < 2; ++pass) {
            for (int64_t p = 0; p < j; ++p) {
                double d = 0;
                for (int64_t i = 0; i < rows; ++i) d += q[size_t(i * cols + p)] * q[size_t(i * cols + j)];
                for (int64_t i = 0; i < rows; ++i) q[size_t(i * cols + j)] -= d * q[size_t(i * cols + p)];
            }
        }
        double nrm = 0;
        for (int64_t i = 0; i < rows; ++i) nrm += q[size_t(i * cols + j)] * q[size_t(i * cols + j)];
        nrm = std::sqrt(nrm);
        for (int64_t i = 0; i < rows; ++i) q[size_t(i * cols + j)] /= nrm;
    }
    return q;
}

// X = U diag(s) V^T in float64 with the sum over components restricted to [0, upto).
struct Analytic {
    int64_t m, n, k;
    std::vector<double> U, V, s;  // m x k, n x k, k
    std::vector<double> product(int64_t upto) const {
        std::vector<double> x(size_t(m * n), 0.0);
        for (int64_t i = 0; i < m; ++i)
            for (int64_t c = 0; c < upto; ++c) {
                double us = U[size_t(i * k + c)] * s[size_t(c)];
                for (int64_t j = 0; j < n; ++j) x[size_t(i * n + j)] += us * V[size_t(j * k + c)];
            }
        return x;
    }
};

Analytic make_analytic(int64_t m, int64_t n, uint64_t seed) {
    Analytic a{m, n, std::min(m, n), {}, {}, {}};
    a.U = orthonormal_columns(m, a.k, seed);
    a.V = orthonormal_columns(n, a.k, seed + 1);
    // Geometric decay over a 1:50 range: distinct values with clear gaps (the rank-r subspace is
    // well conditioned) and a condition number float32 still resolves to ~1e-5 relative.
    for (int64_t c = 0; c < a.k; ++c) a.s.push_back(10.0 * std::pow(0.02, double(c) / double(a.k - 1)));
    return a;
}

std::vector<float> to_float(const std::vector<double>& x) { return {x.begin(), x.end()}; }

// B A in float64 (m x n).
std::vector<double> product64(const LowRank& f) {
    const int64_t m = f.B.rows, r = f.B.cols, n = f.A.cols;
    std::vector<double> x(size_t(m * n), 0.0);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t c = 0; c < r; ++c) {
            double b = f.B.at(i, c);
            for (int64_t j = 0; j < n; ++j) x[size_t(i * n + j)] += b * double(f.A.at(c, j));
        }
    return x;
}

// ||X - B A||_F in float64.
double residual(const float* X, const LowRank& f) {
    auto ba = product64(f);
    double s = 0;
    for (size_t i = 0; i < ba.size(); ++i) {
        double d = double(X[i]) - ba[i];
        s += d * d;
    }
    return std::sqrt(s);
}

bool same_bits(const Matrix& a, const Matrix& b) {
    return a.rows == b.rows && a.cols == b.cols && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool same_bits(const LowRank& a, const LowRank& b) {
    return same_bits(a.B, b.B) && same_bits(a.A, b.A) && a.S.size() == b.S.size() &&
           std::memcmp(a.S.data(), b.S.data(), a.S.size() * sizeof(float)) == 0;
}

Matrix random_matrix(int64_t m, int64_t n, uint64_t seed) {
    Matrix x(m, n);
    auto g = test::gaussian(x.size(), seed);
    std::copy(g.begin(), g.end(), x.buf.begin());
    return x;
}

}  // namespace

class TestLinalg : public QObject {
    Q_OBJECT

private slots:
    void gemm_matches_reference_data();
    void gemm_matches_reference();
    void gemm_degenerate_shapes();

    void exact_analytic_data();
    void exact_analytic();
    void singular_values_match_exact();

    void randomized_close_to_exact_data();
    void randomized_close_to_exact();
    void randomized_same_seed_same_bits();
    void randomized_thread_count_independent_data();
    void randomized_thread_count_independent();

    void rank_clamped();
    void matrix_storage();
    void low_rank_update_data();
    void low_rank_update();
    void thin_products_same_bits_avx2_avx512();
    void small_gemm_matches_reference();
    void tile_gemm_matches_reference();
    void rank_zero();
    void tall_and_wide_data();
    void tall_and_wide();
    void rank_deficient();
    void lapack_failure_throws();
};

// ---- gemm -----------------------------------------------------------------------------------

void TestLinalg::gemm_matches_reference_data() {
    QTest::addColumn<bool>("ta");
    QTest::addColumn<bool>("tb");
    QTest::addColumn<int>("M");
    QTest::addColumn<int>("N");
    QTest::addColumn<int>("K");
    QTest::addColumn<int>("pad");  // extra columns in every leading dimension
    const int sizes[][3] = {{1, 1, 1}, {1, 7, 3}, {37, 53, 41}, {129, 65, 257}, {300, 26, 301}, {26, 301, 300}};
    for (bool ta : {false, true})
        for (bool tb : {false, true})
            for (auto& s : sizes)
                for (int pad : {0, 3}) {
                    QByteArray name = QByteArray(ta ? "T" : "N") + (tb ? "T" : "N") + " " + QByteArray::number(s[0]) +
                                      "x" + QByteArray::number(s[1]) + "x" + QByteArray::number(s[2]) +
                                      (pad ? " padded" : "");
                    QTest::newRow(name.constData()) << ta << tb << s[0] << s[1] << s[2] << pad;
                }
}

// Tolerance: |C - C_ref| <= 1e-5 * (|alpha| sum_k |a_ik b_kj| + |beta c_ij|) per element, i.e.
// relative to the magnitude of the terms summed (fp32 with K <= 301 gives ~K * 6e-8 worst case,
// far less typically); the reference accumulates in float64.
void TestLinalg::gemm_matches_reference() {
    QFETCH(bool, ta);
    QFETCH(bool, tb);
    QFETCH(int, M);
    QFETCH(int, N);
    QFETCH(int, K);
    QFETCH(int, pad);
    const int64_t arows = ta ? K : M, acols = ta ? M : K, brows = tb ? N : K, bcols = tb ? K : N;
    const int64_t lda = acols + pad, ldb = bcols + pad, ldc = N + pad;
    auto A = test::gaussian(size_t(arows * lda), 11);
    auto B = test::gaussian(size_t(brows * ldb), 12);
    auto C0 = test::gaussian(size_t(M * ldc), 13);
    const float alpha = 0.75f, beta = -0.5f;
    auto C = C0, Cref = C0;
    gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
    gemm_ref(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, Cref.data(), ldc);
    double worst = 0;
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
            double mag = 0;
            for (int64_t k = 0; k < K; ++k) {
                double a = ta ? A[size_t(k * lda + i)] : A[size_t(i * lda + k)];
                double b = tb ? B[size_t(j * ldb + k)] : B[size_t(k * ldb + j)];
                mag += std::fabs(a * b);
            }
            mag = std::fabs(alpha) * mag + std::fabs(beta * C0[size_t(i * ldc + j)]);
            worst = std::max(worst, std::fabs(double(C[size_t(i * ldc + j)]) - double(Cref[size_t(i * ldc + j)])) / mag);
        }
    QVERIFY2(worst <= 1e-5, qPrintable(QString("max relative difference %1").arg(worst)));
    // Padding columns of C are left alone.
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = N; j < ldc; ++j) QCOMPARE(C[size_t(i * ldc + j)], C0[size_t(i * ldc + j)]);
}

void TestLinalg::gemm_degenerate_shapes() {
    // K = 0: C = beta C; beta = 0 writes zeros even over NaN.
    std::vector<float> C = {1.f, 2.f, NAN, 4.f};
    gemm(false, false, 2, 2, 0, 1.f, nullptr, 1, nullptr, 2, 0.f, C.data(), 2);
    for (float v : C) QCOMPARE(v, 0.f);
    C = {1.f, 2.f, 3.f, 4.f};
    gemm(false, false, 2, 2, 0, 1.f, nullptr, 1, nullptr, 2, 2.f, C.data(), 2);
    QCOMPARE(C[3], 8.f);
    // M = 0 or N = 0: nothing happens.
    gemm(false, false, 0, 2, 3, 1.f, nullptr, 3, nullptr, 2, 0.f, nullptr, 2);
    gemm(false, false, 2, 0, 3, 1.f, nullptr, 3, nullptr, 1, 0.f, nullptr, 1);
    // A leading dimension shorter than the row is an error, not a silent no-op.
    std::vector<float> a(6, 1.f), b(6, 1.f), c(4, 0.f);
    QVERIFY_THROWS_EXCEPTION(Error, gemm(false, false, 2, 2, 3, 1.f, a.data(), 2, b.data(), 2, 0.f, c.data(), 2));
    // Threads round-trip.
    int before = blas_threads();
    set_blas_threads(1);
    QCOMPARE(blas_threads(), 1);
    set_blas_threads(before);
    QCOMPARE(blas_threads(), before);
    // One owner: while a single-threaded scope lives (on any thread) BLAS stays at 1 whatever
    // is preferred meanwhile; the preference applies when the last scope ends.
    prefer_blas_threads(2);
    QCOMPARE(blas_threads(), 2);
    {
        SingleThreadedBlas scope;
        QCOMPARE(blas_threads(), 1);
        std::thread other([] {
            SingleThreadedBlas nested;   // another job's scope, ending first
            prefer_blas_threads(2);      // a trainer starting meanwhile
        });
        other.join();
        QCOMPARE(blas_threads(), 1);
    }
    QCOMPARE(blas_threads(), 2);
    prefer_blas_threads(before);
}

// ---- exact ------------------------------------------------------------------------------------

// The LoRA split LoftQ stores: B = U_r sqrt(S_r), A = sqrt(S_r) V_r^T, so that B^T B == A A^T ==
// diag(S) (U, V orthonormal). Float64 products, to 1e-5 of S_0. A split like B = U S, A = V^T
// (the same B A) fails: B^T B = S^2, A A^T = I.
static void check_sqrt_split(const LowRank& f, int64_t m, int64_t n) {
    const int r = int(f.S.size());
    double worst_b = 0, worst_a = 0;
    for (int i = 0; i < r; ++i)
        for (int j = 0; j < r; ++j) {
            double btb = 0, aat = 0;
            for (int64_t t = 0; t < m; ++t) btb += double(f.B.at(t, i)) * f.B.at(t, j);
            for (int64_t t = 0; t < n; ++t) aat += double(f.A.at(i, t)) * f.A.at(j, t);
            double want = i == j ? f.S[size_t(i)] : 0.0;
            worst_b = std::max(worst_b, std::fabs(btb - want));
            worst_a = std::max(worst_a, std::fabs(aat - want));
        }
    QVERIFY2(worst_b <= 1e-5 * f.S[0], qPrintable(QString("B^T B - diag(S): %1").arg(worst_b)));
    QVERIFY2(worst_a <= 1e-5 * f.S[0], qPrintable(QString("A A^T - diag(S): %1").arg(worst_a)));
}

void TestLinalg::exact_analytic_data() {
    QTest::addColumn<int>("m");
    QTest::addColumn<int>("n");
    QTest::addColumn<int>("r");
    QTest::newRow("square 96 r8") << 96 << 96 << 8;
    QTest::newRow("tall 160x64 r12") << 160 << 64 << 12;
    QTest::newRow("wide 64x160 r12") << 64 << 160 << 12;
    QTest::newRow("wide 50x90 r50 (full)") << 50 << 90 << 50;
}

void TestLinalg::exact_analytic() {
    QFETCH(int, m);
    QFETCH(int, n);
    QFETCH(int, r);
    Analytic an = make_analytic(m, n, 100 + uint64_t(m) * 7 + uint64_t(n));
    auto X = to_float(an.product(an.k));
    LowRank f = low_rank_exact(X.data(), m, n, r);
    QCOMPARE(f.B.rows, int64_t(m));
    QCOMPARE(f.B.cols, int64_t(r));
    QCOMPARE(f.A.rows, int64_t(r));
    QCOMPARE(f.A.cols, int64_t(n));
    QCOMPARE(int(f.S.size()), r);

    // Singular values: ~1e-5 relative each (the float32 rounding of X moves each by about
    // 6e-8 * s_0, i.e. <= 3e-6 of the smallest here).
    double worst_s = 0;
    for (int c = 0; c < r; ++c) worst_s = std::max(worst_s, std::fabs(f.S[size_t(c)] - an.s[size_t(c)]) / an.s[size_t(c)]);
    QVERIFY2(worst_s <= 1e-5, qPrintable(QString("singular values: max relative error %1").arg(worst_s)));

    // B A against the float64 rank-r truncation U_r diag(s_r) V_r^T.
    auto Xr = an.product(r);
    auto BA = product64(f);
    double num = 0, den = 0;
    for (size_t i = 0; i < Xr.size(); ++i) {
        num += (BA[i] - Xr[i]) * (BA[i] - Xr[i]);
        den += Xr[i] * Xr[i];
    }
    double trunc_err = std::sqrt(num / den);
    QVERIFY2(trunc_err <= 2e-5, qPrintable(QString("B A vs float64 truncation: relative error %1").arg(trunc_err)));

    // The sqrt split: B^T B == A A^T == diag(S), to 1e-5 of S_0 (float64 products).
    check_sqrt_split(f, m, n);
    if (QTest::currentTestFailed()) return;

    // Eckart-Young: ||X - B A||_F^2 == sum_{i >= r} s_i^2 (float64 check; for r = k both are ~0).
    double tail = 0;
    for (int64_t c = r; c < an.k; ++c) tail += an.s[size_t(c)] * an.s[size_t(c)];
    double res = residual(X.data(), f);
    double fro2 = 0;
    for (double s : an.s) fro2 += s * s;
    if (r < an.k)
        QVERIFY2(std::fabs(res * res - tail) <= 1e-4 * tail,
                 qPrintable(QString("residual^2 %1 vs discarded sum %2").arg(res * res).arg(tail)));
    else
        QVERIFY2(res * res <= 1e-10 * fro2, qPrintable(QString("full rank residual^2 %1").arg(res * res)));
}

void TestLinalg::singular_values_match_exact() {
    Analytic an = make_analytic(70, 45, 7);
    auto X = to_float(an.product(an.k));
    auto s = singular_values(X.data(), 70, 45);
    QCOMPARE(int(s.size()), 45);
    for (size_t c = 0; c < s.size(); ++c) QVERIFY(std::fabs(s[c] - an.s[c]) <= 1e-5 * an.s[c]);
    for (size_t c = 1; c < s.size(); ++c) QVERIFY(s[c] <= s[c - 1]);
    // Same on the transpose (wide input): the spectrum is shape independent.
    std::vector<float> Xt(X.size());
    for (int64_t i = 0; i < 70; ++i)
        for (int64_t j = 0; j < 45; ++j) Xt[size_t(j * 70 + i)] = X[size_t(i * 45 + j)];
    auto st = singular_values(Xt.data(), 45, 70);
    for (size_t c = 0; c < s.size(); ++c) QVERIFY(std::fabs(st[c] - s[c]) <= 1e-5 * s[0]);
    // And the exact factorization reports the same leading values.
    LowRank f = low_rank_exact(X.data(), 70, 45, 10);
    for (int c = 0; c < 10; ++c) QVERIFY(std::fabs(f.S[size_t(c)] - s[size_t(c)]) <= 1e-6 * s[0]);
}

// ---- randomized ---------------------------------------------------------------------------------

void TestLinalg::randomized_close_to_exact_data() {
    QTest::addColumn<int>("m");
    QTest::addColumn<int>("n");
    QTest::addColumn<int>("r");
    for (int r : {8, 16, 32, 64}) {
        QTest::newRow(qPrintable(QString("512x768 r%1").arg(r))) << 512 << 768 << r;
        QTest::newRow(qPrintable(QString("768x512 r%1").arg(r))) << 768 << 512 << r;
    }
}

// Default options (p = 10, q = 2) against Eckart-Young's optimum. Two matrices:
//  - structured_matrix with noise 0.005: a decaying spectrum above a noise floor, like a trained
//    weight's head: ||X - B A||_F within 1% of the exact residual at every rank;
//  - the default structured_matrix (noise 0.02): at 512x768 only the first ~6 of its 48 decaying
//    components stand above the noise (Marchenko-Pastur edge ~1.0 vs s_0 ~1.8), so ranks 32-64
//    cut into a flat spectrum, where a q = 2 range finder is measurably worse (observed 1.0-1.8%
//    at r = 32, 64; 0.2-0.6% at r = 8, 16).
// Rank 64 also exceeds the 48 structured components, so even at noise 0.005 it is 1.5% off.
// Bounds: 1% up to r = 16 (and r = 32 at noise 0.005), 2.5% beyond: the brief asked for 1% at
// every rank, which p = 10, q = 2 does not reach on flat spectral tails (reported to the lead).
// Leading singular values: within 1% (randomized slightly underestimates closely spaced ones).
void TestLinalg::randomized_close_to_exact() {
    QFETCH(int, m);
    QFETCH(int, n);
    QFETCH(int, r);
    for (double noise : {0.005, 0.02}) {
        Matrix X = test::structured_matrix(m, n, 42, 0.9, noise);
        SvdOptions opt;
        opt.seed = 1234;
        LowRank fr = low_rank(X.data(), m, n, r, opt);
        LowRank fe = low_rank_exact(X.data(), m, n, r);
        QCOMPARE(fr.B.rows, int64_t(m));
        QCOMPARE(fr.B.cols, int64_t(r));
        QCOMPARE(fr.A.rows, int64_t(r));
        QCOMPARE(fr.A.cols, int64_t(n));
        double er = residual(X.data(), fr), ee = residual(X.data(), fe);
        qDebug("%dx%d r=%d noise=%.3f: exact residual %.6g, randomized %.6g (ratio %.5f)", m, n, r, noise, ee, er, er / ee);
        QVERIFY(er >= ee * (1 - 1e-5));  // nothing beats Eckart-Young
        check_sqrt_split(fr, m, n);      // the randomized factors are split as the exact ones
        if (QTest::currentTestFailed()) return;
        const double bound = r <= 16 || (noise < 0.01 && r <= 32) ? 1.01 : 1.025;
        QVERIFY2(er <= ee * bound, qPrintable(QString("randomized residual %1 vs exact %2 (bound x%3)").arg(er).arg(ee).arg(bound)));
        // The leading singular values (well above the noise) agree closely.
        for (int c = 0; c < std::min(r, 4); ++c)
            QVERIFY2(std::fabs(fr.S[size_t(c)] - fe.S[size_t(c)]) <= 1e-2 * fe.S[size_t(c)],
                     qPrintable(QString("S[%1]: randomized %2 vs exact %3").arg(c).arg(fr.S[size_t(c)]).arg(fe.S[size_t(c)])));
    }
}

void TestLinalg::randomized_same_seed_same_bits() {
    Matrix X = test::structured_matrix(300, 200, 5);
    LowRank a = low_rank_randomized(X.data(), 300, 200, 16, 10, 2, 77);
    LowRank b = low_rank_randomized(X.data(), 300, 200, 16, 10, 2, 77);
    QVERIFY(same_bits(a, b));
    // A different seed is a different probe: the factors differ in their bits (though both are good).
    LowRank c = low_rank_randomized(X.data(), 300, 200, 16, 10, 2, 78);
    QVERIFY(!same_bits(a.B, c.B));
}

void TestLinalg::randomized_thread_count_independent_data() {
    QTest::addColumn<int>("m");
    QTest::addColumn<int>("n");
    QTest::addColumn<int>("r");
    // Sizes large enough that OpenBLAS really splits the GEMMs over 2 threads; r = 64 makes
    // l = 74 > 32, so sgeqrf/sorgqr take their blocked (GEMM-based) paths.
    QTest::newRow("1024x1536 r16") << 1024 << 1536 << 16;
    QTest::newRow("1536x1024 r64") << 1536 << 1024 << 64;
}

// svd.h wanted results independent of the BLAS thread count. The passes over X (our own kernels)
// are, by construction; OpenBLAS 0.3.21's LAPACK paths (sgeqrf/sorgqr/sgesdd and the level-2
// BLAS under them) are NOT: 1 vs 2 threads give different bits there (each is bit-reproducible at
// a fixed thread count). So this checks the closest honest property: at a fixed thread count the
// bits repeat, and across thread counts the factorizations agree to float32 rounding (B A within
// 1e-4 relative, residuals within 1e-5 relative, singular values within 1e-5 relative).
void TestLinalg::randomized_thread_count_independent() {
    QFETCH(int, m);
    QFETCH(int, n);
    QFETCH(int, r);
    Matrix X = random_matrix(m, n, 99);
    const int before = blas_threads();
    set_blas_threads(1);
    LowRank one = low_rank_randomized(X.data(), m, n, r, 10, 2, 5);
    LowRank one_again = low_rank_randomized(X.data(), m, n, r, 10, 2, 5);
    set_blas_threads(2);
    LowRank two = low_rank_randomized(X.data(), m, n, r, 10, 2, 5);
    LowRank two_again = low_rank_randomized(X.data(), m, n, r, 10, 2, 5);
    set_blas_threads(before);
    QVERIFY2(same_bits(one, one_again), "1 thread: not bit-reproducible");
    QVERIFY2(same_bits(two, two_again), "2 threads: not bit-reproducible");
    if (same_bits(one, two)) qDebug("1 and 2 BLAS threads gave identical bits");
    else qDebug("1 and 2 BLAS threads gave different bits (OpenBLAS LAPACK paths); checking agreement");
    auto p1 = product64(one), p2 = product64(two);
    double num = 0, den = 0;
    for (size_t i = 0; i < p1.size(); ++i) {
        num += (p1[i] - p2[i]) * (p1[i] - p2[i]);
        den += p1[i] * p1[i];
    }
    QVERIFY2(std::sqrt(num / den) <= 1e-4, qPrintable(QString("B A differs by %1 relative").arg(std::sqrt(num / den))));
    double e1 = residual(X.data(), one), e2 = residual(X.data(), two);
    QVERIFY(std::fabs(e1 - e2) <= 1e-5 * e1);
    for (int c = 0; c < r; ++c) QVERIFY(std::fabs(one.S[size_t(c)] - two.S[size_t(c)]) <= 1e-5 * one.S[size_t(c)]);
}

// ---- W - B A, the LoftQ residual update (linalg/low_rank_update.h) -------------------------------

// Matrix storage (core/big_alloc.h): Matrix(r, c) is zero-filled and Matrix(r, c, x) filled;
// blocks of 4 MiB and more are 2 MiB-aligned (for huge pages); reshape_uninit keeps the storage
// when the size does not grow (what lets a worker reuse its buffers).
void TestLinalg::matrix_storage() {
    Matrix z(37, 41);
    for (float v : z.buf) QCOMPARE(v, 0.f);
    Matrix f(5, 3, 2.5f);
    for (float v : f.buf) QCOMPARE(v, 2.5f);
    Matrix big = Matrix::uninit(1024, 1024);  // 4 MiB
    QCOMPARE(reinterpret_cast<uintptr_t>(big.data()) % (uintptr_t(2) << 20), uintptr_t(0));
    const float* before = big.data();
    big.reshape_uninit(512, 1000);
    QCOMPARE(big.data(), before);
    QCOMPARE(big.rows, int64_t(512));
    QCOMPARE(big.size(), size_t(512000));
    Matrix copy = big;  // copies use the same allocator and compare by value
    QVERIFY(copy.buf == big.buf);
}

void TestLinalg::low_rank_update_data() {
    QTest::addColumn<int>("m");
    QTest::addColumn<int>("n");
    QTest::addColumn<int>("r");
    QTest::newRow("1x1 r0") << 1 << 1 << 0;
    QTest::newRow("5x7 r3 (all tail)") << 5 << 7 << 3;
    QTest::newRow("33x48 r1") << 33 << 48 << 1;
    QTest::newRow("70x130 r17") << 70 << 130 << 17;
    QTest::newRow("257x1100 r64 (2 column blocks, tail)") << 257 << 1100 << 64;
    QTest::newRow("96x2064 r16") << 96 << 2064 << 16;
}

// The fast kernels (AVX-512, AVX2 + FMA, portable; 1-3 threads) give the reference's bits for
// out and the error; the reference is checked against float64: each element within the bound of
// an r-term fma chain, (r + 1) 2^-24 (|W| + sum |B A|), and the error sum within 1e-12 relative
// of sum (out - Q)^2 in float64.
void TestLinalg::low_rank_update() {
    QFETCH(int, m);
    QFETCH(int, n);
    QFETCH(int, r);
    const Matrix W = random_matrix(m, n, 11), B = random_matrix(m, r, 12), A = random_matrix(r, n, 13);
    const Matrix Q = random_matrix(m, n, 14);
    Matrix ref = Matrix::uninit(m, n);
    const double e_ref = sub_low_rank_ref(W.data(), B.data(), A.data(), m, n, r, ref.data(), Q.data());
    double worst = 0, e64 = 0;
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double x = W.at(i, j), mag = std::fabs(x);
            for (int64_t k = 0; k < r; ++k) {
                x -= double(B.at(i, k)) * double(A.at(k, j));
                mag += std::fabs(double(B.at(i, k)) * double(A.at(k, j)));
            }
            worst = std::max(worst, std::fabs(double(ref.at(i, j)) - x) / ((r + 1) * std::ldexp(1.0, -24) * mag));
            const double d = double(ref.at(i, j)) - double(Q.at(i, j));
            e64 += d * d;
        }
    QVERIFY2(worst <= 1.0, qPrintable(QString("reference off float64 by %1 of its bound").arg(worst)));
    QVERIFY(std::fabs(e_ref - e64) <= 1e-12 * e64);
    for (const char* isa : {"avx512", "avx2", "portable"}) {
        qputenv("LOFTQ_LINALG_ISA", isa);
        for (int threads : {1, 2, 3}) {
            Matrix out(m, n, -7.f);
            const double e = sub_low_rank(W.data(), B.data(), A.data(), m, n, r, out.data(), Q.data(), threads);
            const QString what = QString("%1, %2 threads").arg(isa).arg(threads);
            QVERIFY2(same_bits(out, ref), qPrintable(what));
            QVERIFY2(std::memcmp(&e, &e_ref, sizeof e) == 0, qPrintable(what + ": error sum"));
            QCOMPARE(sub_low_rank(W.data(), B.data(), A.data(), m, n, r, out.data(), nullptr, threads), 0.0);
            QVERIFY2(same_bits(out, ref), qPrintable(what + " without Q"));
        }
    }
    qunsetenv("LOFTQ_LINALG_ISA");
}

// The randomized SVD's thin products run the same FMA chains on AVX2 as on AVX-512 (svd.cpp), so
// the factors are bit-identical; the portable fallback (OpenBLAS gemm) agrees to rounding.
void TestLinalg::thin_products_same_bits_avx2_avx512() {
    const int m = 300, n = 517, r = 24;
    Matrix X = random_matrix(m, n, 21);
    set_blas_threads(1);
    qputenv("LOFTQ_LINALG_ISA", "avx512");
    const LowRank a = low_rank_randomized(X.data(), m, n, r, 10, 2, 3);
    qputenv("LOFTQ_LINALG_ISA", "avx2");
    const LowRank b = low_rank_randomized(X.data(), m, n, r, 10, 2, 3);
    qputenv("LOFTQ_LINALG_ISA", "portable");
    const LowRank c = low_rank_randomized(X.data(), m, n, r, 10, 2, 3);
    qunsetenv("LOFTQ_LINALG_ISA");
    QVERIFY(same_bits(a, b));
    for (int j = 0; j < r; ++j) QVERIFY(std::fabs(a.S[size_t(j)] - c.S[size_t(j)]) <= 1e-4 * a.S[0]);
}

// small_gemm (attention's products): every kernel variant gives the reference's bits, overwriting
// and accumulating, with leading dimensions wider than the shape; the reference agrees with
// float64 within an fma chain's bound; skipping a leading run of zero A columns changes nothing.
void TestLinalg::small_gemm_matches_reference() {
    struct Shape { int M, N, K; };
    for (Shape sh : {Shape{1, 1, 1}, Shape{16, 64, 64}, Shape{13, 40, 7}, Shape{9, 256, 100}, Shape{3, 5, 0}}) {
        const int64_t lda = sh.K + 3, ldb = sh.N + 5, ldc = sh.N + 2;
        Matrix A = random_matrix(sh.M, lda, 31), B = random_matrix(std::max(sh.K, 1), ldb, 32);
        Matrix C0 = random_matrix(sh.M, ldc, 33);
        for (bool acc : {false, true}) {
            Matrix ref = C0;
            small_gemm_ref(sh.M, sh.N, sh.K, A.data(), lda, B.data(), ldb, ref.data(), ldc, acc);
            double worst = 0;
            for (int i = 0; i < sh.M; ++i)
                for (int j = 0; j < sh.N; ++j) {
                    double x = acc ? C0.at(i, j) : 0.0, mag = std::fabs(x);
                    for (int k = 0; k < sh.K; ++k) {
                        x += double(A.at(i, k)) * double(B.at(k, j));
                        mag += std::fabs(double(A.at(i, k)) * double(B.at(k, j)));
                    }
                    if (mag > 0) worst = std::max(worst, std::fabs(ref.at(i, j) - x) / ((sh.K + 1) * std::ldexp(1.0, -24) * mag));
                }
            QVERIFY2(worst <= 1.0, qPrintable(QString("%1 x %2 x %3: %4 of the bound").arg(sh.M).arg(sh.N).arg(sh.K).arg(worst)));
            for (const char* isa : {"avx512", "avx2", "portable"}) {
                qputenv("LOFTQ_LINALG_ISA", isa);
                Matrix c = C0;
                small_gemm(sh.M, sh.N, sh.K, A.data(), lda, B.data(), ldb, c.data(), ldc, acc);
                QVERIFY2(same_bits(c, ref), qPrintable(QString("%1, %2 x %3 x %4").arg(isa).arg(sh.M).arg(sh.N).arg(sh.K)));
            }
            qunsetenv("LOFTQ_LINALG_ISA");
        }
    }
    // Zero leading A columns: starting the chains after them gives the same bits.
    const int M = 16, N = 48, K = 40, skip = 17;
    Matrix A = random_matrix(M, K, 41), B = random_matrix(K, N, 42);
    for (int i = 0; i < M; ++i)
        for (int k = 0; k < skip; ++k) A.at(i, k) = 0.f;
    Matrix full(M, N), part(M, N);
    small_gemm(M, N, K, A.data(), K, B.data(), N, full.data(), N, false);
    small_gemm(M, N, K - skip, A.data() + skip, K, B.data() + skip * N, N, part.data(), N, false);
    QVERIFY(same_bits(full, part));
}

// tile_gemm (the training GEMMs): for op(B) = B and B^T, overwriting and accumulating, K across
// several 256-blocks and N with a partial panel and a tail, every kernel variant and thread count
// gives the reference's bits (the portable variant is OpenBLAS: within float32 rounding), and the
// reference agrees with float64 within an fma chain's bound; A^T reads (small_gemm_at) too.
void TestLinalg::tile_gemm_matches_reference() {
    struct Shape { int M, N, K; };
    for (Shape sh : {Shape{8, 16, 1}, Shape{37, 100, 300}, Shape{64, 48, 600}, Shape{9, 5, 7}, Shape{20, 40, 0},
                     Shape{130, 16, 70}}) {
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          for (float alpha : {1.f, 0.37f}) {
            const int64_t lda = (ta ? sh.M : sh.K) + 2, ldb = tb ? sh.K + 3 : sh.N + 3, ldc = sh.N + 1;
            Matrix A = random_matrix(ta ? std::max(sh.K, 1) : sh.M, lda, 51);
            Matrix B = random_matrix(tb ? sh.N : std::max(sh.K, 1), ldb, 52);
            Matrix C0 = random_matrix(sh.M, ldc, 53);
            for (bool acc : {false, true}) {
                Matrix ref = C0;
                tile_gemm_ref(ta, tb, sh.M, sh.N, sh.K, alpha, A.data(), lda, B.data(), ldb, ref.data(), ldc, acc);
                double worst = 0;
                for (int i = 0; i < sh.M; ++i)
                    for (int j = 0; j < sh.N; ++j) {
                        double x = acc ? C0.at(i, j) : 0.0, mag = std::fabs(x);
                        for (int k = 0; k < sh.K; ++k) {
                            const double p = double(ta ? A.at(k, i) : A.at(i, k)) * double(alpha) *
                                             double(tb ? B.at(j, k) : B.at(k, j));
                            x += p;
                            mag += std::fabs(p);
                        }
                        if (mag > 0) worst = std::max(worst, std::fabs(ref.at(i, j) - x) / ((sh.K + 2) * std::ldexp(1.0, -24) * mag));
                    }
                const QString what = QString("%1 x %2 x %3%4%5 alpha %6%7")
                                         .arg(sh.M).arg(sh.N).arg(sh.K).arg(ta ? " A^T" : "").arg(tb ? " B^T" : "")
                                         .arg(alpha).arg(acc ? " +=" : "");
                QVERIFY2(worst <= 1.0, qPrintable(what));
                for (const char* isa : {"avx512", "avx2", "portable"}) {
                    qputenv("LOFTQ_LINALG_ISA", isa);
                    for (int threads : {1, 3}) {  // 3 threads on 130 x 16: the rows are split
                        Matrix c = C0;
                        tile_gemm(ta, tb, sh.M, sh.N, sh.K, alpha, A.data(), lda, B.data(), ldb, c.data(), ldc, acc, threads);
                        if (std::string(isa) != "portable" && sh.M >= 8) {  // fewer rows: OpenBLAS
                            QVERIFY2(same_bits(c, ref), qPrintable(what + " " + isa));
                            continue;
                        }
                        for (int i = 0; i < sh.M; ++i)
                            for (int j = 0; j < sh.N; ++j)
                                QVERIFY(std::fabs(c.at(i, j) - ref.at(i, j)) <= 1e-4f * (1.f + std::fabs(ref.at(i, j))));
                    }
                }
                qunsetenv("LOFTQ_LINALG_ISA");
            }
          }
    }
    // A^T through small_gemm_at equals small_gemm on an explicit transpose, bit for bit.
    const int M = 24, N = 40, K = 70;
    Matrix At = random_matrix(K, M, 61), B = random_matrix(K, N, 62), A(M, K);
    for (int i = 0; i < M; ++i)
        for (int k = 0; k < K; ++k) A.at(i, k) = At.at(k, i);
    Matrix c1(M, N), c2(M, N);
    small_gemm(M, N, K, A.data(), K, B.data(), N, c1.data(), N, false);
    small_gemm_at(M, N, K, At.data(), M, B.data(), N, c2.data(), N, false);
    QVERIFY(same_bits(c1, c2));
}

// ---- shapes and edge cases ------------------------------------------------------------------------

void TestLinalg::rank_clamped() {
    Matrix X = random_matrix(20, 30, 3);
    for (SvdMethod method : {SvdMethod::Exact, SvdMethod::Randomized}) {
        SvdOptions opt;
        opt.method = method;
        LowRank f = low_rank(X.data(), 20, 30, 100, opt);
        QCOMPARE(f.B.rows, int64_t(20));
        QCOMPARE(f.B.cols, int64_t(20));
        QCOMPARE(f.A.rows, int64_t(20));
        QCOMPARE(f.A.cols, int64_t(30));
        QCOMPARE(int(f.S.size()), 20);
        // Full rank: B A reproduces X.
        double rel = residual(X.data(), f) / test::frob(X.data(), X.size());
        QVERIFY2(rel <= 1e-5, qPrintable(QString("full-rank reconstruction error %1").arg(rel)));
    }
}

void TestLinalg::rank_zero() {
    Matrix X = random_matrix(12, 9, 4);
    for (SvdMethod method : {SvdMethod::Exact, SvdMethod::Randomized}) {
        SvdOptions opt;
        opt.method = method;
        for (int r : {0, -3}) {
            LowRank f = low_rank(X.data(), 12, 9, r, opt);
            QCOMPARE(f.B.rows, int64_t(12));
            QCOMPARE(f.B.cols, int64_t(0));
            QCOMPARE(f.A.rows, int64_t(0));
            QCOMPARE(f.A.cols, int64_t(9));
            QVERIFY(f.S.empty());
        }
    }
    // An empty matrix has rank 0 whatever is asked.
    LowRank e = low_rank_randomized(nullptr, 0, 5, 4, 10, 2, 0);
    QCOMPARE(e.B.rows, int64_t(0));
    QCOMPARE(e.A.cols, int64_t(5));
    QVERIFY(singular_values(nullptr, 0, 5).empty());
}

void TestLinalg::tall_and_wide_data() {
    QTest::addColumn<int>("m");
    QTest::addColumn<int>("n");
    QTest::addColumn<int>("r");
    QTest::newRow("tall 600x40 r8") << 600 << 40 << 8;
    QTest::newRow("wide 40x600 r8") << 40 << 600 << 8;
    QTest::newRow("tall 600x40 r35 (l clamped to 40)") << 600 << 40 << 35;
    QTest::newRow("wide 3x500 r2") << 3 << 500 << 2;
    QTest::newRow("column 500x1 r4") << 500 << 1 << 4;
}

void TestLinalg::tall_and_wide() {
    QFETCH(int, m);
    QFETCH(int, n);
    QFETCH(int, r);
    Matrix X = test::structured_matrix(m, n, 8);
    const int rr = std::min({r, m, n});
    LowRank fe = low_rank_exact(X.data(), m, n, r);
    LowRank fr = low_rank_randomized(X.data(), m, n, r, 10, 2, 1);
    for (const LowRank* f : {&fe, &fr}) {
        QCOMPARE(f->B.rows, int64_t(m));
        QCOMPARE(f->B.cols, int64_t(rr));
        QCOMPARE(f->A.rows, int64_t(rr));
        QCOMPARE(f->A.cols, int64_t(n));
        QCOMPARE(int(f->S.size()), rr);
        for (int c = 1; c < rr; ++c) QVERIFY(f->S[size_t(c)] <= f->S[size_t(c - 1)]);
        check_sqrt_split(*f, m, n);
        if (QTest::currentTestFailed()) return;
    }
    double ee = residual(X.data(), fe), er = residual(X.data(), fr);
    QVERIFY2(er <= ee * 1.01 + 1e-6 * test::frob(X.data(), X.size()),
             qPrintable(QString("randomized %1 vs exact %2").arg(er).arg(ee)));
}

void TestLinalg::rank_deficient() {
    // X = G H, G 200 x 3, H 3 x 150: rank 3. Asked r = 8, both methods return 3 real singular
    // values and 5 at the float32 noise floor, and B A reproduces X.
    const int64_t m = 200, n = 150, k = 3;
    auto G = test::gaussian(size_t(m * k), 21), H = test::gaussian(size_t(k * n), 22);
    Matrix X(m, n);
    gemm_ref(false, false, m, n, k, 1.f, G.data(), k, H.data(), n, 0.f, X.data(), n);
    for (SvdMethod method : {SvdMethod::Exact, SvdMethod::Randomized}) {
        SvdOptions opt;
        opt.method = method;
        LowRank f = low_rank(X.data(), m, n, 8, opt);
        QCOMPARE(int(f.S.size()), 8);
        QVERIFY(f.S[2] > 1e-2 * f.S[0]);
        for (int c = 3; c < 8; ++c)
            QVERIFY2(f.S[size_t(c)] <= 1e-5 * f.S[0], qPrintable(QString("S[%1] = %2 vs S[0] = %3").arg(c).arg(f.S[size_t(c)]).arg(f.S[0])));
        double rel = residual(X.data(), f) / test::frob(X.data(), X.size());
        QVERIFY2(rel <= 1e-5, qPrintable(QString("rank-3 reconstruction error %1").arg(rel)));
        for (float v : f.B.buf) QVERIFY(std::isfinite(v));
        for (float v : f.A.buf) QVERIFY(std::isfinite(v));
    }
}

void TestLinalg::lapack_failure_throws() {
    // LAPACKE rejects NaN input with info < 0; that must surface as loftq::Error, not garbage.
    Matrix X = random_matrix(40, 30, 6);
    X.at(3, 4) = NAN;
    QVERIFY_THROWS_EXCEPTION(Error, low_rank_exact(X.data(), 40, 30, 4));
    QVERIFY_THROWS_EXCEPTION(Error, low_rank_randomized(X.data(), 40, 30, 4, 10, 2, 0));
    QVERIFY_THROWS_EXCEPTION(Error, singular_values(X.data(), 40, 30));
}

QTEST_APPLESS_MAIN(TestLinalg)
#include "test_linalg.moc"
